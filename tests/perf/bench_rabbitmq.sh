#!/usr/bin/env bash
# The RabbitMQ backend benchmark, as in the README table: Switchboard on
# RabbitMQ next to a direct rabbitmq-c client (tests/perf/amqp_perf.cc,
# RabbitMQ's PerfTest reduced to what Switchboard does), both measured in
# this one run, their runs alternating (which goes first too), so that a change in the machine's
# load falls on both.
#
# Starts its own RabbitMQ node (tests/perf/rabbitmq_node.cc: the test
# harness' private node, loopback, ports picked at run time) and its own
# switchboard --broker=amqp://... with a config that declares group `g` on
# every bench topic (one exact topic per row and run), so that each topic's
# quorum queue exists before its first publish. Both sides store the same:
# 100-byte persistent messages in a durable quorum queue, through a durable
# direct exchange, with publisher confirms. Rows, each the median of RUNS
# runs (default 3):
#   publish: `sbctl bench publish` for DURATION seconds (default 5) with S
#     streams × W requests in flight of B messages each, against amqp_perf
#     publish with at most S × W × B messages unconfirmed (the same number
#     in flight; Switchboard itself keeps at most 256 unconfirmed at
#     RabbitMQ). The publishers' queues are deleted after each run.
#   consume with acks, for each S:K in CONSUME (default "1:1 1:10 1:100
#     8:100", streams:credits per stream): MESSAGES (default 20000)
#     pre-published, then `sbctl bench consume` with S streams of K credits
#     until all are consumed and acked, against amqp_perf consume with
#     prefetch 2 × K on a queue pre-filled with as many, acking each
#     delivery. 2 × K is the prefetch of Switchboard's one consumer of the
#     group: twice the group's credits when it starts consuming, which is
#     when the first stream arrives (`rabbitmqctl list_consumers` showed
#     prefetch 200 for 8 streams × 100 credits, 20 for 1 × 10).
# Prints the load average before and after. With PIN=1 (2+ cores),
# switchboard runs on CPU 1, and the load generators and the node on CPU 0.
# Not part of the default test run.
#
#   tests/perf/bench_rabbitmq.sh [BUILD_DIR]   (default build/release;
#                                               RUNS=3 DURATION=5 MESSAGES=20000
#                                               CONSUME="1:1 1:10 1:100 8:100" PIN=0)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-3}
duration=${DURATION:-5}
messages=${MESSAGES:-20000}
consume_rows=${CONSUME:-"1:1 1:10 1:100 8:100"}
server_cpu=() client_cpu=()
if [[ ${PIN:-0} == 1 ]]; then
  server_cpu=(taskset -c 1) client_cpu=(taskset -c 0)
fi
sbctl=$build/client/sbctl
amqp_perf=$build/tests/perf/amqp_perf
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ ! -x $build/server/switchboard || ! -x $sbctl || ! -x $amqp_perf ||
  ! -x $build/tests/perf/rabbitmq_node ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" switchboard sbctl amqp_perf rabbitmq_node >/dev/null
fi
source tests/perf/lib.sh  # free_port, wait_for_port

# Publish rows: "streams batch window", each with a label.
publish_rows=("1 1 1" "8 1 16" "1 100 1" "8 100 1")

work=$(mktemp -d)
node= server=
cleanup() {
  for pid in $server $node; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  exec 7>&- 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The node stays while this script holds the fifo open (fd 7), however it
# ends; SIGTERM from cleanup stops it at once.
mkfifo "$work/node.in"
"${client_cpu[@]}" "$build/tests/perf/rabbitmq_node" <"$work/node.in" >"$work/node.port" \
  2>"$work/node.log" &
node=$!
exec 7>"$work/node.in"
for _ in $(seq 900); do
  [[ -s $work/node.port ]] && break
  kill -0 "$node" 2>/dev/null || { echo "rabbitmq_node failed:" >&2; tail -5 "$work/node.log" >&2; exit 1; }
  sleep 0.1
done
amqp_port=$(head -1 "$work/node.port")
[[ -n $amqp_port ]] || { echo "the RabbitMQ node did not start" >&2; exit 1; }

# Every bench topic, declared with group g.
{
  echo "topics:"
  for run in $(seq "$runs"); do
    for i in "${!publish_rows[@]}"; do echo "  - {name: bench.publish.p$i.r$run, groups: [g]}"; done
    for row in $consume_rows; do echo "  - {name: bench.consume.s${row/:/k}.r$run, groups: [g]}"; done
  done
} >"$work/switchboard.yaml"
grpc_port=$(free_port)
"${server_cpu[@]}" "$build/server/switchboard" --config="$work/switchboard.yaml" \
  --listen="127.0.0.1:$grpc_port" --metrics_listen="127.0.0.1:$(free_port)" \
  --broker="amqp://guest:guest@127.0.0.1:$amqp_port/" 2>"$work/switchboard.log" &
server=$!
for _ in $(seq 300); do
  "$sbctl" --server="127.0.0.1:$grpc_port" health --service=switchboard.v1.Broker \
    >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "switchboard failed:" >&2; tail -5 "$work/switchboard.log" >&2; exit 1; }
  sleep 0.1
done

field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readlines()[-1])['$1'])"; }
# Runs a load generator ("$@") on the client CPU; prints its last stdout line,
# or stops the script saying why it failed.
run() {
  if ! "${client_cpu[@]}" "$@" >"$work/run.out" 2>"$work/run.err"; then
    echo "failed: $*" >&2
    tail -5 "$work/run.err" >&2
    exit 1
  fi
  if [[ $(field errors <"$work/run.out" 2>/dev/null || echo '{}') != "{}" ]]; then
    echo "errors in: $*" >&2
    tail -1 "$work/run.out" >&2
    exit 1
  fi
  field msgs_per_sec <"$work/run.out"
}
amqp=("$amqp_perf" --port="$amqp_port")  # an array, not a function: run() may taskset it
# One run of a row, both sides: the direct client first in odd runs,
# Switchboard first in even ones (direct_run and our_run are the row's).
alternate() {
  if ((run % 2)); then
    direct_run
    our_run
  else
    our_run
    direct_run
  fi
}

echo "RabbitMQ 3.10 node and switchboard on loopback${server_cpu:+; switchboard on CPU 1, load generators and the node on CPU 0}; 100-byte persistent messages into quorum queues with confirms; median of $runs runs"
echo
echo "| Row | Switchboard msgs/s | direct rabbitmq-c msgs/s | Switchboard / direct | runs: Switchboard / direct |"
echo "|---|---|---|---|---|"
print_row() {  # $1: label, $2, $3: the runs' rates, one per line
  python3 - "$1" "$2" "$3" <<'EOF'
import statistics, sys
label, ours, direct = sys.argv[1], *([float(v) for v in a.split()] for a in sys.argv[2:])
o, d = statistics.median_low(ours), statistics.median_low(direct)
spread = lambda v: f"{min(v):,.0f}–{max(v):,.0f}"
print(f"| {label} | {o:,.0f} | {d:,.0f} | {o / d:.2f}× | {spread(ours)} / {spread(direct)} |")
EOF
}

for i in "${!publish_rows[@]}"; do
  read -r streams batch window <<<"${publish_rows[$i]}"
  in_flight=$((streams * batch * window))
  ours= direct=
  direct_run() {
    local queue=bench.direct.p$i.r$run
    direct+=$(run "${amqp[@]}" publish --queue="$queue" --size=100 --window="$in_flight" \
      --duration="$duration")$'\n'
    "${amqp[@]}" delete --queue="$queue" >/dev/null
  }
  our_run() {
    local topic=bench.publish.p$i.r$run
    ours+=$(run "$sbctl" --server="127.0.0.1:$grpc_port" bench publish --topic="$topic" \
      --streams="$streams" --batch="$batch" --window="$window" --size=100 \
      --duration="$duration")$'\n'
    "${amqp[@]}" delete --queue="switchboard/$topic/g" >/dev/null
  }
  for run in $(seq "$runs"); do alternate; done
  print_row "publish, batch $batch, $streams stream(s) × $window in flight (direct: $in_flight unconfirmed)" \
    "${ours%$'\n'}" "${direct%$'\n'}"
done

for row in $consume_rows; do
  streams=${row%:*} k=${row#*:}
  ours= direct=
  direct_run() {
    local queue=bench.direct.s${row/:/k}.r$run
    run "${amqp[@]}" publish --queue="$queue" --size=100 --window=500 --messages="$messages" >/dev/null
    direct+=$(run "${amqp[@]}" consume --queue="$queue" --prefetch=$((2 * k)) --messages="$messages" \
      --duration=300)$'\n'
    "${amqp[@]}" delete --queue="$queue" >/dev/null
  }
  our_run() {
    ours+=$(run "$sbctl" --server="127.0.0.1:$grpc_port" bench consume \
      --topic="bench.consume.s${row/:/k}.r$run" --group=g --streams="$streams" \
      --max_in_flight="$k" --messages="$messages" --size=100 --duration=300)$'\n'
    if [[ $(field msgs <"$work/run.out") != "$messages" ]]; then
      echo "sbctl bench consume did not consume all $messages:" >&2
      tail -1 "$work/run.out" >&2
      exit 1
    fi
  }
  for run in $(seq "$runs"); do alternate; done
  print_row "consume and ack $messages, $streams stream(s) × $k credits (prefetch $((2 * k)); direct: prefetch $((2 * k)))" \
    "${ours%$'\n'}" "${direct%$'\n'}"
done
echo
echo "load average (1, 5, 15 min): $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
