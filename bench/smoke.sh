#!/usr/bin/env bash
# CI smoke test of the load generator: build, start a real Hearth on a free
# port with a fresh data folder, and run one small fan-out (200 subscribers,
# 50 messages at 100/s). Fails unless every subscriber got every message
# exactly once. Takes a few seconds once built.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

build_hearth_and_bench -q
data=$(mktemp -d)
log=$data/hearth.log
trap 'stop_servers; rm -rf "$data"' EXIT
start_server "$log" target/debug/hearth --bind 127.0.0.1:0 --data-dir "$data" "${hearth_without_limits[@]}"
server=$server_pid
addr=$(wait_until_listening "$server" "$log")

timeout 60 target/debug/hearth-bench fanout \
  --server "http://$addr" --pid "$server" --users 5 \
  --clients 200 --messages 50 --rate 100 --drain 5 --timeout 30 \
  --label hearth --case smoke --expect-complete
echo "smoke: 200 subscribers × 50 messages, 0 lost, 0 duplicated"
