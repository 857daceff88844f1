# tools/setup.sh: shared by tools/test.sh and tools/run_recipe.sh (sourced, not run): install the
# Debian packages dprun needs when any is missing, then configure and build a tree.

DP_PACKAGES=(luajit libluajit-5.1-dev lua-busted libopenblas-dev libdnnl-dev cmake pkg-config
             gcc g++ libc6-dev make libreadline-dev)

dp_log() { printf '== %s\n' "$*" >&2; }

# apt-get only when something is missing, so repeated runs (CI) stay fast.
dp_ensure_packages() {
  local missing=() pkg
  for pkg in "${DP_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  dp_log "installing ${missing[*]}"
  "${sudo[@]}" apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
      "${missing[@]}"
}

# nvcc is optional; where the toolkit is installed but not on PATH, CMake still finds it.
dp_cuda_path() {
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
}

# dp_build <dir> [cmake args...]: configure (once) and build with two jobs.
dp_build() {
  local dir=$1
  shift
  dp_log "configure $dir $*"
  mkdir -p "$dir"
  cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log" >&2; return 1; }
  dp_log "build $dir"
  cmake --build "$dir" -j2
}
