#!/usr/bin/env bash
# Where an idle connection's heap goes: Hearth built with the `dhat-heap`
# feature (dhat's allocator in place of mimalloc), N idle connections held
# as the room page holds them, then the server stopped, so that dhat writes
# the allocations live at the heap's peak, by call stack. Prints the largest
# sites per connection (bench/dhat-top.py).
#
#   bench/heap-profile.sh                     # 5,000 connections
#   CONNECTIONS=2000 TOP=40 bench/heap-profile.sh
#   HEARTH_BIN=target/release/hearth bench/heap-profile.sh   # a build already made with the feature
#
# Results: $OUT (default target/bench/heap-<time>): dhat-heap.json (open it
# in dhat's viewer, dh_view.html, for the whole tree), top.txt, the log.
# The peak must be the held connections, not start-up: below ~4,000
# connections the 19 MiB of the start-up password hash can be the peak.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=${OUT:-$root/target/bench/heap-$(date +%Y%m%d-%H%M%S)}
connections=${CONNECTIONS:-5000}
mkdir -p "$out"
cargo build -q --release -p hearth-bench
bench=$root/target/release/hearth-bench
if [ -z "${HEARTH_BIN:-}" ]; then
  # Its own target folder, so the measured build keeps mimalloc.
  CARGO_TARGET_DIR=$root/target/dhat cargo build -q --release -p hearth --features dhat-heap
  HEARTH_BIN=$root/target/dhat/release/hearth
fi
trap stop_servers EXIT

# Users signed up on a first instance, so the profiled one starts clean;
# dhat writes dhat-heap.json in the working folder.
start_hearth_with_users "$out" env --chdir="$out" "$HEARTH_BIN" --bind 127.0.0.1:0 --data-dir "$out" \
  "${hearth_without_limits[@]}"
pid=$server_pid
"$bench" idle --app hearth --pid "$pid" --cookies-file "$cookies" --server "http://$addr" \
  --steps "$connections" --settle 3 --workers 2 --presence --format html --also '{"channel":"RoomsChannel"}' \
  >"$out/idle.log" 2>&1
# dhat writes its file when the server's `main` returns.
stop_server "$pid"
python3 bench/dhat-top.py "$out/dhat-heap.json" "$connections" "${TOP:-25}" | tee "$out/top.txt"
