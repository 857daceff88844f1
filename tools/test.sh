#!/usr/bin/env bash
# tools/test.sh: on a fresh Debian machine, install what dprun needs, build it, and run every
# test: ctest on a Release build (CUDA compiled where nvcc exists), ctest on an ASan+UBSan build,
# and the busted specs under LuaJIT. Ends with one line "N passed, N failed[, N skipped]" and
# exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh

passed=0 failed=0 skipped=0
summary=()

# count <suite> <passed> <failed> [skipped]
count() {
  passed=$((passed + $2)); failed=$((failed + $3)); skipped=$((skipped + ${4:-0}))
  summary+=("$(printf '%-12s %4d passed, %d failed%s' "$1" "$2" "$3" \
               "$([ "${4:-0}" -gt 0 ] && echo ", $4 skipped")")")
}

# ctest_suite <name> <build dir> [env...]: ctest's "N tests failed out of M" line gives the counts.
ctest_suite() {
  local name=$1 dir=$2
  shift 2
  local log="$dir/ctest.log"
  env "$@" ctest --test-dir "$dir" --output-on-failure -LE lua -j2 2>&1 | tee "$log"
  local line total bad
  line=$(grep -E 'tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    bad=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    # Tests that exit DP_TEST_SKIP (77: no GPU here) show as "***Skipped" with their reason.
    local skip
    skip=$(grep -c '\*\*\*Skipped' "$log")
    if [ "$skip" -gt 0 ]; then   # say why, once: ctest keeps a skipped test's output to itself
      local first
      first=$(grep -E '^\s+[0-9]+ - .* \(Skipped\)' "$log" | head -n 1 | sed -E 's/^\s+[0-9]+ - ([^ ]+).*/\1/')
      [ -n "$first" ] && [ -x "$dir/$first" ] &&
        echo "$name: $skip skipped, e.g. $first: $(env "$@" "$dir/$first" 2>&1 | head -n 1)"
    fi
    count "$name" $((total - bad - skip)) "$bad" "$skip"
  elif grep -q 'No tests were found' "$log"; then
    count "$name" 0 0
  else
    count "$name" 0 1
  fi
}

# busted's TAP output: "ok N - ..." / "not ok N - ..." per test, "# SKIP" for pending ones.
busted_suite() {
  local log=build/busted.log
  DP_LIBRARY="$PWD/build/libdpcore.so" DPRUN="$PWD/build/dprun" busted -o TAP 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local ok bad skip
  ok=$(grep -cE '^ok [0-9]+' "$log")
  skip=$(grep -cE '^ok [0-9]+.*# SKIP' "$log")
  bad=$(grep -cE '^not ok [0-9]+' "$log")
  ok=$((ok - skip))
  # A crash or a load failure that produced no "not ok" line still counts as a failure.
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
  count busted "$ok" "$bad" "$skip"
}

dp_ensure_packages || { echo "0 passed, 1 failed"; exit 1; }
dp_cuda_path

if dp_build build -DCMAKE_BUILD_TYPE=Release -DDP_CUDA=AUTO; then
  ctest_suite ctest build
  busted_suite
else
  count "build" 0 1
fi

# Sanitizers: the C tests only (LuaJIT itself is not instrumented). CMakeLists.txt gives these
# tests their ASAN_OPTIONS and the LSan suppressions (tests/c/lsan.supp).
if dp_build build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" \
     -DDP_SANITIZE=ON -DDP_CUDA=OFF; then
  ctest_suite ctest-asan build-asan
else
  count "build-asan" 0 1
fi

echo
printf '%s\n' "${summary[@]}"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
