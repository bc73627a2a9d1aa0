#!/usr/bin/env bash
# P8: start-up to ready with an existing large SQLite database.
#
#   cargo build --release
#   bench/startup.sh [messages=3500000]   # ≈ 1 GB of data; needs the sqlite3 command
#
# Makes a data directory with two users and one conversation through the real server, fills
# that conversation with `messages` messages straight into SQLite (search index included),
# then starts the server RUNS times (default 5) and reports the time from exec to a 200 from
# /readyz.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/palaver
MESSAGES=${1:-3500000}
RUNS=${RUNS:-5}
PORT=${PORT:-3901}
DATA=${DATA:-$(mktemp -d)}
command -v sqlite3 > /dev/null || { echo "needs the sqlite3 command" >&2; exit 1; }

wait_ready() {
  for _ in $(seq 1 3000); do
    curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && return 0
    sleep 0.01
  done
  return 1
}

if [ ! -f "$DATA/palaver.db" ]; then
  PALAVER_DATA_DIR="$DATA" PALAVER_LISTEN="127.0.0.1:$PORT" PALAVER_RATE_LIMITS=off PALAVER_LOG=error "$BIN" &
  pid=$!
  wait_ready
  "$BIN" bench --url "http://127.0.0.1:$PORT" chat --users 2 --duration 1 > /dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "filling one conversation with $MESSAGES messages…" >&2
  sqlite3 "$DATA/palaver.db" <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
CREATE TEMP TABLE c AS SELECT conversation_id AS id, sender_id AS sender, MAX(seq) AS top
  FROM messages WHERE sender_type = 'user' GROUP BY conversation_id, sender_id LIMIT 1;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $MESSAGES)
INSERT INTO messages (id, conversation_id, seq, sender_type, sender_id, client_msg_id, type, text, created_at)
SELECT printf('fill-%012d', i), c.id, c.top + i, 'user', c.sender, printf('fill-%d', i), 'text',
       printf('message number %d of the start-up benchmark, with some words to index for search', i),
       CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM n, c;
UPDATE conversations SET last_seq = (SELECT MAX(seq) FROM messages WHERE conversation_id = conversations.id);
PRAGMA wal_checkpoint(TRUNCATE);
SQL
fi
echo "database: $(du -sh "$DATA" | cut -f1) in $DATA" >&2

for n in $(seq 1 "$RUNS"); do
  start=$(date +%s%N)
  PALAVER_DATA_DIR="$DATA" PALAVER_LISTEN="127.0.0.1:$PORT" PALAVER_LOG=error "$BIN" &
  pid=$!
  wait_ready
  end=$(date +%s%N)
  echo "run $n: ready after $(( (end - start) / 1000000 )) ms"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
