#!/usr/bin/env bash
# Runs one `palaver bench` scenario RUNS times (default 3) against the Node.js peer
# (bench/node-peer: Express + Socket.IO v4 + PostgreSQL), each on a fresh schema, with the same
# load generator and the same report as bench/run.sh — so the two can be compared side by side.
#
#   cargo build --release
#   bench/node-peer.sh chat --users 1000 --window 8 --duration 10
#
# Needs Node.js (npm ci in bench/node-peer is run if needed) and PostgreSQL (PG_URL, default
# postgres://postgres@127.0.0.1:5432; the database palaver_node_peer is made if missing).
# Reports go to bench/results/node-<scenario>-<n>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/palaver}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
RUNS=${RUNS:-3}
PORT=${PORT:-3900}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
SCENARIO=$1
mkdir -p bench/results
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -d bench/node-peer/node_modules ] || (cd bench/node-peer && npm ci --no-audit --no-fund)
(cd bench/node-peer && PG_URL="$PG_URL" node -e '
  const { Client } = require("pg");
  const c = new Client({ connectionString: process.env.PG_URL + "/postgres" });
  c.connect()
    .then(() => c.query("CREATE DATABASE palaver_node_peer").catch((e) => { if (e.code !== "42P04") throw e; }))
    .then(() => c.end());
')

for n in $(seq 1 "$RUNS"); do
  log=$(mktemp)
  PORT=$PORT DATABASE_URL="$PG_URL/palaver_node_peer" node bench/node-peer/server.js > "$log" 2>&1 &
  pid=$!
  trap 'kill -9 "$pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break
    sleep 0.1
  done
  "$BIN" bench --url "http://127.0.0.1:$PORT" --pid "$pid" --json "$@" > "bench/results/node-$SCENARIO-$n.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$log"
  echo "run $n of $RUNS done" >&2
done

python3 bench/summary.py "node-$SCENARIO" "$RUNS"
