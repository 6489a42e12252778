#!/usr/bin/env bash
# CI smoke test of the load generator: build, start a real Hearth on a free
# port with a fresh data folder, and run one small fan-out (200 subscribers,
# 50 messages at 100/s). Fails unless every subscriber got every message
# exactly once. Takes a few seconds once built.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p hearth -p hearth-bench
data=$(mktemp -d)
log=$data/hearth.log
# The per-user message limit would refuse 50 messages a second from one user.
target/debug/hearth --bind 127.0.0.1:0 --data-dir "$data" --message-rate 0 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT

addr=""
for _ in $(seq 1 300); do
  addr=$(grep -o 'listening addr=[0-9.]*:[0-9]*' "$log" | head -1 | cut -d= -f2 || true)
  [ -n "$addr" ] && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "hearth did not start" >&2; cat "$log" >&2; exit 1; }

timeout 60 target/debug/hearth-bench fanout \
  --server "http://$addr" --pid $server --users 5 \
  --clients 200 --messages 50 --rate 100 --drain 5 --timeout 30 \
  --label hearth --case smoke --expect-complete
echo "smoke: 200 subscribers × 50 messages, 0 lost, 0 duplicated"
