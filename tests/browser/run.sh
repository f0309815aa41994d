#!/usr/bin/env bash
# The browser tests: builds the gateway and the simulator, makes sure Chromium and the npm
# packages are there, and runs with node's test runner:
# - seano-client.test.mjs: static/seano-client.js (reconnect, resume, dedupe, sendCommand) on a
#   fake socket;
# - types.test.mjs: static/seano-client.d.ts compiles with tsc --strict, used as an app would,
#   and matches the module and the gateway's frame schemas;
# - docs.test.mjs: /api/openapi.json and /api/asyncapi.json through the reference validators;
# - dashboard.test.mjs: the dashboard in headless Chromium with the simulator, and a restart;
# - commands.test.mjs: commands from the dashboard and the JS client to the simulator's boats,
#   and a read-only credential's disabled buttons;
# - history.test.mjs: the track and sensor chart's ranges, bucketed history over two hours of
#   backdated messages published over MQTT.
# Screenshots land in test-artifacts/ (dashboard.png, docs.png, commands.png, history.png).
# Exits non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "browser test: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -d "$here/node_modules/@asyncapi/parser" ] \
  || [ ! -d "$here/node_modules/typescript" ]; then
  # No install scripts: none is needed, and one dependency's would phone home.
  (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund)
fi

cargo build -q -p seano-gateway -p jetson-sim

target="${CARGO_TARGET_DIR:-$root/target}"
export SEANO_GATEWAY_BIN="${SEANO_GATEWAY_BIN:-$target/debug/seano-gateway}"
export SEANO_SIM_BIN="${SEANO_SIM_BIN:-$target/debug/jetson-sim}"
mkdir -p "$root/test-artifacts"
cd "$here"
node --test --test-reporter=spec seano-client.test.mjs types.test.mjs docs.test.mjs dashboard.test.mjs \
  commands.test.mjs history.test.mjs
