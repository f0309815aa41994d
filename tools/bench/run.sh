#!/usr/bin/env bash
# Runs the standard benchmark scenarios of the SEANO gateway (issue 6) in sequence and prints
# one Markdown table. Unlike the `bench` binary, this script starts things: it builds the
# release binaries, starts a fresh gateway for every scenario (a new SQLite file or a fresh
# PostgreSQL database, a topic prefix and MQTT client id of its own) and stops it afterwards.
#
#   tools/bench/run.sh            the full scenarios (about 25 minutes: the purge and history
#                                 scenarios take about 15, most of it seeding)
#   tools/bench/run.sh --quick    every scenario at a tiny scale, a few seconds each (CI smoke)
#
# Environment:
#   BENCH_MQTT_URL  the machine's broker for the fan-out scenarios (default mqtt://127.0.0.1:1883)
#   BENCH_PG_URL    PostgreSQL for the ingest scenario (default postgres://postgres@127.0.0.1:5432/seano_bench;
#                   the database is dropped and created again with psql)
#   BENCH_GATEWAY_BIN  a gateway binary to measure instead of the one built here (before/after
#                   comparisons: build the older commit in a worktree and point this at it)
#   BENCH_GATEWAY_ENV  settings given to every gateway started, as VAR=VALUE words (tuning runs:
#                   BENCH_GATEWAY_ENV='WS_REPLAY_RATE=0 BATCH_WINDOW_MS=5')
#   BENCH_OUT       where the JSON results and gateway logs go (default: a new /tmp/seano-bench.* dir)
#   BENCH_ONLY      run only the scenarios whose key matches this regex (keys: ingest-sqlite-stock,
#                   ingest-sqlite, ingest-pg, fanout, ramp, vehicle, vehicle-many, idle, slow,
#                   cluster-ingest-one, cluster-ingest-two, cluster-one, cluster-two, baseline,
#                   commands-100, commands-100-tuned, purge-sqlite, purge-pg, history,
#                   mixed, storm)
#   BENCH_PURGE_ROWS      old rows seeded for the purge scenarios (default 2,000,000 on SQLite,
#                         20,000,000 on PostgreSQL)
#   BENCH_PURGE_RATE      their ingest rate, msg/s (default 10,000 on SQLite, 20,000 on PostgreSQL)
#   BENCH_PURGE_DURATION  seconds of ingest in each of their runs (default 30)
#
# purge-sqlite and purge-pg measure what retention's purge costs ingest: the database is seeded
# with old vehicle_logs (received 2 to 3 days ago) by one SQL statement (sqlite3, psql), then
# the same ingest load runs twice on identical copies of it, with RETENTION_VEHICLE_LOG=0 and
# with 1d (every seeded row due), both with PURGE_INTERVAL=1s; a table of their own compares
# the two. history seeds a day of one boat at 10 Hz (864,000 vehicle_logs) over MQTT and times
# raw and bucketed history requests over it (`bench --mode history`), in a table of its own.
#
# mixed is ingest-sqlite's load with 1,000 clients reading /api/ws meanwhile (`bench --readers`),
# to set beside ingest-sqlite's stored/s. storm seeds 50,000 vehicle_logs through the tuned
# Mosquitto, then runs 10 live clients at 100 msg/s twice: alone, and while 100 clients connect
# at once with since= 50,000 back (`bench --mode storm`); its rows give the live p99 of each and
# how long the storm clients took to catch up.
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
  -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
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
GW_BIN=${BENCH_GATEWAY_BIN:-"$ROOT/target/release/seano-gateway"}
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
  local logf="$OUT/gateway-$SCEN${GW_TAG:-}.log" extra=()
  read -ra extra <<<"${BENCH_GATEWAY_ENV:-}"
  (cd "$OUT" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" \
      HTTP_ADDR=127.0.0.1:0 DATABASE_URL="$db" MQTT_URL="$mqtt" \
      MQTT_TOPIC_PREFIX="$prefix" MQTT_CLIENT_ID="bench-gw-$RUN-$SCEN" \
      RUST_LOG="warn,seano_gateway::startup=info" "${extra[@]}" "$@" "$GW_BIN") >"$logf" 2>&1 &
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

# pg_db SUFFIX: $PG_URL's database name with SUFFIX appended (its own query string kept), as
# a name (PG_NAME) and a URL (PG_DB_URL).
pg_db() {
  local last=${PG_URL##*/} query=""
  [[ "$last" == *\?* ]] && query="?${last#*\?}"
  PG_NAME="${last%%\?*}$1"
  PG_DB_URL="${PG_URL%/*}/$PG_NAME$query"
}

# pg_admin SQL: runs SQL on the server's `postgres` database.
pg_admin() { psql "${PG_URL%/*}/postgres" -X -qAtc "$1"; }

# pg_copy TEMPLATE: $PG_URL's database made again as a copy of the database TEMPLATE (file by
# file on PostgreSQL 15 and later, much faster than through the WAL for a large table).
pg_copy() {
  local strategy="" version
  pg_db ""
  version=$(pg_admin 'SHOW server_version_num' 2>/dev/null) || return 1
  (( ${version:-0} >= 150000 )) && strategy=" STRATEGY = FILE_COPY"
  pg_admin "DROP DATABASE IF EXISTS \"$PG_NAME\"" >/dev/null 2>&1 &&
    pg_admin "CREATE DATABASE \"$PG_NAME\" TEMPLATE \"$1\"$strategy" >/dev/null
}

# seed_sqlite FILE ROWS: ROWS vehicle_logs of vehicle 1, received (and timestamped) evenly from
# 3 days to 2 days ago, in one INSERT ... SELECT of a recursive CTE, into a SQLite database the
# gateway has created (and is not running on). Their seqs follow seq_cursor's value, which
# moves past them (and so does rollup_cursor: they are old data, not rolled up); times are
# written as the gateway writes them (RFC 3339, +00:00), which SQLite compares as text.
seed_sqlite() {
  local file=$1 rows=$2 from
  from=$(( $(date +%s) - 3 * 86400 ))
  sqlite3 -bail "$file" >/dev/null <<SQL
PRAGMA synchronous = OFF;
BEGIN IMMEDIATE;
INSERT OR IGNORE INTO vehicles (id, first_seen_at, last_seen_at)
  VALUES (1, strftime('%Y-%m-%dT%H:%M:%f', $from, 'unixepoch') || '+00:00',
             strftime('%Y-%m-%dT%H:%M:%f', $from + 86400, 'unixepoch') || '+00:00');
WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < $rows),
  cursor(base) AS (SELECT value FROM seq_cursor WHERE id = 1),
  t(k, at) AS (SELECT k, strftime('%Y-%m-%dT%H:%M:%f', $from + k * (86400.0 / $rows), 'unixepoch')
                         || '+00:00' FROM n)
INSERT INTO vehicle_logs (seq, vehicle_id, battery_voltage, latitude, longitude, heading, speed,
                          mode, armed, extra, timestamp, received_at, dedup_key)
  SELECT base + 1 + k, 1, 16.8 - (k % 1000) * 0.001, -6.2088 + (k % 10000) * 1e-6, 106.8456,
         (k * 3) % 360, 2.0 + (k % 50) * 0.1, 'AUTO', 1, '{}', at, at, k + 1
  FROM t, cursor;
UPDATE seq_cursor SET value = value + $rows WHERE id = 1;
UPDATE rollup_cursor SET through_seq = (SELECT value FROM seq_cursor WHERE id = 1) WHERE id = 1;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

# seed_pg URL ROWS: the same rows into a PostgreSQL database, one INSERT ... SELECT of
# generate_series in one transaction (the foreign key to vehicles is not checked row by row
# when the role may set session_replication_role), then VACUUM ANALYZE, so neither run pays
# for setting the new rows' hint bits.
seed_pg() {
  local url=$1 rows=$2
  psql "$url" -X -q -v ON_ERROR_STOP=1 -v rows="$rows" -1 -f - <<'SQL'
DO $$ BEGIN
  SET LOCAL session_replication_role = replica;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'not allowed to skip the foreign key trigger: seeding checks it row by row';
END $$;
INSERT INTO vehicles (id, first_seen_at, last_seen_at)
  VALUES (1, now() - interval '3 days', now() - interval '2 days') ON CONFLICT (id) DO NOTHING;
INSERT INTO vehicle_logs (seq, vehicle_id, battery_voltage, latitude, longitude, heading, speed,
                          mode, armed, extra, "timestamp", received_at, dedup_key)
  SELECT c.value + k, 1, 16.8 - (k % 1000) * 0.001, -6.2088 + (k % 10000) * 1e-6, 106.8456,
         (k * 3) % 360, 2.0 + (k % 50) * 0.1, 'AUTO', true, '{}'::jsonb, t.at, t.at, k
  FROM (SELECT value FROM seq_cursor WHERE id = 1) c,
       generate_series(1, :rows) k,
       LATERAL (SELECT now() - interval '3 days' + (k - 1) * (interval '1 day' / :rows) AS at) t;
UPDATE seq_cursor SET value = value + :rows WHERE id = 1;
UPDATE rollup_cursor SET through_seq = (SELECT value FROM seq_cursor WHERE id = 1) WHERE id = 1;
SQL
  psql "$url" -X -q -v ON_ERROR_STOP=1 -c 'VACUUM ANALYZE vehicle_logs'
}

# purge_scenario KEY NAME DB(sqlite|pg) ROWS RATE DURATION: what retention's purge costs ingest.
# The gateway starts once on a new database to create its tables and stops; ROWS old
# vehicle_logs are seeded into it (seed_sqlite, seed_pg). Then two runs, each on a fresh copy of
# that database with a fresh private Mosquitto and gateway, publish the same ingest load (RATE
# msg/s from INGEST_PUBS vehicles at QoS 1 for DURATION s): retention off
# (RETENTION_VEHICLE_LOG=0), then on (1d: every seeded row is due at once), both with
# PURGE_INTERVAL=1s. The bench records the rows purged, when, and the commit times.
purge_scenario() {
  local key=$1 name=$2 db=$3 rows=$4 rate=$5 dur=$6
  [[ "$key" =~ $ONLY ]] || return 0
  case "$db" in
    sqlite) command -v sqlite3 >/dev/null ||
      { log "skipped $key: no sqlite3 to seed the database with (apt-get install sqlite3)"; return 0; } ;;
    pg) command -v psql >/dev/null || { log "skipped $key: no psql"; return 0; } ;;
  esac
  SCEN=$((SCEN + 1))
  local seed_url seed_name="" started
  log "scenario $SCEN: $name: seeding $rows vehicle_logs received 2 to 3 days ago"
  start_private_broker
  case "$db" in
    sqlite)
      seed_url="$OUT/scenario-$SCEN-seed.db"
      GW_TAG=-seed start_gateway "sqlite://$seed_url?mode=rwc" "$PRIVATE_URL" "bench${RUN}s${SCEN}seed" ;;
    pg)
      pg_db _seed
      seed_name=$PG_NAME seed_url=$PG_DB_URL
      if ! { pg_admin "DROP DATABASE IF EXISTS \"$seed_name\"" && pg_admin "CREATE DATABASE \"$seed_name\""; } >/dev/null 2>&1; then
        log "skipped: cannot create the PostgreSQL database $seed_name beside $PG_URL"
        stop_private_broker
        return 0
      fi
      GW_TAG=-seed start_gateway "$seed_url" "$PRIVATE_URL" "bench${RUN}s${SCEN}seed" ;;
  esac
  stop_gateway
  stop_private_broker
  started=$SECONDS
  local seeded=1
  case "$db" in
    sqlite) seed_sqlite "$seed_url" "$rows" || seeded=0 ;;
    pg) seed_pg "$seed_url" "$rows" || seeded=0 ;;
  esac
  if (( ! seeded )); then
    log "scenario $SCEN failed: seeding $rows rows did not work"
    [[ -n "$seed_name" ]] && pg_admin "DROP DATABASE IF EXISTS \"$seed_name\"" >/dev/null 2>&1
    return 0
  fi
  log "seeded $rows rows in $(( SECONDS - started )) s"
  local run retention flags prefix out dburl
  for run in off on; do
    if [[ "$run" == on ]]; then
      SCEN=$((SCEN + 1)) retention=1d flags=(--purging)
    else
      retention=0 flags=()
    fi
    case "$db" in
      sqlite)
        rm -f "$OUT/scenario-$SCEN.db" "$OUT/scenario-$SCEN.db-wal" "$OUT/scenario-$SCEN.db-shm"
        cp "$seed_url" "$OUT/scenario-$SCEN.db"
        dburl="sqlite://$OUT/scenario-$SCEN.db?mode=rwc" ;;
      pg)
        if ! pg_copy "$seed_name"; then
          log "scenario $SCEN failed: cannot copy $seed_name to $PG_URL"
          continue
        fi
        dburl=$PG_URL ;;
    esac
    start_private_broker
    prefix="bench${RUN}s${SCEN}"
    start_gateway "$dburl" "$PRIVATE_URL" "$prefix" PURGE_INTERVAL=1s RETENTION_VEHICLE_LOG=$retention
    out="$OUT/$(printf '%02d' "$SCEN")-$key-$run.json"
    log "scenario $SCEN: $name, retention $run (RETENTION_VEHICLE_LOG=$retention PURGE_INTERVAL=1s)"
    if ! "$BENCH" --json --name "$name, retention $run" --broker "$PRIVATE_URL" --prefix "$prefix" \
        --gateway "$GW_HTTP" --gateway-pid "$GW_PID" --clients 0 --publishers "$INGEST_PUBS" --qos 1 \
        --rate "$rate" --duration "$dur" --drain 5 \
        --purge-pair "$name" --seeded-rows "$rows" "${flags[@]}" >"$out"; then
      log "scenario $SCEN failed; gateway log: $OUT/gateway-$SCEN.log"
      rm -f "$out"
    fi
    stop_gateway
    stop_private_broker
  done
  # The seeded database is large (about 200 MB per million rows): only the runs' copies stay,
  # and on PostgreSQL not even the last one.
  case "$db" in
    sqlite) rm -f "$seed_url" "$seed_url-wal" "$seed_url-shm" ;;
    pg)
      pg_db ""
      pg_admin "DROP DATABASE IF EXISTS \"$seed_name\"" >/dev/null 2>&1 || true
      pg_admin "DROP DATABASE IF EXISTS \"$PG_NAME\"" >/dev/null 2>&1 || true ;;
  esac
  return 0
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
# Many vehicle streams: every client on a stream of its own vehicle's.
MANY_CLIENTS=$(( QUICK ? 20 : 10000 ))
MANY_VEHICLES=$(( QUICK ? 5 : 1000 ))
INGEST_DUR=$(( QUICK ? 2 : 10 ))
RAMP_DUR=$(( QUICK ? 1 : 5 ))
STORM_CLIENTS=$(( QUICK ? 5 : 100 ))
STORM_BACK=$(( QUICK ? 2000 : 50000 ))
STORM_LIVE=$(( QUICK ? 3 : 10 ))
STORM_DUR=$(( QUICK ? 2 : 30 ))
PURGE_DUR=${BENCH_PURGE_DURATION:-$(( QUICK ? 3 : 30 ))}
if (( QUICK )); then
  PURGE_ROWS_SQLITE=${BENCH_PURGE_ROWS:-20000} PURGE_ROWS_PG=${BENCH_PURGE_ROWS:-20000}
  PURGE_RATE_SQLITE=${BENCH_PURGE_RATE:-$INGEST_RATE} PURGE_RATE_PG=${BENCH_PURGE_RATE:-$INGEST_RATE}
  HISTORY_ROWS=12000 HISTORY_REPEATS=5
else
  PURGE_ROWS_SQLITE=${BENCH_PURGE_ROWS:-2000000} PURGE_ROWS_PG=${BENCH_PURGE_ROWS:-20000000}
  PURGE_RATE_SQLITE=${BENCH_PURGE_RATE:-10000} PURGE_RATE_PG=${BENCH_PURGE_RATE:-20000}
  HISTORY_ROWS=864000 HISTORY_REPEATS=20
fi

scenario ingest-sqlite "ingest: ${INGEST_PUBS} vehicles QoS 1, SQLite (tuned Mosquitto)" sqlite private \
  --clients 0 --publishers "$INGEST_PUBS" --qos 1 --rate "$INGEST_RATE" --duration "$INGEST_DUR" --drain 5
scenario mixed "ingest with ${CLIENTS} clients reading /api/ws: ${INGEST_PUBS} vehicles QoS 1, SQLite (tuned Mosquitto)" sqlite private \
  --clients 0 --readers "$CLIENTS" --publishers "$INGEST_PUBS" --qos 1 --rate "$INGEST_RATE" --duration "$INGEST_DUR" --drain 5
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
scenario vehicle-many "vehicle streams: ${MANY_CLIENTS} clients over ${MANY_VEHICLES} streams, ${VEH_RATE} msg/s" sqlite "$MQTT_URL" \
  --clients "$MANY_CLIENTS" --mode vehicle --publishers "$MANY_VEHICLES" --rate "$VEH_RATE" --duration "$DUR" --warmup 5
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
purge_scenario purge-sqlite "purge under load: SQLite, $PURGE_ROWS_SQLITE old rows, $PURGE_RATE_SQLITE msg/s" \
  sqlite "$PURGE_ROWS_SQLITE" "$PURGE_RATE_SQLITE" "$PURGE_DUR"
purge_scenario purge-pg "purge under load: PostgreSQL, $PURGE_ROWS_PG old rows, $PURGE_RATE_PG msg/s" \
  pg "$PURGE_ROWS_PG" "$PURGE_RATE_PG" "$PURGE_DUR"
# One boat's day (10 Hz, timestamps 100 ms apart, ending at the current minute) published at full
# speed, QoS 1, through the tuned Mosquitto, whose queue (1,000,000) holds what the gateway has
# not stored yet; then each history request 20 times.
scenario history "history: a day of one boat at 10 Hz (${HISTORY_ROWS} vehicle_logs), SQLite (tuned Mosquitto)" sqlite private \
  --mode history --history-rows "$HISTORY_ROWS" --history-rate-hz 10 --history-repeats "$HISTORY_REPEATS"

# The storm's seed goes through the tuned Mosquitto, whose queue holds what is not stored yet.
scenario storm "reconnect storm: ${STORM_CLIENTS} clients with since= ${STORM_BACK} back, ${STORM_LIVE} live clients at ${RATE} msg/s" sqlite private \
  --mode storm --storm-clients "$STORM_CLIENTS" --storm-back "$STORM_BACK" \
  --clients "$STORM_LIVE" --publishers "$STORM_LIVE" --rate "$RATE" --duration "$STORM_DUR"

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
