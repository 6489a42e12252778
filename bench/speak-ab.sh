#!/usr/bin/env bash
# Two Hearth builds on `speak-100` (100 speakers, a room each, each speaking
# again once its own broadcast is back), in alternating rounds A B A B …,
# each on a fresh data folder with its users signed up on a first instance
# and the server restarted, as bench/run.sh does. For "what did this change
# to the write path buy": build the other commit into its own folder.
#
#   A_BIN=/tmp/before/hearth B_BIN=target/release/hearth bench/speak-ab.sh
#   ROUNDS=3 SECS=5 OUT=target/bench/speak-ab-<time>
#
# Prints one JSON line per run (messages/s, p50/p99, server and client CPU
# seconds) and the writer's counters (messages, commits, seconds in commits)
# read from /metrics around it; all are left in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
: "${A_BIN:?the hearth binary of build A}" "${B_BIN:?the hearth binary of build B}"
out=${OUT:-$root/target/bench/speak-ab-$(date +%Y%m%d-%H%M%S)}
rounds=${ROUNDS:-3}
secs=${SECS:-5}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
cargo build -q --release -p hearth-bench
bench=$root/target/release/hearth-bench
trap stop_servers EXIT
describe_machine --short >"$out/machine.txt"

# The writer's counters from /metrics, on one line.
writer_counters() {
  curl -s "http://$addr/metrics" |
    awk '$1 ~ /^hearth_(messages_stored_total|message_commits_total|message_commit_seconds_total)$/ {printf "%s=%s ", $1, $2}'
}

for round in $(seq "$rounds"); do
  for build in A B; do
    bin_var=${build}_BIN
    dir=$(mktemp -d)
    start_hearth_with_users "$dir" "${!bin_var}" --bind 127.0.0.1:0 --data-dir "$dir" "${hearth_without_limits[@]}"
    pid=$server_pid
    echo "== round $round $build, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/phases.log" >&2
    timeout -k 10 120 "$bench" post --via speak --writers 100 --rooms own --duration "$secs" \
      --app hearth --cookies-file "$cookies" --server "http://$addr" --pid "$pid" \
      --label "$build" --case speak-100 --json "$results" >>"$out/phases.log" 2>&1 ||
      echo "!! $build failed" >&2
    echo "$build $(writer_counters)" | tee -a "$out/writer.txt"
    stop_server "$pid"
    rm -rf "$dir"
    tail -n 1 "$results" | cut -c1-400
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
echo "results in $results" >&2
