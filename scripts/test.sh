#!/usr/bin/env bash
# The README's test command, and exactly what CI runs (.ci/run calls it).
# On a fresh Debian machine: installs what is missing, checks formatting,
# then builds and runs every default-labelled test three ways:
#   1. RelWithDebInfo: unit + integration tests (real redis-server / nginx
#      started by the tests on loopback ports picked at run time);
#   2. ASan+UBSan: the same tests;
#   3. TSan: the test binaries that do not link gRPC (core, conformance, ws,
#      amqp);
# then runs each libFuzzer target of fuzz/ (clang, ASan+UBSan) for
# FUZZ_SECONDS (default 10) from its checked-in corpus.
# Slow soak, long fuzzing and benchmark runs are not here: see tests/perf/
# and fuzz/README.md.
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
  core_tests conformance_tests ws_tests amqp_tests
run_ctest build/tsan -L unit
# ws_tests (labelled integration: it starts ws_provider.py) and amqp_tests
# and conformance.RabbitMQ (they start RabbitMQ nodes) link no gRPC either;
# amqp.AmqpServerTest does (it is not built here).
run_ctest build/tsan -R '^(ws\.|amqp\.AmqpTest$|conformance\.RabbitMQ$)'

stage "fuzz (libFuzzer, each target ${FUZZ_SECONDS:-10} s from its corpus)"
fuzzers=(fuzz_config fuzz_json_rpc fuzz_redis_reply fuzz_retry_after fuzz_url_mask
  fuzz_websocket_handshake)
build build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSWITCHBOARD_FUZZ=ON -DSWITCHBOARD_BUILD_TESTS=OFF -- \
  "${fuzzers[@]}"
for fuzzer in "${fuzzers[@]}"; do
  # New inputs go to a scratch directory, never into the checked-in corpus.
  scratch=$(mktemp -d)
  log=$scratch/log
  if ! build/fuzz/fuzz/"$fuzzer" -max_total_time="${FUZZ_SECONDS:-10}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "$scratch" fuzz/corpus/"${fuzzer#fuzz_}" \
    >"$log" 2>&1; then
    cat "$log"
    echo "$fuzzer failed: the input is in the log above (crash-* / leak-* / timeout-*)" >&2
    exit 1
  fi
  echo "$fuzzer: $(grep -m1 -o 'Done [0-9]* runs in [0-9]* second(s)' "$log")"
  rm -rf "$scratch"
done

stage "all tests passed"
