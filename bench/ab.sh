#!/usr/bin/env bash
# Two Hearth builds side by side, in alternating rounds, each phase on a
# fresh server: idle memory per connection (RSS and the live heap from
# `hearth_heap_bytes`) and fan-out at 1k and 10k subscribers. For "what did
# this change cost": build the other commit into its own folder and compare.
#
#   A_BIN=/tmp/before/hearth B_BIN=target/release/hearth bench/ab.sh
#   B_FLAGS="--presence --format html --also {\"channel\":\"RoomsChannel\"}"   # B's clients as the room page subscribes
#   A_SERVER_FLAGS="--message-rate 0 --sign-up-rate-per-ip 0"   # an old build without today's flags
#   ROUNDS=3 STEPS=5000,10000,19000 OUT=target/bench/ab-<time>
#   CASES="idle"                                                # only some phases (default: all three)
#
# Prints one line per result and leaves them in $OUT/results.jsonl.
# All traffic stays on 127.0.0.0/8; every phase is bounded by a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
: "${A_BIN:?the A build's hearth binary}" "${B_BIN:?the B build's hearth binary}"
out=${OUT:-$root/target/bench/ab-$(date +%Y%m%d-%H%M%S)}
rounds=${ROUNDS:-3}
steps=${STEPS:-5000,10000,19000}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
cargo build -q --release -p hearth-bench
bench=$root/target/release/hearth-bench
trap stop_servers EXIT
describe_machine --short >"$out/machine.txt"

# Starts build $1 (A or B) on a fresh data folder with its users signed up
# (start_hearth_with_users); sets $pid, $addr, $data and $cookies.
start_build() {
  local bin_var=${1}_BIN flags_var=${1}_SERVER_FLAGS
  data=$(mktemp -d)
  # shellcheck disable=SC2206
  local flags=(${!flags_var:-${hearth_without_limits[*]}})
  start_hearth_with_users "$data" "${!bin_var}" --bind 127.0.0.1:0 --data-dir "$data" "${flags[@]}"
  pid=$server_pid
}

# A gauge from the measured server's /metrics, as an integer.
metric() {
  curl -s "http://$addr/metrics" | awk -v name="$1" '$1 == name {print int($2)}'
}
heap_bytes() { metric hearth_heap_bytes; }

# One phase of build $1: `idle` or `fanout-1k` / `fanout-10k`.
phase() {
  local build=$1 case=$2 flags_var=${1}_FLAGS
  # shellcheck disable=SC2206
  local flags=(${!flags_var:-})
  start_build "$build"
  local common=(--app hearth --cookies-file "$cookies" --server "http://$addr" --pid "$pid"
    --label "$build" --case "$case" --json "$results" "${flags[@]}")
  case $case in
    idle)
      sleep 3
      local before after
      before=$(heap_bytes)
      timeout -k 10 300 "$bench" idle --steps "$steps" --settle 12 --workers 2 "${common[@]}" >>"$out/phases.log" 2>&1 &
      local idle=$!
      # Read the heap once the last step is held: the connection count
      # stands still near it (a build may refuse the last few hundred).
      local last=${steps##*,} previous=-1 held=0
      while kill -0 "$idle" 2>/dev/null; do
        held=$(metric hearth_connections)
        [ "$held" = "$previous" ] && [ "$held" -ge $((last * 9 / 10)) ] && break
        previous=$held
        sleep 3
      done
      after=$(heap_bytes)
      wait "$idle" || true
      echo "{\"bench\":\"heap\",\"label\":\"$build\",\"case\":\"idle\",\"held\":$held,\"heap_bytes_per_conn\":$(((after - before) / held))}" >>"$results"
      ;;
    fanout-1k | fanout-10k)
      local clients=1000 messages=1000
      [ "$case" = fanout-10k ] && clients=10000 messages=200
      timeout -k 10 200 "$bench" fanout --clients "$clients" --messages "$messages" --rate 0 --publishers 4 \
        --timeout 90 "${common[@]}" >>"$out/phases.log" 2>&1 || echo "!! $build $case failed" >&2
      ;;
  esac
  stop_server "$pid"
  rm -rf "$data"
  tail -n 1 "$results" | cut -c1-200
}

for round in $(seq "$rounds"); do
  echo "== round $round" >&2
  for case in ${CASES:-idle fanout-1k fanout-10k}; do
    phase A "$case"
    phase B "$case"
  done
done
echo "results in $results" >&2
