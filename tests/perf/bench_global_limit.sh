#!/usr/bin/env bash
# The fleet-wide rate limit benchmark of issue 11, as in the README table.
#
# Starts, on loopback ports picked at run time, in a temporary directory:
#   - one redis-server (no persistence);
#   - a provider: nginx with `limit_req` LIMIT r/s (default 100), burst
#     NGINX_BURST (default 5), nodelay, in front of a `return 200` server
#     (the integration tests' provider, tests/testing/nginx_server.cc), with
#     an access log of each request's time and status;
#   - REPLICAS (default 3) switchboard processes on that Redis, each with the
#     provider as upstream `provider`: `rate_limit: {requests_per_second:
#     RATE (default 100, the provider's own limit: the
#     benchmark measures how much of it the fleet uses), burst: BURST (default
#     2), scope: global}`,
#     max_connections 2, no coalescing;
# then loads every replica with `sbctl bench call --rate` (open loop, unary
# calls, params varied per call): OVERDEMAND (default 5) times the provider's
# limit in total, split evenly over the replicas, for BENCH_SECONDS (default
# 60). sbctl's calls carry its 30 s deadline, so calls queue in each replica
# for as long as the limiter can admit them in time; the load is cut off at
# the end of the window (sbctl is killed, and the replicas with it), and only
# what the provider answered inside the window is counted. From nginx's
# access log:
#   - utilisation: requests answered 200 in the window / (LIMIT x seconds);
#     target >= 98%;
#   - the worst 1-second window (sliding: one starting at each request, any
#     status); target <= LIMIT + NGINX_BURST;
#   - 429s; target 0.
# Then a second configuration, at FAST_LIMIT r/s (default 1000; nginx burst
# FAST_NGINX_BURST, default 20) with switchboard at FAST_RATE (default 980)
# burst FAST_BURST (default 10), max_connections 4, FAST_OVERDEMAND (default
# 1.5) times the limit, measures the same figures and Redis commands per
# proxied call:
#   - INFO commandstats: every command's calls, summed, after minus before
#     the window (INFO itself left out), over the calls answered (nginx's
#     200s) in between. Redis counts the commands a Lua script runs as well
#     as the EVALSHA that ran it; target <= 0.1;
#   - the same without the commands run inside scripts: MONITOR's lines over
#     the window, less those whose source is `lua` (round trips a replica
#     started: lease scripts, heartbeats, the broker's own commands).
# A fresh set of replicas, on a Redis database of its own, serves each run.
# Each figure is the median of RUNS runs (default 3). Prints one Markdown
# table, each run's figures above it, and the load average before and after
# (the machine's other work skews every figure). Not part of the default test
# run: it takes about 2 x RUNS x (BENCH_SECONDS + 5) seconds; for a quick
# check, BENCH_SECONDS=10 RUNS=1. On a shared machine run it as
# `nice -n -10 tests/perf/bench_global_limit.sh` (as root).
#
#   tests/perf/bench_global_limit.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-3}
seconds=${BENCH_SECONDS:-60}
replicas=${REPLICAS:-3}
limit=${LIMIT:-100}
nginx_burst=${NGINX_BURST:-5}
rate=${RATE:-100}
burst=${BURST:-2}
overdemand=${OVERDEMAND:-5}
fast_limit=${FAST_LIMIT:-1000}
fast_nginx_burst=${FAST_NGINX_BURST:-20}
fast_rate=${FAST_RATE:-980}
fast_burst=${FAST_BURST:-10}
fast_overdemand=${FAST_OVERDEMAND:-1.5}
method=getSlot
switchboard=$build/server/switchboard
sbctl=$build/client/sbctl
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ ! -x $switchboard || ! -x $sbctl ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" switchboard sbctl >/dev/null
fi

work=$(mktemp -d)
redis='' provider='' monitor=''
replica_pids=() load_pids=()
stop_pids() {
  for pid in "$@"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  stop_pids "${load_pids[@]}" "${replica_pids[@]}" $monitor $provider $redis
  rm -rf "$work"
}
trap cleanup EXIT

source tests/perf/lib.sh  # free_port, wait_for_port
# The value of series $2 on the metrics page at port $1 (0 when absent).
metric() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v series="$2" '$1 == series {v = $2} END {print v + 0}'
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
redis=$!
wait_for_port "$redis_port"

# Starts the provider: nginx (one process) with limit_req $1 r/s, burst $2,
# nodelay, in front of a server that answers every request; its access log
# is $work/provider/access.log ("$msec $status").
start_provider() {
  local dir=$work/provider port answer_port
  rm -rf "$dir"
  mkdir -p "$dir/temp"
  port=$(free_port)
  answer_port=$(free_port)
  cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
pid $dir/nginx.pid;
lock_file $dir/nginx.lock;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
  log_format bench '\$msec \$status';
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  default_type application/json;
  limit_req_zone \$server_port zone=rpc:1m rate=${1}r/s;
  upstream answer { server 127.0.0.1:$answer_port; keepalive 16; }
  server {
    listen 127.0.0.1:$port;
    access_log $dir/access.log bench;
    location / {
      limit_req zone=rpc burst=$2 nodelay;
      limit_req_status 429;
      proxy_pass http://answer;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$answer_port;
    access_log off;
    location / { return 200 '{"jsonrpc":"2.0","result":1234,"id":1}'; }
  }
}
EOF
  nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" &
  provider=$!
  provider_port=$port
  wait_for_port "$provider_port"
}

# Starts $replicas switchboards on Redis database $1 with the global limit
# $2 r/s, burst $3, max_connections $4; sets replica_pids, grpc_ports and
# metrics_ports, and waits until every one counts all live replicas.
start_replicas() {
  local i grpc_port metrics_port
  replica_pids=() grpc_ports=() metrics_ports=()
  cat >"$work/switchboard.yaml" <<EOF
broker:
  url: "redis://127.0.0.1:$redis_port/$1"
upstreams:
  - name: provider
    urls: ["http://127.0.0.1:$provider_port/"]
    max_connections: $4
    rate_limit: {requests_per_second: $2, burst: $3, scope: global}
    coalescing: {enabled: false}
EOF
  for i in $(seq "$replicas"); do
    grpc_port=$(free_port)
    metrics_port=$(free_port)
    "$switchboard" --config="$work/switchboard.yaml" --listen="127.0.0.1:$grpc_port" \
      --metrics_listen="127.0.0.1:$metrics_port" 2>>"$work/switchboard-$i.log" &
    replica_pids+=($!)
    grpc_ports+=("$grpc_port")
    metrics_ports+=("$metrics_port")
  done
  for i in "${!grpc_ports[@]}"; do
    for _ in $(seq 100); do
      "$sbctl" --server="127.0.0.1:${grpc_ports[$i]}" health >/dev/null 2>&1 && break
      sleep 0.1
    done
    # One call end to end, so that a broken setup fails here and not as a
    # row of zeros.
    if ! "$sbctl" --server="127.0.0.1:${grpc_ports[$i]}" call provider "$method" '[]' >/dev/null; then
      echo "replica $i cannot call the provider; its log:" >&2
      tail -20 "$work/switchboard-$((i + 1)).log" >&2
      return 1
    fi
  done
  for port in "${metrics_ports[@]}"; do
    for _ in $(seq 100); do
      [[ $(metric "$port" switchboard_fleet_live_replicas) == "$replicas" ]] && break
      sleep 0.1
    done
    if [[ $(metric "$port" switchboard_fleet_live_replicas) != "$replicas" ]]; then
      echo "a replica does not count $replicas live replicas" >&2
      return 1
    fi
  done
}

# Sum of every command's calls in INFO commandstats, INFO's own left out.
redis_commands() {
  redis-cli -p "$redis_port" INFO commandstats |
    awk -F'[:,=]' '/^cmdstat_/ && $1 != "cmdstat_info" {n += $3} END {print n + 0}'
}

# One run on Redis database $1: limit $2 r/s (nginx burst $3), switchboard
# rate $4 burst $5 over max_connections $6, total demand $7 calls/s; sets
# run_result to "UTILISATION_PERCENT WORST_WINDOW COUNT_429
# COMMANDS_PER_CALL TOP_LEVEL_COMMANDS_PER_CALL CALLS_ANSWERED". (No
# subshells: the EXIT trap must see every process started.)
one_run() {
  local db=$1 limit=$2 sb_rate=$4 sb_burst=$5 max_conn=$6 demand=$7
  local per_replica start end commands_before commands_after port
  start_replicas "$db" "$sb_rate" "$sb_burst" "$max_conn"
  per_replica=$(python3 -c "print($demand / $replicas)")
  redis-cli -p "$redis_port" MONITOR >"$work/monitor.log" 2>/dev/null &
  monitor=$!
  sleep 0.2  # MONITOR is on: it sees every command from here on.
  commands_before=$(redis_commands)
  start=$(date +%s.%N)
  load_pids=()
  for port in "${grpc_ports[@]}"; do
    "$sbctl" --server="127.0.0.1:$port" bench call --upstream=provider --method="$method" \
      --rate="$per_replica" --duration="$seconds" >/dev/null 2>>"$work/sbctl.log" &
    load_pids+=($!)
  done
  sleep "$seconds"
  end=$(date +%s.%N)
  commands_after=$(redis_commands)
  stop_pids $monitor
  monitor=
  # The window is over: neither sbctl nor the replicas need to wait for the
  # calls still queued (each run has fresh replicas on a database of its
  # own, so the killed ones' heartbeats do not count in the next run).
  for pid in "${load_pids[@]}" "${replica_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  stop_pids "${load_pids[@]}" "${replica_pids[@]}"
  load_pids=() replica_pids=()
  sleep 1  # nginx writes a request's line once it is done.
  run_result=$(python3 - "$work/provider/access.log" "$work/monitor.log" "$start" "$end" \
    "$limit" "$commands_before" "$commands_after" <<'EOF'
import sys
log, monitor, start, end, limit, before, after = sys.argv[1:]
start, end, limit = float(start), float(end), float(limit)
times, ok, throttled = [], 0, 0
for line in open(log):
    t, status = line.split()[:2]
    t = float(t)
    if start <= t < end:
        times.append(t)
        ok += status == "200"
        throttled += status == "429"
times.sort()
worst, j = 0, 0
for i in range(len(times)):
    while j < len(times) and times[j] < times[i] + 1:
        j += 1
    worst = max(worst, j - i)
# MONITOR's lines: 1700000000.123456 [0 127.0.0.1:54321] "EVALSHA" ...,
# or [0 lua] for a command a script ran.
import collections
by_command = collections.Counter()
for line in open(monitor, errors="replace"):
    parts = line.split(" ", 3)
    if len(parts) < 4 or not parts[0][:1].isdigit():
        continue
    source, command = parts[2], parts[3].split(" ", 1)[0].strip().strip('"').lower()
    if command == "info":
        continue
    by_command[("script " if source == "lua]" else "") + command] += 1
top_level = sum(n for c, n in by_command.items() if not c.startswith("script "))
print("  commands seen by MONITOR (script: run by a script):",
      ", ".join(f"{c} {n}" for c, n in by_command.most_common()) or "none", file=sys.stderr)
commands = int(after) - int(before)
print(f"{100 * ok / (limit * (end - start)):.1f} {worst} {throttled} "
      f"{commands / max(ok, 1):.4f} {top_level / max(ok, 1):.4f} {ok}")
EOF
  )
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Medians of each column of the lines on stdin.
medians() {
  local lines column
  lines=$(cat)
  for column in $(seq "$(head -1 <<<"$lines" | wc -w)"); do
    cut -d' ' -f"$column" <<<"$lines" | median
  done | xargs
}

# RUNS runs of configuration $1 (a name), with one_run's arguments after the
# database; sets config_result to the medians of one_run's figures.
db=0
run_config() {
  local name=$1 results=() run
  shift
  start_provider "$1" "$2"
  for run in $(seq "$runs"); do
    db=$((db + 1))
    one_run "$db" "$@"
    results+=("$run_result")
    echo "$name run $run: utilisation % / worst 1 s window / 429s / Redis commands per call" \
      "(commandstats) / (top level) / calls answered: $run_result" >&2
  done
  stop_pids $provider
  provider=
  config_result=$(printf '%s\n' "${results[@]}" | medians)
}

slow_demand=$(python3 -c "print($overdemand * $limit)")
fast_demand=$(python3 -c "print($fast_overdemand * $fast_limit)")
run_config slow "$limit" "$nginx_burst" "$rate" "$burst" 2 "$slow_demand"
read -r slow_util slow_worst slow_429 slow_cmds slow_top slow_calls <<<"$config_result"
run_config fast "$fast_limit" "$fast_nginx_burst" "$fast_rate" "$fast_burst" 4 "$fast_demand"
read -r fast_util fast_worst fast_429 fast_cmds fast_top fast_calls <<<"$config_result"

export runs seconds replicas limit nginx_burst rate burst overdemand fast_limit fast_nginx_burst \
  fast_rate fast_burst fast_overdemand slow_util slow_worst slow_429 slow_cmds slow_top \
  slow_calls fast_util fast_worst fast_429 fast_cmds fast_top fast_calls
python3 - <<'EOF'
import os
e = os.environ
met = lambda ok: "yes" if ok else "**no**"
n, limit, nginx_burst = e["replicas"], float(e["limit"]), int(e["nginx_burst"])
fast_limit, fast_nginx_burst = float(e["fast_limit"]), int(e["fast_nginx_burst"])
print(f"(A) {n} replicas on one Redis, each `rate_limit: {{requests_per_second: {e['rate']}, "
      f"burst: {e['burst']}, scope: global}}`, max_connections 2; `sbctl bench call --rate` to "
      f"each, {e['overdemand']}× the limit in all ({float(e['overdemand']) * limit:,.0f} calls/s); "
      f"provider nginx limit_req {limit:,.0f} r/s, burst {nginx_burst}, nodelay.")
print(f"(B) the same at {fast_limit:,.0f} r/s: `rate_limit: {{requests_per_second: "
      f"{e['fast_rate']}, burst: {e['fast_burst']}, scope: global}}`, max_connections 4, "
      f"{e['fast_overdemand']}× the limit ({float(e['fast_overdemand']) * fast_limit:,.0f} "
      f"calls/s); nginx limit_req {fast_limit:,.0f} r/s, burst {fast_nginx_burst}.")
print()
rows = [
    ("(A)", "utilisation of the provider's limit (200s / limit)",
     f"{float(e['slow_util']):.1f}%", "≥ 98%", met(float(e["slow_util"]) >= 98)),
    ("(A)", "worst 1-second window at the provider (requests)", e["slow_worst"],
     f"≤ {limit + nginx_burst:.0f}", met(int(e["slow_worst"]) <= limit + nginx_burst)),
    ("(A)", "429s from the provider", e["slow_429"], "0", met(int(e["slow_429"]) == 0)),
    ("(B)", "Redis commands per proxied call (INFO commandstats: commands run by scripts "
     "included)", f"{float(e['fast_cmds']):.3f}", "≤ 0.1", met(float(e["fast_cmds"]) <= 0.1)),
    ("(B)", "Redis commands per proxied call sent by the replicas (MONITOR: commands run by "
     "scripts left out)", f"{float(e['fast_top']):.3f}", "≤ 0.1",
     met(float(e["fast_top"]) <= 0.1)),
    ("(B)", "utilisation of the provider's limit", f"{float(e['fast_util']):.1f}%", "", ""),
    ("(B)", "worst 1-second window at the provider (requests)", e["fast_worst"],
     f"≤ {fast_limit + fast_nginx_burst:.0f}",
     met(int(e["fast_worst"]) <= fast_limit + fast_nginx_burst)),
    ("(B)", "429s from the provider", e["fast_429"], "0", met(int(e["fast_429"]) == 0)),
]
print(f"| Case | Figure | Median of {e['runs']} runs of {e['seconds']} s | Target | Met |")
print("|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
EOF
echo
echo "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
