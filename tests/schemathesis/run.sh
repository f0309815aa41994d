#!/usr/bin/env bash
# Schemathesis (PyPI) against a running gateway: it reads /api/openapi.json, generates requests
# from it (valid and invalid) and checks every answer against the document. Part of .ci/run.
#
#   bash tests/schemathesis/run.sh
#
# Starts the debug gateway on free ports with a fresh SQLite database and the embedded broker,
# fills it with a few hundred simulated messages, then runs every check. The exceptions, each
# with its reason, are below (rules between a path and query parameters) and in
# schemathesis.toml next to this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/schemathesis
version=4.32.5

if ! schemathesis --version 2>/dev/null | grep -q "$version"; then
  python3 -m pip install --quiet "schemathesis==$version"
fi
cargo build --quiet --bin seano-gateway
cargo build --quiet -p jetson-sim

work=$(mktemp -d)
gateway_pid=
cleanup() {
  [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null && wait "$gateway_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

HTTP_ADDR=127.0.0.1:0 MQTT_EMBEDDED_ADDR=127.0.0.1:0 \
  DATABASE_URL="sqlite://$work/gateway.db?mode=rwc" \
  RUST_LOG="warn,seano_gateway::startup=info" \
  target/debug/seano-gateway >"$work/gateway.log" 2>&1 &
gateway_pid=$!

# The start-up line names the HTTP port and the broker.
for _ in $(seq 1 100); do
  grep -q "listening on http" "$work/gateway.log" && break
  kill -0 "$gateway_pid" 2>/dev/null || { cat "$work/gateway.log"; exit 1; }
  sleep 0.1
done
line=$(grep -m1 "listening on http" "$work/gateway.log") || { cat "$work/gateway.log"; exit 1; }
base=$(grep -o 'http://127.0.0.1:[0-9]*' <<<"$line")
broker=$(grep -o 'mqtt://127.0.0.1:[0-9]*' <<<"$line")
echo "schemathesis: gateway at $base, broker $broker"

# Data, so that vehicle routes answer 200 as well as 404.
target/debug/jetson-sim --broker "$broker" --vehicles 3 --count 300 --seed 7 >/dev/null

# The document as served, but for two rules it cannot state: `sensor_id` goes with `type`
# sensor_log only (with another type it is a 400), and `bucket` not with `after_seq`,
# `before_seq` or `order=desc` (a 400 naming them). The history operation is tested as one
# operation per message type, `sensor_id` declared on the sensor_log one only, and without
# `bucket`: bucketed history is checked against the raw rows by tests/api/retention.rs, and the
# track's `bucket` is tested here.
python3 - "$base/api/openapi.json" "$work/openapi.json" <<'PY'
import copy, json, sys, urllib.request

served, out = sys.argv[1], sys.argv[2]
doc = json.load(urllib.request.urlopen(served))
template = "/api/vehicles/{vehicle_id}/{type}"
item = doc["paths"].pop(template)
for kind in doc["components"]["schemas"]["MessageType"]["enum"]:
    op = copy.deepcopy(item)
    op["get"]["operationId"] += "_" + kind
    op["get"]["parameters"] = [
        p for p in op["get"]["parameters"]
        if p["name"] not in ("type", "bucket")
        and (p["name"] != "sensor_id" or kind == "sensor_log")
    ]
    doc["paths"][template.replace("{type}", kind)] = op
json.dump(doc, open(out, "w"))
PY

schemathesis --config-file "$here/schemathesis.toml" run "$work/openapi.json" --url "$base" \
  --checks all --seed 20261130 --no-color
