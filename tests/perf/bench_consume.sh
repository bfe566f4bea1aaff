#!/usr/bin/env bash
# Consume throughput with and without ordering keys, as in the README table:
# on the embedded memory broker, or with BROKER=redis on a Redis of its own.
#
# Starts its own switchboard on free loopback ports (BROKER=redis: and a
# redis-server, loopback, no persistence, with the bench topics declared
# with `ordering_partitions: 16`, which keyed messages need there); for
# each key count
# (KEYS, default "0 10000 1000 100"; 0 = no key), pre-publishes MESSAGES
# (default 200000) 100-byte messages, message i with key "k<i % keys>", and
# times `sbctl bench consume` with 8 streams of 100 credits each until all
# are consumed and acked, RUNS times (default 3), printing the medians as a
# Markdown table. The 0-key row is the baseline of the keyed rows, measured
# in the same run. With BASELINE=<build dir> (for example a build of an
# older commit), the 0-key row is also measured against that build's
# switchboard, running beside this one, its runs alternating with this
# build's. With PIN=1 (machines with 2+ cores), each switchboard runs on
# CPU 1 and the load generator (and Redis) on CPU 0: on 2 cores the
# scheduler's placement of a dozen busy threads otherwise moves a build's
# throughput by +-20% from run to run, and an A/B comparison drowns in it.
# Not part of the default test run.
#
#   tests/perf/bench_consume.sh [BUILD_DIR]   (default build/release;
#                                              BROKER=memory|redis)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-3}
messages=${MESSAGES:-200000}
keys_list=${KEYS:-"0 10000 1000 100"}
broker=${BROKER:-memory}
server_cpu=() client_cpu=()
if [[ ${PIN:-0} == 1 ]]; then
  server_cpu=(taskset -c 1) client_cpu=(taskset -c 0)
fi

if [[ ! -x $build/server/switchboard || ! -x $build/client/sbctl ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" switchboard sbctl >/dev/null
fi
source tests/perf/lib.sh  # free_port, wait_for_port

redis= work=$(mktemp -d)
# The memory broker keeps every run's messages (each run has a topic of its
# own): past the default limits.max_memory_bytes (1 GiB) it would refuse the
# later runs' publishes.
echo "limits: {max_memory_bytes: 8589934592}" >"$work/switchboard.yaml"
broker_flags=() config_flags=(--config="$work/switchboard.yaml")
if [[ $broker == redis ]]; then
  redis_port=$(free_port)
  "${client_cpu[@]}" redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work" --save '' --appendonly no \
    >"$work/redis.log" 2>&1 &
  redis=$!
  wait_for_port "$redis_port"
  cat >>"$work/switchboard.yaml" <<EOF
topics:
  - name: "bench.*"
    ordering_partitions: 16
EOF
  broker_flags=(--broker="redis://127.0.0.1:$redis_port")
elif [[ $broker != memory ]]; then
  echo "BROKER must be memory or redis, not $broker" >&2
  exit 2
fi
servers=()
# Starts a switchboard and sets started_port. $1: the binary, then more flags.
start_server() {
  started_port=$(free_port)
  "${server_cpu[@]}" "$1" --listen="127.0.0.1:$started_port" --metrics_listen="127.0.0.1:$(free_port)" \
    "${broker_flags[@]}" "${@:2}" 2>/dev/null &
  servers+=($!)
  for _ in $(seq 100); do
    "$build/client/sbctl" --server="127.0.0.1:$started_port" health >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "switchboard $1 did not start" >&2
  exit 1
}
cleanup() {
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  [[ -z $redis ]] || { kill "$redis" 2>/dev/null; wait "$redis" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readlines()[-1])['$1'])"; }

# One run's JSON summary. $1: port, $2: keys, $3: run. A failed run stops
# the script, saying why.
one_run() {
  if ! "${client_cpu[@]}" "$build/client/sbctl" --server="127.0.0.1:$1" bench consume \
    --topic="bench.k$2.r$3.$RANDOM" --group=g --streams=8 --max_in_flight=100 \
    --messages="$messages" --keys="$2" --size=100 --duration=120 >"$work/run.out" \
    2>"$work/run.err"; then
    echo "sbctl bench consume failed (keys $2, run $3):" >&2
    tail -5 "$work/run.err" >&2
    exit 1
  fi
  tail -1 "$work/run.out"
}

# Prints a row from the summaries in the array named $2. $1: label.
print_row() {
  local -n results=$2
  local rate p50 p99 count
  rate=$(for r in "${results[@]}"; do field msgs_per_sec <<<"$r"; done | median)
  p50=$(for r in "${results[@]}"; do field p50_us <<<"$r"; done | median)
  p99=$(for r in "${results[@]}"; do field p99_us <<<"$r"; done | median)
  count=$(for r in "${results[@]}"; do field msgs <<<"$r"; done | median)
  printf '| %s | %.0f | %s µs | %s µs | %s |\n' "$1" "$rate" "$p50" "$p99" "$count"
}

echo "broker: $broker${server_cpu:+; switchboard on CPU 1, load generator on CPU 0}; load average: $(cut -d' ' -f1-3 /proc/loadavg); $messages messages per run, median of $runs"
echo
echo "| Ordering keys | msgs/s consumed and acked | p50 ack to next delivery | p99 | messages |"
echo "|---|---|---|---|---|"
start_server "$build/server/switchboard" "${config_flags[@]}"
port=$started_port
baseline_port=
if [[ -n ${BASELINE:-} ]]; then
  # Without the config: an older build may not know ordering_partitions, and
  # the no-key row needs none.
  start_server "$BASELINE/server/switchboard"
  baseline_port=$started_port
fi
for keys in $keys_list; do
  current=() baseline=()
  for run in $(seq "$runs"); do
    current+=("$(one_run "$port" "$keys" "$run")")
    # The baseline's no-key runs alternate with this build's, so that a
    # change in the machine's load falls on both.
    if [[ $keys == 0 && -n $baseline_port ]]; then
      baseline+=("$(one_run "$baseline_port" 0 "$run")")
    fi
  done
  if [[ $keys == 0 ]]; then print_row "none" current; else print_row "$keys keys" current; fi
  [[ ${#baseline[@]} == 0 ]] || print_row "none, $BASELINE" baseline
done
