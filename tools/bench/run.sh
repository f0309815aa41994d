#!/usr/bin/env bash
# Runs the standard benchmark scenarios of the SEANO gateway (issue 6) in sequence and prints
# one Markdown table. Unlike the `bench` binary, this script starts things: it builds the
# release binaries, starts a fresh gateway for every scenario (a new SQLite file or a fresh
# PostgreSQL database, a topic prefix and MQTT client id of its own) and stops it afterwards.
#
#   tools/bench/run.sh            the full scenarios (about 10 minutes)
#   tools/bench/run.sh --quick    every scenario at a tiny scale, a few seconds each (CI smoke)
#
# Environment:
#   BENCH_MQTT_URL  the machine's broker for the fan-out scenarios (default mqtt://127.0.0.1:1883)
#   BENCH_PG_URL    PostgreSQL for the ingest scenario (default postgres://postgres@127.0.0.1:5432/seano_bench;
#                   the database is dropped and created again with psql)
#   BENCH_OUT       where the JSON results and gateway logs go (default: a new /tmp/seano-bench.* dir)
#   BENCH_ONLY      run only the scenarios whose key matches this regex (keys: ingest-sqlite-stock,
#                   ingest-sqlite, ingest-pg, fanout, ramp, vehicle, idle, slow,
#                   cluster-ingest-one, cluster-ingest-two, cluster-one, cluster-two, baseline,
#                   commands-100)
#
# The commands scenario also starts jetson-sim: its boats register with their telemetry and
# answer the commands the bench sends and times (`BENCH_ONLY='^commands' tools/bench/run.sh`).
#
# The ingest scenarios use a private Mosquitto started from tools/bench/mosquitto.conf on a free
# port (no inflight limit, a deep queue), because the stock configuration limits one QoS 1
# subscriber (the gateway) to 20 unacknowledged messages; one ingest row on the stock broker
# shows the difference. Everything else uses the machine's Mosquitto, as the issue asks.
set -euo pipefail

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${BENCH_OUT:-$(mktemp -d /tmp/seano-bench.XXXXXX)}
mkdir -p "$OUT"
MQTT_URL=${BENCH_MQTT_URL:-mqtt://127.0.0.1:1883}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/seano_bench}
ONLY=${BENCH_ONLY:-.}
RUN=$$
GW_BIN="$ROOT/target/release/seano-gateway"
BENCH="$ROOT/target/release/bench"
SIM_BIN="$ROOT/target/release/jetson-sim"
GW_PID=""
GW2_PID=""
BROKER_PID=""
SIM_PID=""
SCEN=0

log() { printf '== %s\n' "$*" >&2; }

cleanup() {
  stop_sim
  stop_gateway
  stop_private_broker
}
trap cleanup EXIT
trap 'exit 130' INT TERM

host_of() { local hp=${1#*://}; hp=${hp%%/*}; echo "${hp%:*}"; }
port_of() { local hp=${1#*://}; hp=${hp%%/*}; echo "${hp##*:}"; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "building release binaries"
cargo build --release -p seano-gateway -p bench -p jetson-sim >&2

# 10,000 WebSocket connections need as many descriptors in the gateway and in the bench.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 10500 )); then
  log "warning: open-file limit $(ulimit -n) is below what the idle scenario needs (10,500)"
fi

# start_gateway DATABASE_URL MQTT_URL PREFIX [VAR=VALUE...]: sets GW_PID and GW_HTTP.
start_gateway() {
  local db=$1 mqtt=$2 prefix=$3
  shift 3
  local logf="$OUT/gateway-$SCEN${GW_TAG:-}.log"
  (cd "$OUT" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" \
      HTTP_ADDR=127.0.0.1:0 DATABASE_URL="$db" MQTT_URL="$mqtt" \
      MQTT_TOPIC_PREFIX="$prefix" MQTT_CLIENT_ID="bench-gw-$RUN-$SCEN" \
      RUST_LOG="warn,seano_gateway::startup=info" "$@" "$GW_BIN") >"$logf" 2>&1 &
  GW_PID=$!
  local port=""
  for _ in $(seq 1 600); do
    port=$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$logf" 2>/dev/null | head -1 | grep -oE '[0-9]+$' || true)
    [[ -n "$port" ]] && break
    if ! kill -0 "$GW_PID" 2>/dev/null; then
      echo "the gateway exited at start; its log ($logf):" >&2
      cat "$logf" >&2
      exit 1
    fi
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "the gateway did not log its port in 60 s ($logf)" >&2; exit 1; }
  GW_HTTP="http://127.0.0.1:$port"
  log "gateway pid $GW_PID on $GW_HTTP, broker $mqtt, prefix $prefix, database ${db%%\?*}"
}

stop_gateway() {
  if [[ -n "${GW2_PID:-}" ]]; then
    local first=$GW_PID
    GW_PID=$GW2_PID GW2_PID=""
    stop_gateway
    GW_PID=$first
  fi
  [[ -n "$GW_PID" ]] || return 0
  kill -TERM "$GW_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=""
}

# forget_session URL CLIENT_ID: removes a stopped client's persistent session (the gateway's,
# the fleet's command link) from a shared broker, so it does not keep queueing messages for nobody.
forget_session() {
  local url=$1 id=$2
  command -v mosquitto_pub >/dev/null || return 0
  mosquitto_pub -h "$(host_of "$url")" -p "$(port_of "$url")" -i "$id" \
    -t "bench$RUN/cleanup" -n >/dev/null 2>&1 || true
}

# A fresh private broker per ingest scenario: a stopped gateway's persistent session can leave
# hundreds of thousands of messages queued in it, which would cost CPU in later scenarios.
start_private_broker() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  { echo "listener $port 127.0.0.1"; cat "$ROOT/tools/bench/mosquitto.conf"; } >"$OUT/mosquitto-$SCEN.conf"
  mosquitto -c "$OUT/mosquitto-$SCEN.conf" >"$OUT/mosquitto-$SCEN.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  PRIVATE_URL="mqtt://127.0.0.1:$port"
  log "private Mosquitto (tools/bench/mosquitto.conf) pid $BROKER_PID on $PRIVATE_URL"
}

stop_private_broker() {
  [[ -n "$BROKER_PID" ]] || return 0
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

# start_sim MQTT_URL PREFIX BOATS SIM_ARGS...: the simulated fleet (ids 1..BOATS) on the
# scenario's broker and prefix; then waits until the gateway lists every boat (GET
# /api/vehicles), which it does from their first telemetry. Sets SIM_PID.
start_sim() {
  local mqtt=$1 prefix=$2 boats=$3
  shift 3
  local logf="$OUT/sim-$SCEN.log"
  local id="bench-sim-$RUN-$SCEN"
  "$SIM_BIN" --broker "$mqtt" --prefix "$prefix" --client-id "$id" --vehicles "$boats" \
    --start-id 1 --quiet --drain-timeout 2 "$@" >"$logf" 2>&1 &
  SIM_PID=$!
  local known=0
  for _ in $(seq 1 300); do
    known=$(curl -sf "$GW_HTTP/api/vehicles" |
      python3 -c 'import json, sys; print(len(json.load(sys.stdin)["vehicles"]))' 2>/dev/null || echo 0)
    (( known >= boats )) && break
    if ! kill -0 "$SIM_PID" 2>/dev/null; then
      echo "jetson-sim exited at start; its log ($logf):" >&2
      cat "$logf" >&2
      return 1
    fi
    sleep 0.1
  done
  (( known >= boats )) || { log "only $known of $boats boats registered in 30 s ($logf)"; return 1; }
  log "jetson-sim pid $SIM_PID: $boats boats registered, $*"
}

stop_sim() {
  [[ -n "$SIM_PID" ]] || return 0
  kill -TERM "$SIM_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SIM_PID" 2>/dev/null || true
  wait "$SIM_PID" 2>/dev/null || true
  SIM_PID=""
}

fresh_pg() {
  command -v psql >/dev/null || return 1
  local base=${PG_URL%/*} name=${PG_URL##*/}
  name=${name%%\?*}
  psql "$base/postgres" -qAtc "DROP DATABASE IF EXISTS \"$name\"" >/dev/null 2>&1 &&
    psql "$base/postgres" -qAtc "CREATE DATABASE \"$name\"" >/dev/null 2>&1
}

# scenario KEY NAME DB(sqlite|pg|pg-pair|none) BROKER_URL|private BENCH_ARGS...
# pg-pair: two gateways on PostgreSQL in one MQTT_SHARED_GROUP, the clients split between them.
# With SIM_BOATS=N (and SIM_ARGS), jetson-sim runs N boats on the scenario's prefix while the
# bench runs, started once the gateway is up.
scenario() {
  local key=$1 name=$2 db=$3 broker=$4
  shift 4
  [[ "$key" =~ $ONLY ]] || return 0
  SCEN=$((SCEN + 1))
  if [[ "$broker" == private ]]; then
    start_private_broker
    broker=$PRIVATE_URL
  fi
  local prefix="bench${RUN}s${SCEN}" out
  out="$OUT/$(printf '%02d' "$SCEN")-$key.json"
  log "scenario $SCEN: $name"
  local gw_args=()
  case "$db" in
    sqlite)
      start_gateway "sqlite://$OUT/scenario-$SCEN.db?mode=rwc" "$broker" "$prefix"
      gw_args=(--gateway "$GW_HTTP" --gateway-pid "$GW_PID") ;;
    pg|pg-pair)
      if ! fresh_pg; then
        log "skipped: cannot create the PostgreSQL database of $PG_URL"
        stop_private_broker
        return 0
      fi
      if [[ "$db" == pg ]]; then
        start_gateway "$PG_URL" "$broker" "$prefix"
        gw_args=(--gateway "$GW_HTTP" --gateway-pid "$GW_PID")
      else
        GW_TAG=-b start_gateway "$PG_URL" "$broker" "$prefix" INSTANCE_ID=b MQTT_SHARED_GROUP=bench
        local second_http=$GW_HTTP second_pid=$GW_PID
        GW_TAG=-a start_gateway "$PG_URL" "$broker" "$prefix" INSTANCE_ID=a MQTT_SHARED_GROUP=bench
        GW2_PID=$second_pid
        gw_args=(--gateway "$GW_HTTP" --gateway-pid "$GW_PID"
                 --also-gateway "$second_http" --also-gateway-pid "$second_pid")
      fi ;;
    none) ;;
  esac
  local sim_ok=1
  if [[ -n "${SIM_BOATS:-}" ]]; then
    # shellcheck disable=SC2086 # SIM_ARGS is a list of flags
    start_sim "$broker" "$prefix" "$SIM_BOATS" ${SIM_ARGS:-} || sim_ok=0
  fi
  log "bench --name '$name' --broker $broker --prefix $prefix ${gw_args[*]} $*"
  if (( ! sim_ok )) || ! "$BENCH" --json --name "$name" --broker "$broker" --prefix "$prefix" "${gw_args[@]}" "$@" >"$out"; then
    log "scenario $SCEN failed; gateway logs: $OUT/gateway-$SCEN*.log"
    rm -f "$out"
  fi
  stop_sim
  stop_gateway
  stop_private_broker
  if [[ "$broker" == "$MQTT_URL" && "$db" != none ]]; then
    forget_session "$broker" "bench-gw-$RUN-$SCEN"
    # The fleet's persistent command session, named by jetson-sim after client id, prefix and first id.
    [[ -n "${SIM_BOATS:-}" ]] && forget_session "$broker" "bench-sim-$RUN-$SCEN-$prefix-1-cmd"
  fi
  return 0
}

if (( QUICK )); then
  PUBS=5; CLIENTS=10; DUR=2; IDLE_CLIENTS=20; RAMP_STEPS=2; INGEST_RATE=500; VEH_RATE=50
  RATE=20; SLOW_RATIO=0.1; IDLE_DUR=2; SLOW_DUR=2
else
  PUBS=10; CLIENTS=1000; DUR=20; IDLE_CLIENTS=10000; RAMP_STEPS=12; INGEST_RATE=40000; VEH_RATE=1000
  RATE=100; SLOW_RATIO=0.01; IDLE_DUR=30
  # A stalled client is dropped only once the gateway's kernel send buffer (autotuned to ~2 MB
  # on loopback) and its queue are full: about a minute at 100 frames/s.
  SLOW_DUR=60
fi
INGEST_PUBS=$(( QUICK ? 5 : 100 ))
CMD_BOATS=$(( QUICK ? 5 : 100 ))
CMD_DUR=$(( QUICK ? 2 : 25 ))
VEH_PUBS=$(( QUICK ? 5 : 100 ))
INGEST_DUR=$(( QUICK ? 2 : 10 ))
RAMP_DUR=$(( QUICK ? 1 : 5 ))

scenario ingest-sqlite "ingest: ${INGEST_PUBS} vehicles QoS 1, SQLite (tuned Mosquitto)" sqlite private \
  --clients 0 --publishers "$INGEST_PUBS" --qos 1 --rate "$INGEST_RATE" --duration "$INGEST_DUR" --drain 5
scenario ingest-pg "ingest: ${INGEST_PUBS} vehicles QoS 1, PostgreSQL (tuned Mosquitto)" pg private \
  --clients 0 --publishers "$INGEST_PUBS" --qos 1 --rate "$INGEST_RATE" --duration "$INGEST_DUR" --drain 5
scenario ingest-sqlite-stock "ingest: ${INGEST_PUBS} vehicles QoS 1, SQLite (stock Mosquitto)" sqlite "$MQTT_URL" \
  --clients 0 --publishers "$INGEST_PUBS" --qos 1 --rate "$INGEST_RATE" --duration "$INGEST_DUR" --drain 5
scenario fanout "fan-out: ${CLIENTS} clients on /api/ws, ${RATE} msg/s" sqlite "$MQTT_URL" \
  --clients "$CLIENTS" --publishers "$PUBS" --rate "$RATE" --duration "$DUR"
scenario ramp "fan-out ramp: ${CLIENTS} clients on /api/ws" sqlite "$MQTT_URL" \
  --clients "$CLIENTS" --publishers "$PUBS" --rate "$RATE" --duration "$RAMP_DUR" \
  --ramp --ramp-p99-ms 100 --ramp-max-steps "$RAMP_STEPS"
scenario vehicle "vehicle streams: ${CLIENTS} clients over ${VEH_PUBS} streams, ${VEH_RATE} msg/s" sqlite "$MQTT_URL" \
  --clients "$CLIENTS" --mode vehicle --publishers "$VEH_PUBS" --rate "$VEH_RATE" --duration "$DUR"
scenario idle "idle: ${IDLE_CLIENTS} clients, heartbeats on" sqlite "$MQTT_URL" \
  --idle --clients "$IDLE_CLIENTS" --duration "$IDLE_DUR" --warmup 2
scenario slow "slow consumers: fan-out with ${SLOW_RATIO} of clients not reading" sqlite "$MQTT_URL" \
  --clients "$CLIENTS" --publishers "$PUBS" --rate "$RATE" --duration "$SLOW_DUR" --slow-ratio "$SLOW_RATIO"
scenario cluster-ingest-one "ingest: ${INGEST_PUBS} vehicles QoS 1, one instance, PostgreSQL (tuned Mosquitto)" pg private \
  --clients 0 --publishers "$INGEST_PUBS" --qos 1 --rate "$INGEST_RATE" --duration "$INGEST_DUR" --drain 5
scenario cluster-ingest-two "ingest: ${INGEST_PUBS} vehicles QoS 1, two instances sharing it, PostgreSQL (tuned Mosquitto)" pg-pair private \
  --clients 0 --publishers "$INGEST_PUBS" --qos 1 --rate "$INGEST_RATE" --duration "$INGEST_DUR" --drain 5
scenario cluster-one "one instance: ${CLIENTS} clients on /api/ws, ${RATE} msg/s, PostgreSQL" pg "$MQTT_URL" \
  --clients "$CLIENTS" --publishers "$PUBS" --rate "$RATE" --duration "$DUR"
scenario cluster-two "two instances, one shared group: ${CLIENTS} clients split, ${RATE} msg/s, PostgreSQL" pg-pair "$MQTT_URL" \
  --clients "$CLIENTS" --publishers "$PUBS" --rate "$RATE" --duration "$DUR"
# One command per boat per second, spread over 10 clients (10/s each): within the gateway's
# default COMMAND_RATE (2/s per boat) and WS_CLIENT_RATE (20/s per client). The boats publish one
# vehicle_log per second and no sensor_log, so the gateway's CPU is mostly the commands'.
SIM_BOATS=$CMD_BOATS SIM_ARGS="--rate 1 --sensor-rate 0" \
scenario commands-100 "commands: ${CMD_BOATS} simulated boats, ${CMD_BOATS} commands/s" sqlite "$MQTT_URL" \
  --mode commands --vehicles "$CMD_BOATS" --clients "$(( CMD_BOATS < 10 ? CMD_BOATS : 10 ))" \
  --command-rate "$CMD_BOATS" --duration "$CMD_DUR"
# The same on the tuned Mosquitto, whose set_tcp_nodelay sends each command and answer at once:
# the stock broker's Nagle holds a command behind the boat's delayed TCP acknowledgement.
SIM_BOATS=$CMD_BOATS SIM_ARGS="--rate 1 --sensor-rate 0" \
scenario commands-100-tuned "commands: ${CMD_BOATS} simulated boats, ${CMD_BOATS} commands/s (tuned Mosquitto)" sqlite private \
  --mode commands --vehicles "$CMD_BOATS" --clients "$(( CMD_BOATS < 10 ? CMD_BOATS : 10 ))" \
  --command-rate "$CMD_BOATS" --duration "$CMD_DUR"
scenario baseline "MQTT baseline: ${CLIENTS} MQTT subscribers, ${RATE} msg/s (no gateway)" none "$MQTT_URL" \
  --mqtt-subscribers "$CLIENTS" --publishers "$PUBS" --rate "$RATE" --duration "$DUR"

cleanup
shopt -s nullglob
results=("$OUT"/[0-9]*.json)
{
  echo
  echo "SEANO gateway benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -h | awk '/^Mem:/ {print $2}') RAM; release build; load generator on the same machine"
  echo "command: tools/bench/run.sh${1:+ $1}; results in $OUT"
  echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
}
if (( ${#results[@]} == 0 )); then
  echo "no scenario produced a result" >&2
  exit 1
fi
"$BENCH" --render "${results[@]}"
