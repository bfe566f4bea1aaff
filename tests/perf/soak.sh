#!/usr/bin/env bash
# The soak of issue 15: DURATION seconds (default 600) of mixed load on one
# switchboard over a real Redis, with a Redis restart in the middle, checking
# that memory stays flat and nothing acknowledged is lost.
#
# Starts, on free loopback ports, in a temporary directory:
#   - redis-server with an append-only file (appendfsync always), so that a
#     graceful restart (SHUTDOWN, then the same directory again) keeps every
#     acknowledged entry;
#   - jsonrpc_provider (tests/perf/jsonrpc_provider.cc), the upstream `soak`;
#   - switchboard from BUILD_DIR on that Redis.
# Then runs, each in a loop until the end:
#   - a publisher: `sbctl publish soak.jobs --print_ids` fed RATE lines a
#     second for 20 s per run; a payload is acknowledged when its id came back
#     (ids print in publish order, so run r's first k payloads are its k
#     acknowledged ones);
#   - a consumer: `sbctl consume soak.jobs --group=soak` (acks each message),
#     restarted if it ends;
#   - subscribe churn: `sbctl bench latency` on one of four ephemeral topics
#     in turn (a Subscribe and a PublishStream opened and closed every 15 s;
#     a new topic name every run would grow the per-topic metric series up
#     to their label cap, growth by design that a soak should not measure);
#   - RPC: `sbctl bench call` on upstream `soak`, 300 calls a second, 15-s runs;
#   - stream churn: `sbctl bench consume` (10 Consume streams and a publish
#     stream, opened and closed every few seconds) on topic soak.churn.
# At DURATION/10 (inside the warm-up) and DURATION/2 Redis shuts down
# (SHUTDOWN, which flushes the AOF) and comes back 3 s later on the same port. The switchboard's RSS is sampled every
# 10 s; warm-up ends at DURATION/5. At the end the load stops, the consumer
# gets up to 60 s to drain, and switchboard gets SIGTERM.
#
# Pass: RSS at the end within 5% of RSS after warm-up, switchboard exits 0,
# no sanitizer report in its log, and every acknowledged payload consumed.
# Prints a Markdown table with the figures and the load average, and exits 1
# when a check fails. Under an ASan build (SWITCHBOARD_SANITIZE=address) the
# quarantine is bounded (16 MiB) and freed memory goes back to the system
# every second, so that neither reads as growth, and LeakSanitizer runs at
# exit. The RSS samples are in rss (seconds, KiB) among the kept logs.
#
#   tests/perf/soak.sh [BUILD_DIR]   (default build/release; DURATION=600 RATE=500;
#                                     KEEP=1 keeps the logs)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
duration=${DURATION:-600}
rate=${RATE:-500}
sbctl=$build/client/sbctl
provider_bin=$build/tests/perf/jsonrpc_provider
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ ! -x $build/server/switchboard || ! -x $sbctl || ! -x $provider_bin ]]; then
  cmake -S . -B "$build" -G Ninja >/dev/null
  ninja -C "$build" switchboard sbctl jsonrpc_provider >/dev/null
fi

work=$(mktemp -d)
redis= server= provider=
loops=()
cleanup() {
  for pid in "${loops[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  for pid in $server $provider $redis; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  if [[ -n ${KEEP:-} ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
source tests/perf/lib.sh  # free_port, wait_for_port

redis_port=$(free_port)
start_redis() {
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work" --save '' \
    --appendonly yes --appendfsync always --logfile "$work/redis.log" &
  redis=$!
  wait_for_port "$redis_port"
}
start_redis

"$provider_bin" --port=0 >"$work/provider.port" 2>"$work/provider.log" &
provider=$!
for _ in $(seq 100); do [[ -s $work/provider.port ]] && break; sleep 0.1; done
provider_port=$(head -1 "$work/provider.port")

grpc_port=$(free_port)
metrics_port=$(free_port)
cat >"$work/switchboard.yaml" <<EOF
topics:
  - name: "soak.news.*"
    kind: ephemeral
upstreams:
  - name: soak
    urls: ["http://127.0.0.1:$provider_port/"]
EOF
# Under ASan: a bounded quarantine, and freed memory returned to the system
# every second (as glibc trims), so that RSS follows what is in use rather
# than the peak (the Redis restart is a burst of reconnects and retries).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=16:allocator_release_to_os_interval_ms=1000} \
  "$build/server/switchboard" --config="$work/switchboard.yaml" \
  --listen="127.0.0.1:$grpc_port" --metrics_listen="127.0.0.1:$metrics_port" \
  --broker="redis://127.0.0.1:$redis_port" 2>"$work/switchboard.log" &
server=$!
wait_for_port "$grpc_port"
sb() { "$sbctl" --server="127.0.0.1:$grpc_port" "$@"; }
for _ in $(seq 100); do sb health --service=switchboard.v1.Broker >/dev/null 2>&1 && break; sleep 0.1; done

start=$(date +%s)
end=$((start + duration))
running() { (($(date +%s) < end)); }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
# Under ASan, RSS also holds what the sanitizer keeps: the shadow of every
# heap page ever used (poisoned on free, never released), the quarantine,
# the stack depot. What the program itself holds is the allocator's live
# bytes, read from the running process with gdb (a pause of about a second).
# Opt-in (HEAP=1): the attach itself leaves pages resident (seen: +17 MiB
# of RSS for the rest of the run), so a run that checks RSS does not use it.
asan=
if [[ ${HEAP:-0} == 1 ]] && ldd "$build/server/switchboard" | grep -q libasan; then asan=1; fi
heap_kb() {
  gdb -p "$server" -batch -nx -iex "set auto-load off" \
    -ex 'print (unsigned long)__sanitizer_get_current_allocated_bytes()' 2>/dev/null |
    awk '/^\$1 = / {print int($3 / 1024)}'
}

# Each loop runs in its own process group, so that cleanup stops its sbctl too.
loop() { set -m; "$@" & loops+=($!); set +m; }

publisher_loop() {
  local run=0
  while running; do
    run=$((run + 1))
    python3 - "$run" "$rate" >"$work/fed.$run" <<'EOF' &
import sys, time
run, rate = int(sys.argv[1]), int(sys.argv[2])
start = time.monotonic()
for i in range(rate * 20):
    print(f"soak-{run}-{i}", flush=(i % 50 == 49))
    delay = start + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
EOF
    local feeder=$!
    tail -n +1 --pid="$feeder" -f "$work/fed.$run" 2>/dev/null |
      sb publish soak.jobs --print_ids >"$work/ids.$run" 2>>"$work/publisher.log" || true
    kill "$feeder" 2>/dev/null || true
    wait "$feeder" 2>/dev/null || true
  done
}
consumer_loop() {
  while running || [[ ! -e $work/drained ]]; do
    sb consume soak.jobs --group=soak >>"$work/consumed" 2>>"$work/consumer.log" || sleep 1
  done
}
subscribe_loop() {
  local run=0
  while running; do
    run=$((run + 1))
    sb bench latency --topic="soak.news.$((run % 4))" --rate=200 --duration=15 \
      >>"$work/latency.log" 2>/dev/null || sleep 1
  done
}
rpc_loop() {
  while running; do
    sb bench call --upstream=soak --method=getSlot --rate=300 --duration=15 \
      >>"$work/call.log" 2>>"$work/call.err" || sleep 1
  done
}
churn_loop() {
  while running; do
    sb bench consume --topic=soak.churn --group=churn --streams=10 --messages=2000 \
      --duration=30 >>"$work/churn.log" 2>/dev/null || sleep 1
  done
}

loop publisher_loop
loop consumer_loop
loop subscribe_loop
loop rpc_loop
loop churn_loop

# Redis restarts twice: at 1/10, inside the warm-up, so that the baseline
# includes what a reconnect burst leaves allocated (buffers at their high
# water, queued publishes), and at 1/2, which shows whether another one
# grows memory.
warmup_at=$((start + duration / 5))
restarts_at=($((start + duration / 10)) $((start + duration / 2)))
rss_warm= restarted= heap_warm= heap_end=
: >"$work/rss"
while running; do
  now=$(date +%s)
  if ! kill -0 "$server" 2>/dev/null; then
    echo "switchboard exited at $((now - start)) s, before the end" >&2
    break
  fi
  # The live heap (HEAP=1) is read only at warm-up and at the end, after RSS.
  echo "$((now - start)) $(rss_kb)" >>"$work/rss"
  if [[ -z $rss_warm ]] && ((now >= warmup_at)); then
    rss_warm=$(rss_kb)
    if [[ -n $asan ]]; then heap_warm=$(heap_kb); fi
  fi
  if ((${#restarts_at[@]} > 0 && now >= restarts_at[0])); then
    redis-cli -p "$redis_port" shutdown >/dev/null 2>&1 || true
    wait "$redis" 2>/dev/null || true
    sleep 3
    start_redis
    restarted="${restarted:+$restarted and }$((now - start))"
    restarts_at=("${restarts_at[@]:1}")
  fi
  sleep 10
done
rss_end=$(rss_kb || echo 0)
if [[ -n $asan ]]; then heap_end=$(heap_kb); fi

# The load generators end on their own once `running` is false; the consumer
# drains until every acknowledged payload arrived, or 60 s.
acknowledged() {
  for ids in "$work"/ids.*; do
    head -n "$(wc -l <"$ids")" "$work/fed.${ids##*.}"
  done
}
acknowledged | sort -u >"$work/acked"
for _ in $(seq 60); do
  acknowledged | sort -u >"$work/acked"
  sort -u "$work/consumed" >"$work/consumed.sorted"
  missing=$(comm -23 "$work/acked" "$work/consumed.sorted" | wc -l)
  ((missing == 0)) && break
  sleep 1
done
touch "$work/drained"
for pid in "${loops[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
loops=()

kill -TERM "$server"
exit_code=0
wait "$server" || exit_code=$?
server=
reports=$(grep -cE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$work/switchboard.log" || true)
acked=$(wc -l <"$work/acked")
consumed=$(wc -l <"$work/consumed.sorted")
rpc_calls=$(python3 -c "import json,sys
total = 0
for line in open(sys.argv[1]):
    if line.startswith('{'): total += json.loads(line).get('calls', 0)
print(total)" "$work/call.log")

python3 - "$duration" "$rate" "$rss_warm" "$rss_end" "$acked" "$consumed" "$missing" \
  "$exit_code" "$reports" "$restarted" "$rpc_calls" "$load_before" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$heap_warm" "$heap_end" <<'EOF'
import sys
(duration, rate, warm, end, acked, consumed, missing, exit_code, reports, restarted,
 rpc_calls, load_before, load_after, heap_warm, heap_end) = sys.argv[1:]
warm, end = int(warm or 1), int(end or 0)
growth = 100.0 * (end - warm) / warm
ok = lambda good: "yes" if good else "**no**"
print(f"| Soak, {duration} s, {rate} publishes/s, Redis restarted at {restarted} s | Result | Pass |")
print("|---|---|---|")
print(f"| RSS after warm-up → at the end | {warm / 1024:.1f} MiB → {end / 1024:.1f} MiB "
      f"({growth:+.1f}%) | {ok(abs(growth) <= 5)} |")
if heap_warm and heap_end:
    # What the program holds at one instant: it follows the load in flight,
    # so the row shows it next to RSS, and the samples are in `heap`.
    print(f"| ASan: heap in use after warm-up → at the end (live bytes) | "
          f"{int(heap_warm) / 1024:.1f} MiB → {int(heap_end) / 1024:.1f} MiB | (info) |")
print(f"| Acknowledged publishes consumed | {int(acked) - int(missing):,} of {int(acked):,} "
      f"({int(consumed):,} distinct consumed) | {ok(int(missing) == 0 and int(acked) > 0)} |")
print(f"| JSON-RPC calls answered | {int(rpc_calls):,} | {ok(int(rpc_calls) > 0)} |")
print(f"| Sanitizer reports in the server log | {reports} | {ok(int(reports) == 0)} |")
print(f"| Exit code after SIGTERM | {exit_code} | {ok(exit_code == '0')} |")
print(f"\nLoad average (1, 5, 15 min) before: {load_before}; after: {load_after}")
passed = (abs(growth) <= 5 and int(missing) == 0 and int(acked) > 0 and int(rpc_calls) > 0
          and reports == "0" and exit_code == "0")
sys.exit(0 if passed else 1)
EOF
