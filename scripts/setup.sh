#!/usr/bin/env bash
# Installs every Debian package Switchboard needs to build, test and run.
# Used by the README's two commands, .ci/run and the Dockerfile, so the three can
# never disagree about dependencies. Idempotent: installs only what is missing.
#
#   scripts/setup.sh            everything: toolchain, libraries, test servers
#   scripts/setup.sh --runtime  only the shared libraries the binaries load
#                               (scripts/runtime-packages.txt), for the
#                               Dockerfile's runtime stage
set -euo pipefail
cd "$(dirname "$0")"

# The runtime list lives in its own file so the Dockerfile's slim stage and
# tests/deploy (which checks it against `ldd`) read the same list.
mapfile -t runtime_packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' runtime-packages.txt)
web3_client=../tests/integration/rpc/web3_client

case "${1:-}" in
  --runtime)
    packages=("${runtime_packages[@]}")
    ;;
  "")
    packages=(
      "${runtime_packages[@]}"
      # Toolchain.
      build-essential cmake ninja-build pkg-config clang-format git ca-certificates
      # libFuzzer (fuzz/): clang and its runtime libraries.
      clang libclang-rt-dev
      # Libraries.
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
      libabsl-dev libhiredis-dev libcurl4-openssl-dev prometheus-cpp-dev
      libgtest-dev libgmock-dev libevent-dev libyaml-cpp-dev libssl-dev
      # WebSocket framing for provider subscriptions (server/ws).
      libwslay-dev
      # Real servers the integration tests start on loopback.
      redis-server redis-tools nginx-light curl openssl
      # The real Prometheus that tests/integration/metrics/ points at Switchboard.
      prometheus
      # A real RabbitMQ node (tests/testing/rabbitmq_server.h starts its own,
      # as the current user, not Debian's system service) and rabbitmq-c, which
      # the RabbitMQ backend under construction (server/broker/amqp) and the
      # AMQP tests (tests/integration/amqp) build against. The switchboard
      # binary does not link it yet, so librabbitmq4 is not in
      # runtime-packages.txt.
      rabbitmq-server librabbitmq-dev
      # The HTTP load generator of tests/perf/bench_rpc.sh.
      wrk
      # tests/deploy: the manifest checks (Python + PyYAML) and
      # `docker-compose config`. kubectl (for `kubectl kustomize`) is not in
      # Debian; the test says so when neither kubectl nor kustomize is found.
      python3 python3-yaml docker-compose
      # The scripted WebSocket JSON-RPC provider of the integration tests
      # (tests/testing/ws_provider.py).
      python3-websockets
    )
    # The web3 client of tests/integration/rpc/json_rpc_http_test.cc runs on
    # Node.js (its npm packages come below), where the tests are (not in the
    # Dockerfile's build stage). A machine may have Node.js from elsewhere
    # (NodeSource's bundles npm): only a missing one is installed.
    if [[ -f $web3_client/package-lock.json ]] &&
      { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
      packages+=(nodejs npm)
    fi
    ;;
  *)
    echo "usage: $0 [--runtime]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# The unmodified web3 client (ethers, pinned by its package-lock.json) that
# the JSON-RPC front door's integration test runs, from the npm registry.
if [[ -z "${1:-}" && -f $web3_client/package-lock.json && ! -d $web3_client/node_modules/ethers ]]
then
  echo "setup: installing tests/integration/rpc/web3_client's npm packages" >&2
  npm ci --prefix "$web3_client" --no-audit --no-fund >/dev/null
fi
