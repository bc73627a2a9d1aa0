#!/usr/bin/env bash
# P7: two release nodes in cluster mode on one PostgreSQL database and one Redis; the chat
# scenario's senders on node A, its receivers on node B, so every delivery crosses nodes.
# RUNS times (default 3), each on a fresh database and Redis prefix.
#
#   cargo build --release
#   bench/cluster.sh --users 1000 --rate 5000 --duration 10
#
# Needs PostgreSQL (PG_URL, default postgres://postgres@127.0.0.1:5432/postgres, used to
# create and drop the databases) and Redis (REDIS_URL, default redis://127.0.0.1:6379).
# Reports go to bench/results/cluster-<n>.json; the server figures are node A's.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/palaver
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
RUNS=${RUNS:-3}
PORT=${PORT:-3900}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
mkdir -p bench/results
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for n in $(seq 1 "$RUNS"); do
  data=$(mktemp -d)
  db="palaver_p7_$$_$n"
  psql "$PG_URL" -qc "CREATE DATABASE $db"
  "$BIN" keys generate "$data/keys" > /dev/null
  pids=()
  for node in 0 1; do
    mkdir -p "$data/$node"
    DATABASE_URL="${PG_URL%/*}/$db" REDIS_URL="$REDIS_URL" PALAVER_REDIS_PREFIX="p7-$$-$n:" \
      PALAVER_JWT_PRIVATE_KEY_FILE="$data/keys/jwt-ed25519.pem" PALAVER_SECRET_KEY_FILE="$data/keys/secret.key" \
      PALAVER_DATA_DIR="$data/$node" PALAVER_LISTEN="127.0.0.1:$((PORT + node))" PALAVER_RATE_LIMITS=off \
      PALAVER_LOG=${PALAVER_LOG:-warn} "$BIN" > "$data/server-$node.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$((PORT + node))/readyz" > /dev/null && break
      sleep 0.1
    done
  done
  "$BIN" bench --url "http://127.0.0.1:$PORT" --pid "${pids[0]}" --json \
    chat --receivers-url "http://127.0.0.1:$((PORT + 1))" "$@" > "bench/results/cluster-$n.json"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  psql "$PG_URL" -qc "DROP DATABASE $db WITH (FORCE)"
  redis-cli -u "$REDIS_URL" --scan --pattern "p7-$$-$n:*" | xargs -r redis-cli -u "$REDIS_URL" del > /dev/null
  rm -rf "$data"
  echo "run $n of $RUNS done" >&2
done

python3 bench/summary.py cluster "$RUNS"
