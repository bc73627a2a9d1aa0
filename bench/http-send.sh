#!/usr/bin/env bash
# Quick measurement of message sends per second over HTTP (each one a committed, fsynced
# insert before its 201), until `palaver bench` exists.
#
#   bench/http-send.sh [conversations] [connections] [seconds]
#
# Uses target/release/palaver (build it first) on a fresh temporary database: SQLite by default,
# PostgreSQL when DATABASE_URL is set (a scratch database; it gets three users and the chats).
# Needs curl, jq and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERSATIONS=${1:-50}
CONNECTIONS=${2:-32}
SECONDS_=${3:-10}
PORT=${PORT:-3917}
DATA=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT

PALAVER_LISTEN=127.0.0.1:$PORT PALAVER_DATA_DIR=$DATA PALAVER_RATE_LIMITS=off PALAVER_LOG=warn \
  target/release/palaver > "$DATA/server.log" 2>&1 &
SERVER=$!
API=http://127.0.0.1:$PORT/api/v1
until curl -sf http://127.0.0.1:$PORT/readyz > /dev/null; do sleep 0.05; done

signup() {
  curl -s -X POST $API/auth/signup -H 'content-type: application/json' \
    -d "{\"email\":\"$1@bench.example\",\"password\":\"bench password\",\"displayName\":\"$1\"}"
}
A=$(signup a$$); B=$(signup b$$); C=$(signup c$$)
TOKEN=$(echo "$A" | jq -r .accessToken)
B_ID=$(echo "$B" | jq -r .user.id); C_ID=$(echo "$C" | jq -r .user.id)
IDS=()
for i in $(seq 1 "$CONVERSATIONS"); do
  IDS+=("$(curl -s -X POST $API/conversations/groups -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"title\":\"bench $i\",\"memberIds\":[\"$B_ID\",\"$C_ID\"]}" | jq -r .id)")
done
echo "database: $([ -n "${DATABASE_URL:-}" ] && echo postgres || echo sqlite), $CONVERSATIONS conversations, $CONNECTIONS connections, ${SECONDS_}s"
export TOKEN CONVERSATIONS=$(IFS=,; echo "${IDS[*]}")
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_}s" --latency -s bench/send.lua "http://127.0.0.1:$PORT" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx|requests in"
echo "server RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$SERVER/status)"
