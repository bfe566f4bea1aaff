#!/usr/bin/env bash
# The JSON-RPC proxy benchmark of issues 4 and 12, as in the README table.
#
# Starts, on loopback ports picked at run time, in a temporary directory:
#   - a provider: jsonrpc_provider (tests/perf/jsonrpc_provider.cc,
#     PROVIDER_THREADS event loops, default 1), which answers a single
#     JSON-RPC call and a batch alike, each response with its request's id,
#     and counts HTTP requests and calls (GET /stats); no rate limit;
#   - a reverse proxy: nginx (worker_processes auto) with `proxy_pass` to an
#     upstream block that keeps CONCURRENCY connections alive;
#   - switchboard with that provider as upstream `bench`: no rate limit,
#     max_connections MAX_CONNECTIONS (default 8), and a cache for
#     getGenesisHash;
#   - a second switchboard, the same plus auto-batching on that upstream
#     (`batch: BATCH_CONFIG`, default {max_calls: 100, max_bytes: 1048576,
#     methods: [getSlot]}); when switchboard rejects that config (a build
#     without batching) or BATCHING=0, its rows say "skipped";
#   - a third switchboard, the first with `server.upstream_threads: 1`: its
#     upstream I/O on one thread, as before issue 12, against the default
#     (one thread per core, or UPSTREAM_THREADS when set);
# then measures, in this one run, with the same JSON-RPC request shape:
#   (a) wrk POSTing to the provider directly, CONCURRENCY connections
#       (default 64), 2 threads;
#   (b) the same wrk through the reverse proxy;
#   (c) `sbctl bench call` through switchboard, CONCURRENCY calls in flight,
#       params varied per call so that none is coalesced: unary Calls on one
#       gRPC channel, and the same calls multiplexed on one CallStream
#       (`--stream`, as a busy worker would make them); both again through
#       the batching switchboard, with the calls the provider saw per HTTP
#       request; and, to split the cost, both for a method switchboard
#       answers from its cache (gRPC and switchboard's own path, without the
#       upstream request);
#   the stack's floor: the same sbctl load through floor_proxy
#       (tests/perf/floor_proxy.cc), which serves the same gRPC API with
#       nothing but gRPC's callback API in front and one libcurl multi
#       thread behind (same MAX_CONNECTIONS), no validation, admission,
#       cache or metrics: what any proxy built on this stack costs here;
#       and gRPC alone: floor_proxy answering getGenesisHash in its gRPC
#       handler; and the floor of auto-batching: a second floor_proxy with
#       --batch_max_calls=FLOOR_BATCH_MAX_CALLS (default 100), whose curl
#       thread sends the calls it finds waiting while every connection is
#       busy as one JSON-RPC batch and splits the answer by id (no rows
#       when BATCHING=0);
#   (d) latency at about RATE calls/s (default 1000), one request at a time:
#       wrk with one connection that waits 1000/RATE ms between an answer and
#       its next request (wrk's `delay()`; it times each request from its
#       write to its answer), to the provider directly and through the
#       reverse proxy, against `sbctl bench call --rate=RATE` through
#       switchboard (open loop, timed from the call's start to its answer),
#       also on a CallStream, with batching and for the cached method, and
#       through floor_proxy. "Added" is a figure minus the direct one.
# Throughput rows also show the proxy's own CPU time per call (nginx proxy
# workers, or switchboard), from /proc. Each figure is the median of RUNS
# runs (default 3) of DURATION seconds (default 10). Prints one Markdown
# table, then the load average before and after (the machine's other work
# skews every figure). Not part of the default test run: it takes about
# 23 * RUNS * DURATION seconds. On a shared machine run it as
# `nice -n -10 tests/perf/bench_rpc.sh` (as root).
#
# PIN=1 measures instead the throughput rows (a), (b) and (c) twice, with
# taskset: first the proxies (the switchboards, floor_proxy, the nginx
# proxy's master and workers: every thread) pinned to CPU 0 and the provider
# and load generator (wrk or sbctl) to the other CPUs, then the proxies
# pinned to CPUs 0-1 and the rest to the CPUs beyond (none on a 2-core
# machine: there the provider and load generator float over both CPUs,
# sharing them with the proxy as in the unpinned run). The first is what a
# proxy does with one core of its own; on a 2-core machine the provider
# and the load generator then share the other core. Prints its own table
# (about 20 * RUNS * DURATION seconds).
#
#   tests/perf/bench_rpc.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-3}
duration=${DURATION:-10}
concurrency=${CONCURRENCY:-64}
max_connections=${MAX_CONNECTIONS:-8}
rate=${RATE:-1000}
method=getSlot
provider_threads=${PROVIDER_THREADS:-1}
batching=${BATCHING:-1}
batch_config=${BATCH_CONFIG:-"{max_calls: 100, max_bytes: 1048576, methods: [$method]}"}
floor_batch_max_calls=${FLOOR_BATCH_MAX_CALLS:-100}
pin=${PIN:-0}
upstream_threads=${UPSTREAM_THREADS:-}
sbctl=$build/client/sbctl
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

floor_proxy=$build/tests/perf/floor_proxy
jsonrpc_provider=$build/tests/perf/jsonrpc_provider
if [[ ! -x $build/server/switchboard || ! -x $sbctl || ! -x $floor_proxy ||
  ! -x $jsonrpc_provider ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" switchboard sbctl floor_proxy jsonrpc_provider >/dev/null
fi
if [[ $pin == 1 ]] && (($(nproc) < 2)); then
  echo "PIN=1 needs 2 CPUs or more" >&2
  exit 1
fi

work=$(mktemp -d)
provider= proxy= server= batch_server= one_thread_server= floor= floor_batch_server=
cleanup() {
  for pid in $floor_batch_server $floor $one_thread_server $batch_server $server $proxy $provider; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

source tests/perf/lib.sh  # free_port, wait_for_port

# nginx in the foreground with its master process; workers run as the
# current user. $1 names the instance, $2 is worker_processes, stdin the
# http block's contents.
start_nginx() {
  mkdir -p "$work/$1"
  cat >"$work/$1/nginx.conf" <<EOF
user $(id -un) $(id -gn);
daemon off;
worker_processes $2;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $work/$1/body;
  proxy_temp_path $work/$1/proxy;
  $(cat)
}
EOF
  nginx -p "$work/$1" -c "$work/$1/nginx.conf" -e "$work/$1/error.log" &
}

"$jsonrpc_provider" --port=0 --threads="$provider_threads" >"$work/provider.port" \
  2>"$work/provider.log" &
provider=$!
for _ in $(seq 100); do
  [[ -s $work/provider.port ]] && break
  sleep 0.1
done
provider_port=$(head -1 "$work/provider.port")
proxy_port=$(free_port)
start_nginx proxy auto <<EOF
upstream provider {
    server 127.0.0.1:$provider_port;
    keepalive $concurrency;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$proxy_port;
    location / {
      proxy_pass http://provider;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF
proxy=$!
wait_for_port "$provider_port"
wait_for_port "$proxy_port"

# Starts a switchboard with upstream `bench` and, on stdin, more YAML lines
# for that upstream; sets sb_pid and sb_port, or leaves sb_pid empty (and
# says why on stderr) when switchboard exits first: it rejected the config.
start_switchboard() {
  local name=$1
  sb_port=$(free_port)
  {
    cat <<EOF
upstreams:
  - name: bench
    urls: ["http://127.0.0.1:$provider_port/"]
    max_connections: $max_connections
    cache_ttl_ms: {getGenesisHash: 3600000}
EOF
    cat
    [[ -z $upstream_threads ]] || echo "server: {upstream_threads: $upstream_threads}"
  } >"$work/$name.yaml"
  "$build/server/switchboard" --config="$work/$name.yaml" --listen="127.0.0.1:$sb_port" \
    --metrics_listen="127.0.0.1:$(free_port)" 2>"$work/$name.log" &
  sb_pid=$!
  for _ in $(seq 100); do
    if ! kill -0 "$sb_pid" 2>/dev/null; then
      wait "$sb_pid" || true
      echo "$name: switchboard exited: $(tail -1 "$work/$name.log")" >&2
      sb_pid=
      return 0
    fi
    "$sbctl" --server="127.0.0.1:$sb_port" health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
}
start_switchboard switchboard </dev/null
server=$sb_pid grpc_port=$sb_port
[[ -n $server ]] || exit 1
batch_port= batch_skipped="BATCHING=0"
if [[ $batching != 0 ]]; then
  start_switchboard switchboard-batch <<EOF
    batch: $batch_config
EOF
  batch_server=$sb_pid
  [[ -z $batch_server ]] || batch_port=$sb_port
  batch_skipped="switchboard rejects \`batch:\`"
fi
upstream_threads_default=$upstream_threads
upstream_threads=1
start_switchboard switchboard-1thread </dev/null
upstream_threads=$upstream_threads_default
one_thread_server=$sb_pid one_thread_port=$sb_port
[[ -n $one_thread_server ]] || exit 1
floor_port=$(free_port)
"$floor_proxy" --listen="127.0.0.1:$floor_port" --upstream_url="http://127.0.0.1:$provider_port/" \
  --max_connections="$max_connections" &
floor=$!
floor_batch_port=
if [[ $batching != 0 ]]; then
  floor_batch_port=$(free_port)
  "$floor_proxy" --listen="127.0.0.1:$floor_batch_port" \
    --upstream_url="http://127.0.0.1:$provider_port/" --max_connections="$max_connections" \
    --batch_max_calls="$floor_batch_max_calls" &
  floor_batch_server=$!
fi
# One call end to end through each, so that a broken setup fails here and
# not as a row of zeros.
for port in "$grpc_port" "$floor_port" "$one_thread_port" $batch_port $floor_batch_port; do
  for _ in $(seq 100); do
    "$sbctl" --server="127.0.0.1:$port" health >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$sbctl" --server="127.0.0.1:$port" call bench "$method" '[]' >/dev/null
done

# Throughput and latency of the wrk and sbctl loads go through on_load_cpus:
# pinned to load_cpus when set (PIN=1).
load_cpus=
on_load_cpus() {
  if [[ -n $load_cpus ]]; then taskset -c "$load_cpus" "$@"; else "$@"; fi
}

# wrk's script: POST a JSON-RPC request; with WRK_DELAY_MS, wait that long
# between an answer and the next request; print a JSON summary at the end.
cat >"$work/jsonrpc.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"$method","params":[]}'
wrk.headers["Content-Type"] = "application/json"
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms then
  function delay() return delay_ms end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"calls_per_sec":%.1f,"p50_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"errors":%d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readlines()[-1])['$1'])"; }
# Fails the benchmark when the summary on stdin counted errors.
clean() {
  python3 -c "
import json, sys
line = sys.stdin.readlines()[-1]
if json.loads(line)['errors']:
    sys.exit('errors in: ' + line)
print(line, end='')"
}
ticks_per_second=$(getconf CLK_TCK)
# CPU ticks (user + system) of the processes named by pid in $@, together.
cpu_ticks() { for pid in "$@"; do cat "/proc/$pid/stat"; done | awk '{t += $14 + $15} END {print t + 0}'; }
proxy_workers() { pgrep -P "$proxy"; }

# "HTTP_REQUESTS CALLS" the provider has answered so far.
provider_stats() {
  curl -s "http://127.0.0.1:$provider_port/stats" |
    python3 -c "import json,sys; s=json.load(sys.stdin); print(s['http_requests'], s['calls'])"
}

# Runs "$@" (which prints a JSON summary with calls_per_sec) while counting
# the CPU time of the proxy processes PROXY_PIDS and the provider's calls
# and HTTP requests; prints "CALLS_PER_SEC PROXY_CPU_US_PER_CALL
# CALLS_PER_PROVIDER_REQUEST".
with_proxy_cpu() {
  local before after line calls_per_sec stats_before stats_after
  stats_before=$(provider_stats)
  before=$(cpu_ticks $PROXY_PIDS)
  line=$("$@" | clean)
  after=$(cpu_ticks $PROXY_PIDS)
  stats_after=$(provider_stats)
  calls_per_sec=$(field calls_per_sec <<<"$line")
  awk -v rate="$calls_per_sec" -v ticks=$((after - before)) -v hz="$ticks_per_second" \
    -v seconds="$duration" -v before="$stats_before" -v after="$stats_after" \
    'BEGIN {
      split(before, b, " "); split(after, a, " ")
      requests = a[1] - b[1]
      printf "%s %.1f %.2f\n", rate, ticks * 1e6 / hz / (rate > 0 ? rate * seconds : 1),
        (requests > 0 ? (a[2] - b[2]) / requests : 0)
    }'
}
# RUNS runs of "$@"; prints the median of each of the three columns.
median_runs() {
  local results
  results=$(for _ in $(seq "$runs"); do "$@"; done)
  echo "$(cut -d' ' -f1 <<<"$results" | median) $(cut -d' ' -f2 <<<"$results" | median)" \
    "$(cut -d' ' -f3 <<<"$results" | median)"
}

# wrk to port $1, closed loop, CONCURRENCY connections.
wrk_load() {
  on_load_cpus wrk -t2 -c"$concurrency" -d"${duration}s" -s "$work/jsonrpc.lua" "http://127.0.0.1:$1/"
}
# sbctl bench call with the arguments, through switchboard (or, with
# TARGET_PORT, floor_proxy).
sbctl_bench() {
  on_load_cpus "$sbctl" --server="127.0.0.1:${TARGET_PORT:-$grpc_port}" bench call --upstream=bench "$@" \
    --duration="$duration" 2>/dev/null
}
# Extra arguments (--stream) go to sbctl bench call.
sbctl_load() { sbctl_bench --method="$method" --concurrency="$concurrency" "$@"; }
sbctl_cached_load() {
  sbctl_bench --method=getGenesisHash --params='[]' --concurrency="$concurrency" "$@"
}
# wrk to port $1, one connection paced to about RATE requests per second.
wrk_paced() {
  WRK_DELAY_MS=$(python3 -c "print(max(1, round(1000 / $rate)))") \
    wrk -t1 -c1 -d"${duration}s" -s "$work/jsonrpc.lua" "http://127.0.0.1:$1/"
}
sbctl_paced() { sbctl_bench --method="$method" --rate="$rate" "$@"; }
sbctl_cached_paced() { sbctl_bench --method=getGenesisHash --params='[]' --rate="$rate"; }
# RUNS runs of "$@" (a latency probe); prints the medians of calls_per_sec,
# p50_us and p99_us.
latency() {
  local lines=()
  for _ in $(seq "$runs"); do lines+=("$("$@" | clean)"); done
  for key in calls_per_sec p50_us p99_us; do
    for line in "${lines[@]}"; do field "$key" <<<"$line"; done | median
  done | xargs
}

# A taskset CPU list: CPUs $1 to $2.
cpu_range() { if (($1 == $2)); then echo "$1"; else echo "$1-$2"; fi; }
pin_to() {
  local cpus=$1 pid
  shift
  for pid in "$@"; do taskset -a -p -c "$cpus" "$pid" >/dev/null; done
}
# PIN=1: the throughput rows with the proxies on 1 CPU, then on 2; one table.
if [[ $pin == 1 ]]; then
  last_cpu=$(($(nproc) - 1))
  for cores in 1 2; do
    proxy_cpus=$(cpu_range 0 $((cores - 1)))
    load_cpus=
    ((cores <= last_cpu)) && load_cpus=$(cpu_range "$cores" "$last_cpu")
    pin_to "$proxy_cpus" $server $batch_server $one_thread_server $floor $floor_batch_server $proxy \
      $(proxy_workers)
    pin_to "${load_cpus:-0-$last_cpu}" "$provider"
    {
      echo "direct $(PROXY_PIDS= median_runs with_proxy_cpu wrk_load "$provider_port")"
      echo "proxied $(PROXY_PIDS=$(proxy_workers | xargs) median_runs with_proxy_cpu wrk_load \
        "$proxy_port")"
      echo "switchboard $(PROXY_PIDS=$server median_runs with_proxy_cpu sbctl_load)"
      echo "stream $(PROXY_PIDS=$server median_runs with_proxy_cpu sbctl_load --stream)"
      echo "one_thread $(TARGET_PORT=$one_thread_port PROXY_PIDS=$one_thread_server median_runs \
        with_proxy_cpu sbctl_load)"
      echo "one_thread_stream $(TARGET_PORT=$one_thread_port PROXY_PIDS=$one_thread_server \
        median_runs with_proxy_cpu sbctl_load --stream)"
      if [[ -n $batch_server ]]; then
        echo "batch $(TARGET_PORT=$batch_port PROXY_PIDS=$batch_server median_runs \
          with_proxy_cpu sbctl_load)"
        echo "batch_stream $(TARGET_PORT=$batch_port PROXY_PIDS=$batch_server median_runs \
          with_proxy_cpu sbctl_load --stream)"
      fi
      echo "floor_unary $(TARGET_PORT=$floor_port PROXY_PIDS=$floor median_runs with_proxy_cpu \
        sbctl_load)"
      echo "floor_stream $(TARGET_PORT=$floor_port PROXY_PIDS=$floor median_runs \
        with_proxy_cpu sbctl_load --stream)"
      if [[ -n $floor_batch_server ]]; then
        echo "floor_batch $(TARGET_PORT=$floor_batch_port PROXY_PIDS=$floor_batch_server \
          median_runs with_proxy_cpu sbctl_load)"
        echo "floor_batch_stream $(TARGET_PORT=$floor_batch_port PROXY_PIDS=$floor_batch_server \
          median_runs with_proxy_cpu sbctl_load --stream)"
      fi
    } >"$work/pinned-$cores"
    echo "${load_cpus:-0-$last_cpu}" >"$work/pinned-$cores.load"
  done
  export runs duration concurrency max_connections batch_config batch_skipped work last_cpu \
    floor_batch_max_calls
  python3 - <<'EOF'
import os
e = os.environ
work = e["work"]
cols = {}
for cores in (1, 2):
    with open(f"{work}/pinned-{cores}") as f:
        cols[cores] = {k: tuple(map(float, v)) for k, *v in (l.split() for l in f)}
    with open(f"{work}/pinned-{cores}.load") as f:
        cols[cores]["load"] = f.read().strip()
rows = [
    ("direct", f"(a) wrk → provider, {e['concurrency']} connections"),
    ("proxied", "(b) wrk → nginx reverse proxy → provider"),
    ("switchboard", f"(c) sbctl bench call → Switchboard (max_connections "
     f"{e['max_connections']}), {e['concurrency']} unary calls in flight"),
    ("stream", "(c) the same on one CallStream"),
    ("one_thread", "(c) Switchboard with `upstream_threads: 1`, unary"),
    ("one_thread_stream", "(c) the same on one CallStream"),
    ("batch", f"(c) Switchboard with auto-batching (`batch: {e['batch_config']}`), unary"),
    ("batch_stream", "(c) the same on one CallStream"),
    ("floor_unary", "(c) the stack's floor (floor_proxy), unary"),
    ("floor_stream", "(c) the stack's floor, on one CallStream"),
    ("floor_batch", "(c) the stack's floor with batching (floor_proxy --batch_max_calls="
     f"{e['floor_batch_max_calls']}), unary"),
    ("floor_batch_stream", "(c) the same on one CallStream"),
]
def cell(cores, key):
    if key not in cols[cores]:
        return f"skipped: {e['batch_skipped']}", ""
    rate, cpu, ratio = cols[cores][key]
    text = f"{rate:,.0f} calls/s"
    if "batch" in key:
        text += f"; {ratio:.1f} calls per provider request"
    return text, ("" if key == "direct" else f"{cpu} µs")
print(f"| Median of {e['runs']} runs of {e['duration']} s | proxies on CPU 0, provider and "
      f"load on CPU(s) {cols[1]['load']} | proxy CPU per call | proxies on CPUs 0-1, provider "
      f"and load on CPU(s) {cols[2]['load']} | proxy CPU per call |")
print("|---|---|---|---|---|")
for key, what in rows:
    print("| " + " | ".join((what,) + cell(1, key) + cell(2, key)) + " |")
EOF
  echo
  echo "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

read -r direct _ _ < <(PROXY_PIDS= median_runs with_proxy_cpu wrk_load "$provider_port")
read -r proxied proxied_cpu _ < <(PROXY_PIDS=$(proxy_workers | xargs) median_runs with_proxy_cpu \
  wrk_load "$proxy_port")
read -r switchboard switchboard_cpu _ < <(PROXY_PIDS=$server median_runs with_proxy_cpu sbctl_load)
read -r cached cached_cpu _ < <(PROXY_PIDS=$server median_runs with_proxy_cpu sbctl_cached_load)
read -r stream stream_cpu _ < <(PROXY_PIDS=$server median_runs with_proxy_cpu sbctl_load --stream)
read -r one_thread one_thread_cpu _ < <(TARGET_PORT=$one_thread_port \
  PROXY_PIDS=$one_thread_server median_runs with_proxy_cpu sbctl_load)
read -r one_thread_stream one_thread_stream_cpu _ < <(TARGET_PORT=$one_thread_port \
  PROXY_PIDS=$one_thread_server median_runs with_proxy_cpu sbctl_load --stream)
read -r cached_stream cached_stream_cpu _ < <(PROXY_PIDS=$server median_runs with_proxy_cpu \
  sbctl_cached_load --stream)
read -r floor_unary floor_unary_cpu _ < <(TARGET_PORT=$floor_port PROXY_PIDS=$floor median_runs \
  with_proxy_cpu sbctl_load)
read -r floor_stream floor_stream_cpu _ < <(TARGET_PORT=$floor_port PROXY_PIDS=$floor median_runs \
  with_proxy_cpu sbctl_load --stream)
read -r grpc_unary grpc_unary_cpu _ < <(TARGET_PORT=$floor_port PROXY_PIDS=$floor median_runs \
  with_proxy_cpu sbctl_cached_load)
read -r grpc_stream grpc_stream_cpu _ < <(TARGET_PORT=$floor_port PROXY_PIDS=$floor median_runs \
  with_proxy_cpu sbctl_cached_load --stream)
batch= batch_cpu= batch_ratio= batch_stream= batch_stream_cpu= batch_stream_ratio=
batch_latency= floor_batch= floor_batch_cpu= floor_batch_ratio= floor_batch_stream=
floor_batch_stream_cpu= floor_batch_stream_ratio=
if [[ -n $batch_server ]]; then
  read -r batch batch_cpu batch_ratio < <(TARGET_PORT=$batch_port PROXY_PIDS=$batch_server \
    median_runs with_proxy_cpu sbctl_load)
  read -r batch_stream batch_stream_cpu batch_stream_ratio < <(TARGET_PORT=$batch_port \
    PROXY_PIDS=$batch_server median_runs with_proxy_cpu sbctl_load --stream)
fi
if [[ -n $floor_batch_server ]]; then
  read -r floor_batch floor_batch_cpu floor_batch_ratio < <(TARGET_PORT=$floor_batch_port \
    PROXY_PIDS=$floor_batch_server median_runs with_proxy_cpu sbctl_load)
  read -r floor_batch_stream floor_batch_stream_cpu floor_batch_stream_ratio < <( \
    TARGET_PORT=$floor_batch_port PROXY_PIDS=$floor_batch_server median_runs with_proxy_cpu \
    sbctl_load --stream)
fi
direct_latency=$(latency wrk_paced "$provider_port")
proxied_latency=$(latency wrk_paced "$proxy_port")
switchboard_latency=$(latency sbctl_paced)
stream_latency=$(latency sbctl_paced --stream)
cached_latency=$(latency sbctl_cached_paced)
floor_latency=$(TARGET_PORT=$floor_port latency sbctl_paced)
floor_stream_latency=$(TARGET_PORT=$floor_port latency sbctl_paced --stream)
grpc_latency=$(TARGET_PORT=$floor_port latency sbctl_cached_paced)
[[ -z $batch_server ]] || batch_latency=$(TARGET_PORT=$batch_port latency sbctl_paced)

export runs duration concurrency max_connections rate direct proxied proxied_cpu switchboard \
  switchboard_cpu cached cached_cpu stream stream_cpu cached_stream cached_stream_cpu floor_unary \
  floor_unary_cpu floor_stream floor_stream_cpu grpc_unary grpc_unary_cpu grpc_stream \
  grpc_stream_cpu direct_latency proxied_latency switchboard_latency stream_latency \
  cached_latency floor_latency floor_stream_latency grpc_latency batch batch_cpu batch_ratio \
  batch_stream batch_stream_cpu batch_stream_ratio batch_latency batch_config batch_skipped \
  provider_threads one_thread one_thread_cpu one_thread_stream one_thread_stream_cpu \
  upstream_threads floor_batch floor_batch_cpu floor_batch_ratio floor_batch_stream \
  floor_batch_stream_cpu floor_batch_stream_ratio floor_batch_max_calls
cores=$(nproc) python3 - <<'EOF'
import os
e = os.environ
rate, runs, duration, concurrency, max_connections, cores = (
    e["rate"], e["runs"], e["duration"], e["concurrency"], e["max_connections"], e["cores"])
(direct, proxied, switchboard, cached, stream, cached_stream, floor_unary, floor_stream,
 grpc_unary, grpc_stream) = (
    float(e[k]) for k in ("direct", "proxied", "switchboard", "cached", "stream",
                          "cached_stream", "floor_unary", "floor_stream", "grpc_unary",
                          "grpc_stream"))
direct_p50 = float(e["direct_latency"].split()[1])
met = lambda ok: "yes" if ok else "**no**"
def latency(key):
    rate, p50, p99 = map(float, e[key].split())
    return f"p50 {p50:.0f} µs, p99 {p99:.0f} µs at {rate:,.0f} calls/s", p50
def added(key, bold=False):
    text, p50 = latency(key)
    figure = f"adds {p50 - direct_p50:.0f} µs p50"
    return f"{text}: {'**' + figure + '**' if bold else figure}", p50 - direct_p50
def times_b(x, bold=False):
    figure = f"{x / proxied:.2f}× (b)"
    return f"{x:,.0f} calls/s = {'**' + figure + '**' if bold else figure}"
def batched(key, what, target, ok):
    if not e[key]:
        return ("(c)", what, f"skipped: {e['batch_skipped']}", "", target, "")
    floor = e["floor_" + key]
    against_floor = f" = {float(e[key]) / float(floor):.2f}× batching floor" if floor else ""
    return ("(c)", what, f"{times_b(float(e[key]), True)}{against_floor}; "
            f"{float(e[key + '_ratio']):.1f} calls per provider request", f"{e[key + '_cpu']} µs",
            target, met(ok(float(e[key]))))
def batch_floor(key, what):
    if not e[key]:
        return ("(c)", what, "skipped: BATCHING=0", "", "", "")
    return ("(c)", what, f"{times_b(float(e[key]))}; {float(e[key + '_ratio']):.1f} calls per "
            "provider request", f"{e[key + '_cpu']} µs", "", "")
threads = e["upstream_threads"] or f"default: {min(int(cores), 8)}"
one_thread, one_thread_stream = float(e["one_thread"]), float(e["one_thread_stream"])
unary_added = added("switchboard_latency", True)
stream_added = added("stream_latency", True)
floor_added = added("floor_latency")
floor_stream_added = added("floor_stream_latency")
rows = [
    ("(a)", f"wrk → provider (jsonrpc_provider, {e['provider_threads']} thread(s)), "
     f"{concurrency} connections", f"{direct:,.0f} calls/s", "", "", ""),
    ("(b)", f"wrk → nginx reverse proxy ({cores} workers, upstream keepalive) → provider, "
     f"{concurrency} connections", f"{proxied:,.0f} calls/s = {proxied / direct:.2f}× (a)",
     f"{e['proxied_cpu']} µs", "", ""),
    ("(c)", f"sbctl bench call → Switchboard (max_connections {max_connections}, "
     f"upstream_threads {threads}) → provider, {concurrency} calls in flight on one gRPC "
     f"channel", f"{times_b(switchboard)} = **{switchboard / floor_unary:.2f}× floor**",
     f"{e['switchboard_cpu']} µs", "≥ 0.9× floor", met(switchboard >= 0.9 * floor_unary)),
    ("(c)", "the same through Switchboard with `upstream_threads: 1`", times_b(one_thread),
     f"{e['one_thread_cpu']} µs", "", ""),
    ("(c)", "the same through the stack's floor (floor_proxy: gRPC callback API + one libcurl "
     "multi thread, nothing else)", times_b(floor_unary), f"{e['floor_unary_cpu']} µs", "", ""),
    batched("batch", f"the same through Switchboard with auto-batching (`batch: "
            f"{e['batch_config']}`)", "≥ 0.5× (b)", lambda x: x >= 0.5 * proxied),
    batch_floor("floor_batch", "the same through the stack's floor with batching (floor_proxy "
                f"--batch_max_calls={e['floor_batch_max_calls']}: waiting calls leave as one "
                "JSON-RPC batch, split by id)"),
    ("(c)", "the same through Switchboard, for a method it answers from its cache (no upstream "
     "request)", times_b(cached), f"{e['cached_cpu']} µs", "", ""),
    ("(c)", "gRPC alone: the same load to floor_proxy, which answers that method in its gRPC "
     "handler", times_b(grpc_unary), f"{e['grpc_unary_cpu']} µs", "", ""),
    ("(c)", f"sbctl bench call --stream → Switchboard → provider, {concurrency} calls in flight "
     "multiplexed on one CallStream",
     f"{times_b(stream)} = **{stream / floor_stream:.2f}× floor**", f"{e['stream_cpu']} µs",
     "≥ 0.9× floor", met(stream >= 0.9 * floor_stream)),
    ("(c)", "the same through Switchboard with `upstream_threads: 1`",
     times_b(one_thread_stream), f"{e['one_thread_stream_cpu']} µs", "", ""),
    ("(c)", "the same through the stack's floor", times_b(floor_stream),
     f"{e['floor_stream_cpu']} µs", "", ""),
    batched("batch_stream", "the same through Switchboard with auto-batching",
            f"≥ 1.0× (b), ≤ {e['proxied_cpu']} µs",
            lambda x: x >= proxied and float(e["batch_stream_cpu"]) <= float(e["proxied_cpu"])),
    batch_floor("floor_batch_stream", "the same through the stack's floor with batching"),
    ("(c)", "the same through Switchboard, for the cached method", times_b(cached_stream),
     f"{e['cached_stream_cpu']} µs", "", ""),
    ("(c)", "gRPC alone, on a CallStream", times_b(grpc_stream), f"{e['grpc_stream_cpu']} µs",
     "", ""),
    ("(d)", f"wrk → provider, one request at a time, ~{float(rate):,.0f}/s",
     latency("direct_latency")[0], "", "", ""),
    ("(d)", "wrk → nginx reverse proxy → provider, the same", added("proxied_latency")[0], "",
     "", ""),
    ("(d)", f"sbctl bench call --rate={rate} → Switchboard → provider", unary_added[0], "",
     "≤ floor + 30 µs p50", met(unary_added[1] <= floor_added[1] + 30)),
    ("(d)", "the same through the stack's floor", floor_added[0], "", "", ""),
    ("(d)", "the same through Switchboard with auto-batching",
     added("batch_latency")[0] if e["batch_latency"] else f"skipped: {e['batch_skipped']}",
     "", "", ""),
    ("(d)", "the same through Switchboard, for the cached method (no upstream request)",
     added("cached_latency")[0], "", "", ""),
    ("(d)", "gRPC alone: floor_proxy answering that method in its gRPC handler",
     added("grpc_latency")[0], "", "", ""),
    ("(d)", f"sbctl bench call --stream --rate={rate} → Switchboard → provider",
     stream_added[0], "", "≤ floor + 30 µs p50",
     met(stream_added[1] <= floor_stream_added[1] + 30)),
    ("(d)", "the same through the stack's floor", floor_stream_added[0], "", "", ""),
]
print(f"| Case | Median of {runs} runs of {duration} s | Result | Proxy CPU per call | Target | Met |")
print("|---|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
print()
print(f"Switchboard against the stack's floor: throughput {switchboard / floor_unary:.2f}× "
      f"(unary), {stream / floor_stream:.2f}× (stream); p50 latency "
      f"{unary_added[1] - floor_added[1]:+.0f} µs (unary), "
      f"{stream_added[1] - floor_stream_added[1]:+.0f} µs (stream). upstream_threads {threads} "
      f"against 1: {switchboard / one_thread:.2f}× (unary), {stream / one_thread_stream:.2f}× "
      "(stream).")
if e["batch"] and e["floor_batch"]:
    print(f"Auto-batching against the batching floor: {float(e['batch']) / float(e['floor_batch']):.2f}× "
          f"(unary), {float(e['batch_stream']) / float(e['floor_batch_stream']):.2f}× (stream); "
          f"the batching floor against (b): {float(e['floor_batch']) / proxied:.2f}× (unary), "
          f"{float(e['floor_batch_stream']) / proxied:.2f}× (stream).")
EOF
echo
echo "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
