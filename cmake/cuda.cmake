# cuda.cmake: the optional CUDA backend, libdpcuda.so (kernels/cuda/), which libdpcore loads at run
# time (core/device.c). DP_CUDA: ON (required), OFF, or AUTO (built when nvcc is found).
string(TOUPPER "${DP_CUDA}" DP_CUDA_MODE)
if(DP_CUDA_MODE STREQUAL "OFF" OR DP_CUDA_MODE STREQUAL "NO" OR DP_CUDA_MODE STREQUAL "FALSE"
   OR DP_CUDA_MODE STREQUAL "0")
  message(STATUS "dprun: CUDA backend not built (DP_CUDA=${DP_CUDA})")
  return()
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(DP_CUDA_MODE STREQUAL "AUTO")
    message(STATUS "dprun: CUDA backend not built (no CUDA compiler found; DP_CUDA=AUTO)")
    return()
  endif()
  message(FATAL_ERROR "dprun: DP_CUDA=${DP_CUDA} but no CUDA compiler (nvcc) was found")
endif()

# Ampere (A100) and Hopper (H100/H200); override with -DCMAKE_CUDA_ARCHITECTURES=...
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80;90")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

file(GLOB DP_CUDA_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu
  ${CMAKE_SOURCE_DIR}/kernels/cuda/*.c)
add_library(dpcuda SHARED ${DP_CUDA_SOURCES})

# The directory-wide options (-Wall, -mavx2, sanitizers) are host-compiler flags nvcc rejects;
# the CUDA target gets its own, passed through to the host compiler.
set_property(TARGET dpcuda PROPERTY COMPILE_OPTIONS "")
set_property(TARGET dpcuda PROPERTY LINK_OPTIONS "")
target_compile_options(dpcuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wno-unused-parameter,-Wno-unused-function,-fno-strict-aliasing>
  $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wno-unused-parameter -fno-strict-aliasing>)
# The random kernels must round exactly like the CPU: no multiply-add contraction (core/philox.h).
set_source_files_properties(
  ${CMAKE_SOURCE_DIR}/kernels/cuda/random.cu ${CMAKE_SOURCE_DIR}/kernels/cuda/noise.cu
  ${CMAKE_SOURCE_DIR}/kernels/cuda/noisy_update.cu
  PROPERTIES COMPILE_OPTIONS "-fmad=false")

get_target_property(DP_CORE_OUTPUT_DIR dpcore LIBRARY_OUTPUT_DIRECTORY)
if(NOT DP_CORE_OUTPUT_DIR)
  if(CMAKE_LIBRARY_OUTPUT_DIRECTORY)
    set(DP_CORE_OUTPUT_DIR ${CMAKE_LIBRARY_OUTPUT_DIRECTORY})
  else()
    set(DP_CORE_OUTPUT_DIR ${CMAKE_BINARY_DIR})
  endif()
endif()
set_target_properties(dpcuda PROPERTIES
  CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  LIBRARY_OUTPUT_DIRECTORY ${DP_CORE_OUTPUT_DIR}
  BUILD_RPATH "$ORIGIN"
  INSTALL_RPATH "$ORIGIN;${CUDAToolkit_LIBRARY_DIR}")
target_include_directories(dpcuda PRIVATE
  ${CMAKE_SOURCE_DIR}/core/include ${CMAKE_SOURCE_DIR}/core ${CMAKE_SOURCE_DIR}/kernels/cuda)
target_link_libraries(dpcuda PRIVATE dpcore CUDA::cudart CUDA::cublasLt CUDA::cublas)
install(TARGETS dpcuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

message(STATUS "dprun: CUDA backend built (libdpcuda.so, CUDA ${CUDAToolkit_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES})")
