#!/usr/bin/env bash
# Installs every Debian package Switchboard needs to build, test and run.
# Used by the README's two commands, .ci/run and the Dockerfile, so the three can
# never disagree about dependencies. Idempotent: installs only what is missing.
set -euo pipefail

packages=(
  # Toolchain.
  build-essential cmake ninja-build pkg-config clang-format git ca-certificates
  # Libraries.
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libhiredis-dev libcurl4-openssl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libevent-dev libyaml-cpp-dev
  # Real servers the integration tests start on loopback.
  redis-server redis-tools nginx-light curl openssl
  # The real Prometheus that tests/integration/metrics/ points at Switchboard.
  prometheus
  # The HTTP load generator of tests/perf/bench_rpc.sh.
  wrk
)

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
