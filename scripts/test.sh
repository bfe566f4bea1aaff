#!/usr/bin/env bash
# The README's test command, and exactly what CI runs (.ci/run calls it).
# On a fresh Debian machine: installs what is missing, checks formatting,
# then builds and runs every default-labelled test three ways:
#   1. RelWithDebInfo: unit + integration tests (real redis-server / nginx
#      started by the tests on loopback ports picked at run time);
#   2. ASan+UBSan: the same tests;
#   3. TSan: the test binaries that do not link gRPC (core, conformance).
# Slow soak and benchmark runs are not here: see tests/perf/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/setup.sh

jobs=$(nproc)
stage() { printf '\n=== %s ===\n' "$*"; }

stage "format check (.clang-format)"
mapfile -t sources < <(git ls-files '*.cc' '*.h')
clang-format --dry-run --Werror "${sources[@]}"

build() {  # build DIR [cmake args...] -- [targets...]
  local dir=$1; shift
  local args=() targets=()
  while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
  (($#)) && shift
  targets=("$@")
  cmake -S "$root" -B "$dir" -G Ninja "${args[@]}" >/dev/null
  ninja -C "$dir" -j"$jobs" "${targets[@]}"
}

run_ctest() {  # run_ctest DIR [ctest args...]
  local dir=$1; shift
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 300 "$@"
}

stage "build and test (RelWithDebInfo)"
build build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_ctest build/ci -L 'unit|integration'

stage "build and test (ASan+UBSan)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build build/asan -DCMAKE_BUILD_TYPE=Debug -DSWITCHBOARD_SANITIZE=address,undefined
run_ctest build/asan -L 'unit|integration'

stage "build and test (TSan, binaries without gRPC)"
# Optimized on purpose: Debian's Abseil is not TSan-instrumented, and
# tests/testing/tsan_absl_sync.cc bridges its Mutex/CondVar entry points. At
# -O0 the inline condition helpers Abseil calls back into are emitted,
# instrumented, in our binaries, outside those bridges (false reports).
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
build build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWITCHBOARD_SANITIZE=thread -- \
  core_tests conformance_tests
run_ctest build/tsan -L unit

stage "all tests passed"
