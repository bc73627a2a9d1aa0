#!/usr/bin/env bash
# Runs one `palaver bench` scenario RUNS times (default 3), each against a fresh release server
# on an empty SQLite database (with DATABASE_URL set, on that PostgreSQL database instead),
# and prints every report and the median and spread of the headline figures.
#
#   cargo build --release
#   bench/run.sh chat --users 1000 --window 8 --duration 10
#   RUNS=5 bench/run.sh catchup --messages 10000
#
# BIN=path runs another build (to compare two commits in one session); BENCH_BIN=path runs the
# load generator of another build than the server's (default: the server's own), so that two
# servers are measured by one generator.
# Reports go to bench/results/<scenario>-<n>.json. The server listens on 127.0.0.1:3900 with
# rate limits off; PALAVER_* variables in the environment reach it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/palaver}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
BENCH_BIN=${BENCH_BIN:-$BIN}
RUNS=${RUNS:-3}
PORT=${PORT:-3900}
SCENARIO=$1
mkdir -p bench/results
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for n in $(seq 1 "$RUNS"); do
  data=$(mktemp -d)
  PALAVER_DATA_DIR="$data" PALAVER_LISTEN="127.0.0.1:$PORT" PALAVER_RATE_LIMITS=off PALAVER_WORKSPACES=open \
    PALAVER_LOG=${PALAVER_LOG:-warn} "$BIN" > "$data/server.log" 2>&1 &
  pid=$!
  # A failed run must not leave its server holding the port for the next one.
  trap 'kill -9 "$pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break
    sleep 0.1
  done
  # (The data dir too: the analytics scenario writes its inbox straight into the database.)
  PALAVER_DATA_DIR="$data" "$BENCH_BIN" bench --url "http://127.0.0.1:$PORT" --pid "$pid" --json "$@" \
    > "bench/results/$SCENARIO-$n.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
  echo "run $n of $RUNS done" >&2
done

python3 bench/summary.py "$SCENARIO" "$RUNS"
