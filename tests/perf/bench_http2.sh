#!/usr/bin/env bash
# HTTP/2 or HTTP/1.1 to a TLS provider (issue 12, point 4): which one costs
# Switchboard less per call.
#
# Starts, on loopback ports picked at run time, in a temporary directory:
#   - a provider: nginx (one worker) on a TLS listener with `http2` on (a
#     self-signed certificate made here with openssl), answering every POST
#     with `return 200 '{"jsonrpc":"2.0","result":1,"id":1}'`, its access log
#     counting the requests by protocol;
#     or, with PROVIDER=proxy, nginx reads each request's body and proxies it
#     (HTTP/1.1, kept alive) to jsonrpc_provider (tests/perf): an answer
#     only after the whole request, as a real provider gives it (nginx's
#     `return` answers an HTTP/2 request before reading its body, then
#     resets the stream);
#   - four switchboards with that provider as upstream `bench` over
#     https:// (`tls_verify: false`: the certificate is self-signed and the
#     config has no CA file option), no rate limit: `http2: false`
#     (kept-alive HTTP/1.1, max_connections MAX_CONNECTIONS, default 8),
#     the same with max_connections CONCURRENCY (a connection for every call
#     in flight, as HTTP/1.1 needs to match multiplexing), `http2: true`
#     with MAX_CONNECTIONS (libcurl multiplexes up to 100 calls on each
#     connection, ALPN picks h2), and `http2: true` with max_connections 1
#     (every call on one connection);
# then loads each with the same `sbctl bench call --stream`, CONCURRENCY
# calls (default 64) multiplexed on one CallStream, params varied per call
# so that none is coalesced, RUNS times (default 3) for DURATION seconds
# (default 10) each, the switchboards taking turns so that the machine's
# drift spreads over all four. Prints one Markdown table: the median
# calls/s and Switchboard's CPU time per call (user + system, from /proc),
# the failed calls over all runs by gRPC code, and the provider's requests
# by protocol (so a silent fall-back to HTTP/1.1 shows); then the load
# average before and after. Errors do not stop the run: libcurl 7.88 is
# known to lose a response now and then on a new HTTP/2 connection (see
# server/http/http_pool_impl.h), so the table counts them.
#
#   tests/perf/bench_http2.sh [BUILD_DIR]   (default build/release)
# LOGS=DIR keeps the logs there. Takes about 4 * RUNS * DURATION seconds; on a shared machine run it as
# `nice -n -10 tests/perf/bench_http2.sh` (as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
runs=${RUNS:-3}
duration=${DURATION:-10}
concurrency=${CONCURRENCY:-64}
max_connections=${MAX_CONNECTIONS:-8}
method=getSlot
provider_mode=${PROVIDER:-return}
sbctl=$build/client/sbctl
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

jsonrpc_provider=$build/tests/perf/jsonrpc_provider
if [[ ! -x $build/server/switchboard || ! -x $sbctl || ! -x $jsonrpc_provider ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" switchboard sbctl jsonrpc_provider >/dev/null
fi

work=$(mktemp -d)
provider= backend=
servers=()
cleanup() {
  for pid in "${servers[@]}" $provider $backend; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

source tests/perf/lib.sh # free_port, wait_for_port

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# nginx 1.22 (Debian 12) spells HTTP/2 as a `listen` parameter; from 1.25.1
# on it is `http2 on;`.
location='default_type application/json; return 200 '"'"'{"jsonrpc":"2.0","result":1,"id":1}'"'"';'
upstream_block=
if [[ $provider_mode == proxy ]]; then
  "$jsonrpc_provider" --port=0 >"$work/backend.port" 2>"$work/backend.log" &
  backend=$!
  for _ in $(seq 100); do
    [[ -s $work/backend.port ]] && break
    sleep 0.1
  done
  upstream_block="upstream backend { server 127.0.0.1:$(head -1 "$work/backend.port"); keepalive 64; }"
  location='proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
fi
provider_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
user $(id -un) $(id -gn);
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  log_format protocol '\$server_protocol';
  access_log $work/nginx/access.log protocol buffer=256k flush=1s;
  keepalive_requests 100000000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  $upstream_block
  server {
    listen 127.0.0.1:$provider_port ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    location / { $location }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
provider=$!
wait_for_port "$provider_port"

names=(http1 http1-wide http2 http2-1conn)
declare -A port pid
# Starts switchboard $1 with http2 $2 and max_connections $3 (its gRPC port
# in port[$1], its pid in pid[$1]).
start_switchboard() {
  port[$1]=$(free_port)
  cat >"$work/$1.yaml" <<EOF
upstreams:
  - name: bench
    urls: ["https://127.0.0.1:$provider_port/"]
    max_connections: $3
    http2: $2
    tls_verify: false
EOF
  "$build/server/switchboard" --config="$work/$1.yaml" --listen="127.0.0.1:${port[$1]}" \
    --metrics_listen="127.0.0.1:$(free_port)" 2>"$work/$1.log" &
  pid[$1]=$!
  servers+=("${pid[$1]}")
}
start_switchboard http1 false "$max_connections"
start_switchboard http1-wide false "$concurrency"
start_switchboard http2 true "$max_connections"
start_switchboard http2-1conn true 1
# One call end to end through each, so that a broken setup fails here; a
# burst of streams opens the HTTP/2 connections before they are measured.
for name in "${names[@]}"; do
  for _ in $(seq 100); do
    "$sbctl" --server="127.0.0.1:${port[$name]}" health >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$sbctl" --server="127.0.0.1:${port[$name]}" call bench "$method" '[]' >/dev/null
  "$sbctl" --server="127.0.0.1:${port[$name]}" bench call --upstream=bench --method="$method" \
    --concurrency="$concurrency" --stream --duration=1 >/dev/null 2>&1 || true
done
requests_by_protocol() { sleep 1.2 && sort "$work/nginx/access.log" | uniq -c | xargs; }
warmup_protocols=$(requests_by_protocol)
: >"$work/nginx/access.log"
kill -USR1 "$provider" # Reopen the log.

ticks_per_second=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# One run against switchboard $1: a line "NAME CALLS_PER_SEC CPU_US_PER_CALL
# SUMMARY_JSON".
run_once() {
  local before after line
  before=$(cpu_ticks "${pid[$1]}")
  line=$("$sbctl" --server="127.0.0.1:${port[$1]}" bench call --upstream=bench \
    --method="$method" --concurrency="$concurrency" --stream --duration="$duration" 2>/dev/null |
    tail -1)
  after=$(cpu_ticks "${pid[$1]}")
  python3 -c "
import json, sys
s = json.loads(sys.argv[1])
rate = s['calls_per_sec']
print(sys.argv[2], rate, round(($after - $before) * 1e6 / $ticks_per_second / max(rate * $duration, 1), 1),
      json.dumps(s, separators=(',', ':')))" "$line" "$1"
}
for _ in $(seq "$runs"); do
  for name in "${names[@]}"; do run_once "$name"; done
done >"$work/runs"
provider_protocols=$(requests_by_protocol)

export runs duration concurrency max_connections work provider_mode warmup_protocols provider_protocols
python3 - <<'EOF'
import collections, json, os, statistics
e = os.environ
rows = collections.defaultdict(list)
with open(f"{e['work']}/runs") as f:
    for line in f:
        name, rate, cpu, summary = line.split(" ", 3)
        rows[name].append((float(rate), float(cpu), json.loads(summary)))
what = {
    "http1": f"`http2: false`: HTTP/1.1 over TLS, kept alive, max_connections {e['max_connections']}",
    "http1-wide": f"`http2: false`, max_connections {e['concurrency']}: a connection per call "
                  "in flight",
    "http2": f"`http2: true`: HTTP/2 over TLS, multiplexed, max_connections {e['max_connections']}",
    "http2-1conn": "`http2: true`, max_connections 1: every call on one HTTP/2 connection",
}
base = statistics.median(r[0] for r in rows["http1"])
provider = ("nginx (TLS, `http2`) proxying to jsonrpc_provider" if e["provider_mode"] == "proxy"
            else "nginx (TLS, `http2`, `return 200`)")
print(f"| Switchboard → {provider}, sbctl bench call --stream, {e['concurrency']} in "
      f"flight; median of {e['runs']} runs of {e['duration']} s | Calls/s | Switchboard CPU "
      "per call | Failed calls (all runs) |")
print("|---|---|---|---|")
for name in ("http1", "http1-wide", "http2", "http2-1conn"):
    runs = rows[name]
    rate = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    errors = collections.Counter()
    calls = 0
    for _, _, s in runs:
        calls += s.get("calls", 0)
        for code, n in (s.get("errors") or {}).items():
            errors[code] += n
    failed = ", ".join(f"{n} {code}" for code, n in sorted(errors.items())) or "0"
    print(f"| {what[name]} | {rate:,.0f} = {rate / base:.2f}× | {cpu} µs | {failed} of "
          f"{calls:,} |")
print()
print(f"Provider requests by protocol: warm-up {e['warmup_protocols']}; measured runs "
      f"{e['provider_protocols']}.")
EOF
# What went wrong, if anything: the provider's error log and each
# switchboard's log, counted by message (without the time stamp).
for log in "$work/nginx/error.log" "${names[@]/#/$work/}"; do
  log=${log%.log}.log
  if [[ -s $log ]]; then
    echo
    echo "${log#"$work"/}:"
    cut -d' ' -f2- "$log" | sort | uniq -c | sort -rn | head -5
  fi
done
[[ -z ${LOGS:-} ]] || { mkdir -p "$LOGS" && cp -r "$work"/*.log "$work/nginx" "$LOGS/"; }
echo
echo "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
