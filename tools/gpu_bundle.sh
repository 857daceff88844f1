#!/usr/bin/env bash
# tools/gpu_bundle.sh: run dprun's CUDA tests and GPU benchmarks on a machine that has a GPU but no
# package registry (no LuaJIT, OpenBLAS, oneDNN or busted to install there).
#
#   tools/gpu_bundle.sh build [--no-cuda]   here: build with -DDP_CUDA=ON, install into a prefix,
#                                           add the test binaries, LuaJIT, busted's Lua modules and
#                                           the shared libraries ldd finds outside the CUDA toolkit
#                                           and glibc; pack it as build-gpu/carry/bundle.tar.xz
#                                           (about 15 MB: oneDNN and OpenBLAS compress well).
#   tools/gpu_bundle.sh run [what...]       there, from the repository root: unpack into /tmp and
#                                           run what (default: all) of: info ctest busted memcheck
#                                           bench. Logs and bench JSON go to $OUT (or
#                                           build-gpu/results). Exit status: failed steps.
#
# With the device tool: run(command="bash tools/gpu_bundle.sh run", carry=["build-gpu/carry"]).
# CUDA libraries (cudart, cuBLAS) are not bundled: the GPU machine's toolkit must be the one built
# against here (CUDA 13.0 on both at the time of writing), found through /usr/local/cuda/lib64.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build-gpu
CARRY=$BUILD/carry
STAGE=$BUILD/bundle

die() { echo "gpu_bundle: $*" >&2; exit 2; }

# Libraries the GPU machine has or must provide itself: glibc's, the compiler runtime, the driver
# and the CUDA toolkit.
is_system_lib() {
  case "$(basename "$1")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) return 0 ;;
    libcuda.so*|libcudart.so*|libcublas*.so*|libnvidia*|libnvrtc*|libnvJitLink*) return 0 ;;
  esac
  case "$1" in /usr/local/cuda*|*/nvidia/*) return 0 ;; esac
  return 1
}

build() {
  local cuda=ON
  [ "${1:-}" = "--no-cuda" ] && cuda=OFF   # for checking the bundling itself without nvcc
  cmake -S "$ROOT" -B "$BUILD" -DDP_CUDA=$cuda -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake configure failed"
  cmake --build "$BUILD" -j"$(nproc)" || die "build failed"
  rm -rf "$STAGE" "$CARRY"
  mkdir -p "$STAGE/tests-bin" "$STAGE/luajit/share" "$STAGE/luajit/lib" "$CARRY"
  cmake --install "$BUILD" --prefix "$STAGE" >/dev/null || die "install failed"
  local libdir
  libdir=$(dirname "$(find "$STAGE" -name 'libdpcore.so*' | head -1)")
  [ -n "$libdir" ] || die "libdpcore.so missing from the install"
  # The CUDA C tests and the RNG test (its CUDA section), plus everything else (cheap, and the
  # whole C suite then also runs on the GPU machine's CPU).
  find "$BUILD" -maxdepth 1 -type f -name 'test_*' -perm -u+x -exec cp {} "$STAGE/tests-bin/" \;
  # The source-tree layout busted's config (.busted) and dp.cdef expect: lua/, core/include/dp.h.
  mkdir -p "$STAGE/core/include"
  cp -r "$ROOT/tests" "$ROOT/bench" "$ROOT/lua" "$ROOT/recipes" "$ROOT/.busted" "$STAGE/"
  cp "$ROOT/core/include/dp.h" "$STAGE/core/include/"
  cp "$(command -v luajit)" "$STAGE/bin/"
  cp "$(command -v busted)" "$STAGE/bin/busted.lua"
  cp -r /usr/share/lua/5.1/. "$STAGE/luajit/share/"
  cp -r /usr/lib/x86_64-linux-gnu/lua/5.1/. "$STAGE/luajit/lib/"
  # Shared libraries of every binary, outside glibc and CUDA, dereferenced.
  local bins lib
  bins=$(find "$STAGE/bin" "$STAGE/tests-bin" "$libdir" "$STAGE/luajit/lib" -type f)
  for lib in $(for b in $bins; do ldd "$b" 2>/dev/null | awk '/=> \//{print $3}'; done | sort -u); do
    is_system_lib "$lib" && continue
    case "$(basename "$lib")" in libdpcore*|libdpcuda*) continue ;; esac
    cp -L "$lib" "$libdir/"
  done
  echo "$libdir" | sed "s|^$STAGE/||" > "$STAGE/LIBDIR"
  tar -C "$BUILD" -cf - bundle | xz -T2 -6 > "$CARRY/bundle.tar.xz" || die "packing failed"
  echo "gpu_bundle: $(du -h "$CARRY/bundle.tar.xz" | cut -f1) in $CARRY/bundle.tar.xz (lib: $(ls "$libdir" | tr '\n' ' '))"
  echo "gpu_bundle: on the GPU machine: bash tools/gpu_bundle.sh run   (carry build-gpu/carry)"
}

run() {
  local tarball=$CARRY/bundle.tar.xz
  [ -f "$tarball" ] || die "no $tarball: run 'tools/gpu_bundle.sh build' here first and carry build-gpu/carry"
  local out=${OUT:-$BUILD/results} dest=/tmp/dprun-gpu
  mkdir -p "$out" "$dest"
  if command -v xz >/dev/null; then xz -dc "$tarball" | tar -C "$dest" -xf - || die "unpacking failed"
  else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$tarball" "$dest" || die "unpacking failed"; fi
  local B=$dest/bundle
  local LIB=$B/$(cat "$B/LIBDIR")
  export LD_LIBRARY_PATH="$LIB:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  export DP_LIBRARY=$LIB/libdpcore.so
  export DP_LUADIR=$B/share/dprun/lua
  export LUA_PATH="$B/share/dprun/lua/?.lua;$B/share/dprun/lua/?/init.lua;$B/tests/?.lua;$B/luajit/share/?.lua;$B/luajit/share/?/init.lua;;"
  export LUA_CPATH="$B/luajit/lib/?.so;;"
  export PATH="$B/bin:$PATH"
  local steps=("$@") failed=0 skipped=0
  [ ${#steps[@]} -eq 0 ] && steps=(info ctest busted memcheck bench)
  local t s
  for s in "${steps[@]}"; do
    echo "=== $s"
    case "$s" in
      info)
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || failed=$((failed + 1))
        luajit -e 'local dp = require "dp"; print("dprun " .. dp.version() .. ", cuda available: " .. tostring(dp.cuda_available()))' \
          || failed=$((failed + 1)) ;;
      ctest)   # every C test; the CUDA ones exit 77 (skip) with the reason when no device is usable
        for t in "$B"/tests-bin/test_*; do
          local log="$out/ctest_$(basename "$t").log" rc=0
          "$t" >"$log" 2>&1 || rc=$?
          if [ $rc -eq 0 ]; then echo "ok   $(basename "$t")"
          elif [ $rc -eq 77 ]; then echo "skip $(basename "$t"): $(grep -m1 SKIP "$log")"; skipped=$((skipped + 1))
          else echo "FAIL $(basename "$t") (exit $rc, log: ctest_$(basename "$t").log)"; tail -5 "$log"; failed=$((failed + 1)); fi
        done ;;
      busted)  # the CUDA parity specs and dp.device's spec, run from the bundle's copy of tests/
        (cd "$B" && luajit bin/busted.lua tests/lua/cuda tests/lua/dp/device_spec.lua 2>&1) | tee "$out/busted.log"
        grep -q " 0 failures / 0 errors" "$out/busted.log" || failed=$((failed + 1)) ;;
      memcheck)
        for t in "$B"/tests-bin/test_cuda_* "$B"/tests-bin/test_rng; do
          [ -x "$t" ] || continue
          if compute-sanitizer --tool memcheck --error-exitcode 99 "$t" >"$out/memcheck_$(basename "$t").log" 2>&1; then
            echo "clean $(basename "$t")"
          else echo "MEMCHECK $(basename "$t")"; tail -20 "$out/memcheck_$(basename "$t").log"; failed=$((failed + 1)); fi
        done ;;
      bench)
        (cd "$B" && dprun bench/gpu.lua >"$out/gpu.json" 2>"$out/gpu_bench.log") || failed=$((failed + 1))
        tail -3 "$out/gpu_bench.log"; head -c 4000 "$out/gpu.json"; echo ;;
      *) die "unknown step $s (expected info, ctest, busted, memcheck or bench)" ;;
    esac
  done
  # On the GPU machine a skipped CUDA test means the device was not usable: it fails the run too.
  echo "=== gpu_bundle: $failed failed, $skipped skipped (no usable device) step(s); logs in $out"
  return $((failed + skipped))
}

case "${1:-}" in
  build) shift; build "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: tools/gpu_bundle.sh build [--no-cuda] | run [info|ctest|busted|memcheck|bench ...]" >&2; exit 2 ;;
esac
