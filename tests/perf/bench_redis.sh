#!/usr/bin/env bash
# The Redis backend benchmark of issue 3, as in the README table.
#
# Starts its own redis-server (loopback, a free port, no persistence, in a
# temporary directory) and its own switchboard on that Redis, then measures,
# with 100-byte payloads, in this one run:
#   (a) redis-benchmark XADD pipelined 32 deep over 50 connections: the ceiling;
#   (b) redis-benchmark XADD unpipelined over 50 connections (50 workers
#       talking to Redis directly);
#   (c) `sbctl bench publish` through switchboard to a durable topic (XADD):
#       50 streams at batch 1, and 8 streams at batch 100, each stream keeping
#       WINDOW requests in flight (default 16, sbctl's default); and, for
#       comparison with (b), 50 streams at batch 1 with one request in flight
#       each;
#   (c') `sbctl bench publisher`: 50 publishers in one process sharing one
#       auto-batching client::Publisher, each publishing one message per call
#       and waiting for its id, as each client of (b) waits for its reply:
#       50 threads waiting on futures, and 50 callback chains (the shape of
#       redis-benchmark's 50 clients on one event loop), with the default
#       options (idempotent retries: every message carries a dedup id, which
#       Redis records) and with max_attempts 1 (no dedup ids: what (b)
#       stores);
#   (d) `sbctl bench latency`: publish-to-delivery latency at a steady RATE
#       msgs/s (default 5000), received by a Consume stream (durable topic,
#       acked at once) and by a Subscribe stream (ephemeral topic).
# Every XADD has the shape switchboard sends: XADD key MAXLEN ~ 1000000 * p
# <100 bytes>. Throughput rows also show the redis-server CPU time per
# message. Each figure is the median of RUNS runs (default 3) of about
# DURATION seconds (default 10); Redis is flushed between runs. Prints one
# Markdown table, then the load average before and after (the machine's
# other work skews every figure). Not part of the default test run: it takes
# about 11 * RUNS * DURATION seconds.
#
#   tests/perf/bench_redis.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-3}
duration=${DURATION:-10}
window=${WINDOW:-16}
rate=${RATE:-5000}
sbctl=$build/client/sbctl
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ ! -x $build/server/switchboard || ! -x $sbctl ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" switchboard sbctl >/dev/null
fi

work=$(mktemp -d)
redis= server=
cleanup() {
  for pid in $server $redis; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

source tests/perf/lib.sh  # free_port, wait_for_port
redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work" --save '' --appendonly no \
  --logfile "$work/redis.log" &
redis=$!
rcli() { redis-cli -p "$redis_port" "$@"; }
for _ in $(seq 100); do
  [[ $(rcli ping 2>/dev/null) == PONG ]] && break
  sleep 0.1
done

grpc_port=$(free_port)
metrics_port=$(free_port)
cat >"$work/switchboard.yaml" <<EOF
topics:
  - name: "bench.ephemeral.*"
    kind: ephemeral
EOF
"$build/server/switchboard" --config="$work/switchboard.yaml" --listen="127.0.0.1:$grpc_port" \
  --metrics_listen="127.0.0.1:$metrics_port" --broker="redis://127.0.0.1:$redis_port" \
  2>"$work/switchboard.log" &
server=$!
for _ in $(seq 100); do
  "$sbctl" --server="127.0.0.1:$grpc_port" health --service=switchboard.v1.Broker \
    >/dev/null 2>&1 && break
  sleep 0.1
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readlines()[-1])['$1'])"; }
redis_cpu_ticks() { awk '{print $14 + $15}' "/proc/$redis/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# Runs "$@" (which prints "MSGS_PER_SEC MSGS"), flushes Redis, and prints
# "MSGS_PER_SEC REDIS_CPU_US_PER_MSG".
with_redis_cpu() {
  local before after msgs_per_sec msgs
  before=$(redis_cpu_ticks)
  read -r msgs_per_sec msgs < <("$@")
  after=$(redis_cpu_ticks)
  rcli flushall >/dev/null
  awk -v rate="$msgs_per_sec" -v ticks=$((after - before)) -v hz="$ticks_per_second" \
    -v msgs="$msgs" 'BEGIN { printf "%s %.1f\n", rate, ticks * 1e6 / hz / (msgs > 0 ? msgs : 1) }'
}
# RUNS runs of "$@" under with_redis_cpu; prints the median of each column.
median_runs() {
  local results
  results=$(for _ in $(seq "$runs"); do with_redis_cpu "$@"; done)
  echo "$(cut -d' ' -f1 <<<"$results" | median) $(cut -d' ' -f2 <<<"$results" | median)"
}

payload=$(printf 'x%.0s' $(seq 100))
# redis-benchmark XADD at pipeline depth $1, $2 requests: "MSGS_PER_SEC MSGS".
redis_xadd() {
  echo "$(redis-benchmark -p "$redis_port" -c 50 -P "$1" -n "$2" --csv \
    XADD bench.redis MAXLEN '~' 1000000 '*' p "$payload" |
    tail -1 | cut -d, -f2 | tr -d '"') $2"
}
# The requests redis_xadd at pipeline depth $1 makes in about DURATION
# seconds, from a probe.
timed_requests() {
  local probe
  read -r probe _ < <(redis_xadd "$1" $((20000 * $1)))
  rcli flushall >/dev/null
  python3 -c "print(max(1000, int($probe * $duration)))"
}
# sbctl bench publish with $1 streams at batch $2, $3 requests in flight per
# stream, to a new topic: "MSGS_PER_SEC MSGS".
publish() {
  local line
  line=$("$sbctl" --server="127.0.0.1:$grpc_port" bench publish --topic="bench.$(date +%s%N)" \
    --streams="$1" --batch="$2" --window="$3" --size=100 --duration="$duration" \
    2>/dev/null | tail -1)
  echo "$(field msgs_per_sec <<<"$line") $(field msgs <<<"$line")"
}

read -r ceiling ceiling_cpu < <(median_runs redis_xadd 32 "$(timed_requests 32)")
read -r direct direct_cpu < <(median_runs redis_xadd 1 "$(timed_requests 1)")
read -r batch1 batch1_cpu < <(median_runs publish 50 1 "$window")
read -r batch100 batch100_cpu < <(median_runs publish 8 100 "$window")
read -r unpipelined unpipelined_cpu < <(median_runs publish 50 1 1)

# sbctl bench publisher with $1 publishers on one Publisher and the rest of
# the arguments, to a new topic: "MSGS_PER_SEC MSGS".
publisher() {
  local line
  line=$("$sbctl" --server="127.0.0.1:$grpc_port" bench publisher \
    --topic="bench.$(date +%s%N)" --publishers="$1" "${@:2}" --size=100 \
    --duration="$duration" 2>/dev/null | tail -1)
  echo "$(field msgs_per_sec <<<"$line") $(field msgs <<<"$line")"
}
read -r threads threads_cpu < <(median_runs publisher 50)
read -r callbacks callbacks_cpu < <(median_runs publisher 50 --callbacks)
read -r no_dedup no_dedup_cpu < <(median_runs publisher 50 --callbacks --max_attempts=1)

# sbctl bench latency RUNS times, on a new topic under prefix $1 each time,
# with the rest of the arguments (--group): prints the medians of p50, p99
# and max in microseconds, and the lowest percentage of the published
# messages that arrived.
latency() {
  local lines=()
  for run in $(seq "$runs"); do
    lines+=("$("$sbctl" --server="127.0.0.1:$grpc_port" bench latency --topic="$1.$run" \
      "${@:2}" --rate="$rate" --size=100 --duration="$duration" 2>/dev/null | tail -1)")
    rcli flushall >/dev/null
  done
  for key in p50_us p99_us max_us; do
    for line in "${lines[@]}"; do field "$key" <<<"$line"; done | median
  done
  for line in "${lines[@]}"; do
    python3 -c "import json,sys; r=json.loads(sys.stdin.read()); print(100*r['msgs']/max(r['published'],1))" <<<"$line"
  done | sort -g | head -1
}
durable=$(latency bench.durable --group=g | xargs)
ephemeral=$(latency bench.ephemeral.latency | xargs)

python3 - "$runs" "$duration" "$window" "$rate" "$ceiling" "$ceiling_cpu" "$direct" \
  "$direct_cpu" "$batch1" "$batch1_cpu" "$batch100" "$batch100_cpu" "$unpipelined" \
  "$unpipelined_cpu" "$threads" "$threads_cpu" "$callbacks" "$callbacks_cpu" "$no_dedup" \
  "$no_dedup_cpu" "$durable" "$ephemeral" <<'EOF'
import sys
(runs, duration, window, rate, ceiling, ceiling_cpu, direct, direct_cpu, batch1, batch1_cpu,
 batch100, batch100_cpu, unpipelined, unpipelined_cpu, threads, threads_cpu, callbacks,
 callbacks_cpu, no_dedup, no_dedup_cpu, durable, ephemeral) = sys.argv[1:]
ceiling, direct, batch1, batch100, unpipelined, threads, callbacks, no_dedup = map(
    float, (ceiling, direct, batch1, batch100, unpipelined, threads, callbacks, no_dedup))
met = lambda ok: "yes" if ok else "**no**"
def latency(figures):
    p50, p99, top, received = map(float, figures.split())
    return (f"p50 {p50 / 1000:.2f} ms, p99 {p99 / 1000:.2f} ms (max {top / 1000:.1f} ms, "
            f"{received:.1f}% received)"), p99
durable_text, durable_p99 = latency(durable)
ephemeral_text, _ = latency(ephemeral)
print(f"| Case | 100-byte messages, median of {runs} runs of {duration} s | Result "
      "| Redis CPU per msg | Target | Met |")
print("|---|---|---|---|---|---|")
print(f"| (a) | redis-benchmark XADD, 50 connections, pipeline 32 (the ceiling) "
      f"| {ceiling:,.0f} msgs/s | {ceiling_cpu} µs | | |")
print(f"| (b) | redis-benchmark XADD, 50 connections, unpipelined "
      f"| {direct:,.0f} msgs/s | {direct_cpu} µs | | |")
print(f"| (c) | Switchboard, 50 streams × {window} in flight, batch 1 "
      f"| {batch1:,.0f} msgs/s = **{batch1 / direct:.2f}× (b)** | {batch1_cpu} µs "
      f"| ≥ 1.5× (b) | {met(batch1 >= 1.5 * direct)} |")
print(f"| (c) | Switchboard, 8 streams × {window} in flight, batch 100 "
      f"| {batch100:,.0f} msgs/s = **{100 * batch100 / ceiling:.0f}% of (a)** | {batch100_cpu} µs "
      f"| ≥ 35% of (a) | {met(batch100 >= 0.35 * ceiling)} |")
print(f"| (c) | Switchboard, 50 streams × 1 in flight, batch 1 (as (b): each waits for its answer) "
      f"| {unpipelined:,.0f} msgs/s = {unpipelined / direct:.2f}× (b) | {unpipelined_cpu} µs "
      "| | |")
publisher = ("Switchboard, 50 publishers in one process on one auto-batching Publisher, one "
             "message per call (as (b): each waits for its id)")
print(f"| (c') | {publisher}: 50 threads, default options (dedup ids) "
      f"| {threads:,.0f} msgs/s = {threads / direct:.2f}× (b) | {threads_cpu} µs | | |")
print(f"| (c') | {publisher}: 50 callback chains, default options (dedup ids) "
      f"| {callbacks:,.0f} msgs/s = {callbacks / direct:.2f}× (b) | {callbacks_cpu} µs | | |")
print(f"| (c') | {publisher}: 50 callback chains, `max_attempts` 1 (no dedup ids, as (b)) "
      f"| {no_dedup:,.0f} msgs/s = **{no_dedup / direct:.2f}× (b)** | {no_dedup_cpu} µs "
      f"| ≥ 1.0× (b) | {met(no_dedup >= direct)} |")
print(f"| (d) | Publish to delivery at {float(rate):,.0f} msgs/s, durable (Consume, acked) "
      f"| {durable_text} | | p99 ≤ 2 ms | {met(durable_p99 <= 2000)} |")
print(f"| (d) | Publish to delivery at {float(rate):,.0f} msgs/s, ephemeral (Subscribe) "
      f"| {ephemeral_text} | | | |")
EOF
echo
echo "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
