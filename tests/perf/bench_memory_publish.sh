#!/usr/bin/env bash
# Publish throughput of the embedded memory broker, as in the README table.
#
# Starts its own switchboard on free loopback ports, runs `sbctl bench
# publish` with 8 streams and 100-byte messages at batch 1 and batch 100,
# RUNS times each (default 3) for DURATION seconds (default 10), and prints
# the median of each figure as a Markdown table. Each run publishes to a
# topic of its own, and the runs together store several million messages:
# beyond the default limits.max_memory_bytes (1 GiB), where publishes are
# refused, so the switchboard gets `max_memory_bytes: 8 GiB` (the machine
# needs that much free memory). A run with failed publishes is reported on
# stderr: its rate counts only the stored messages. Not part of the default
# test run: it takes about 2 * RUNS * DURATION seconds.
#
#   tests/perf/bench_memory_publish.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-3}
duration=${DURATION:-10}

if [[ ! -x $build/server/switchboard || ! -x $build/client/sbctl ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" switchboard sbctl >/dev/null
fi

source tests/perf/lib.sh  # free_port, wait_for_port
grpc_port=$(free_port)
metrics_port=$(free_port)
config=$(mktemp)
echo "limits: {max_memory_bytes: 8589934592}" >"$config"
"$build/server/switchboard" --config="$config" --listen="127.0.0.1:$grpc_port" \
  --metrics_listen="127.0.0.1:$metrics_port" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -f "$config"' EXIT
for _ in $(seq 100); do
  "$build/client/sbctl" --server="127.0.0.1:$grpc_port" health >/dev/null 2>&1 && break
  sleep 0.1
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readlines()[-1])['$1'])"; }

echo "| Batch | msgs/s (median of $runs) | p50 per request | p99 per request |"
echo "|---|---|---|---|"
for batch in 1 100; do
  results=()
  for run in $(seq "$runs"); do
    results+=("$("$build/client/sbctl" --server="127.0.0.1:$grpc_port" bench publish \
      --topic="bench.b$batch.r$run" --streams=8 --batch="$batch" --size=100 \
      --duration="$duration" 2>/dev/null | tail -1)")
  done
  for r in "${results[@]}"; do
    errors=$(field errors <<<"$r")
    [[ $errors == "{}" ]] || echo "batch $batch: a run had failed publishes: $errors" >&2
  done
  rate=$(for r in "${results[@]}"; do field msgs_per_sec <<<"$r"; done | median)
  p50=$(for r in "${results[@]}"; do field p50_us <<<"$r"; done | median)
  p99=$(for r in "${results[@]}"; do field p99_us <<<"$r"; done | median)
  printf '| %s | %.0f | %s µs | %s µs |\n' "$batch" "$rate" "$p50" "$p99"
done
