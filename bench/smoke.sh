#!/usr/bin/env bash
# CI smoke test of the load generator: build, start a real Hearth on a free
# port with a fresh data folder, and run one small fan-out (200 subscribers,
# 50 messages at 100/s) and one small presence run (50 users joining at
# 100/s, each asking for the frame). Fails unless every subscriber got every
# message exactly once, every joiner's last presence frame counted all 50
# and every probe message came back. Takes a few seconds once built.
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

timeout 60 target/debug/hearth-bench presence \
  --server "http://$addr" --pid "$server" --users 50 \
  --joiners 50 --join-rate 100 --ask --settle 2 --timeout 30 \
  --label hearth --case smoke-presence --expect-complete
echo "smoke: 50 joiners with presence, each heard all 50; the probe lost nothing"
