#!/usr/bin/env bash
# The README's run command: on a fresh Debian machine, installs what is
# missing, builds, and runs switchboard with no configuration (loopback,
# embedded memory broker). Extra arguments are passed to switchboard.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSWITCHBOARD_BUILD_TESTS=OFF >/dev/null
ninja -C build/release switchboard sbctl
exec build/release/server/switchboard "$@"
