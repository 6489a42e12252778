#!/usr/bin/env bash
# Presence at scale (issue 12): N subscribers, each a user of its own, join
# one room with "presence":true at JOIN_RATE a second while a probe in
# another room speaks 20 timed messages a second. For each size, the presence
# frames all joiners received against the N(N+1)/2 that one frame per join
# to everyone present would send, the probe's latency during the joins, and
# the server's CPU time. Prints a table.
#
#   bench/presence.sh                          # 1k, 2.5k, 5k, 10k joiners at 1,000/s
#   SIZES="1000 10000" JOIN_RATE=500 bench/presence.sh
#   ASK=1 bench/presence.sh                    # each joiner asks for the frame, as the room page does
#   WITHOUT_PRESENCE=1 bench/presence.sh       # control: the same joins without presence
#   HEARTH_BIN=/path/to/old/hearth bench/presence.sh   # another build, e.g. before a change
#   DATA=target/bench/presence-<time>/data bench/presence.sh   # reuse an earlier run's users
#
# The users (as many as the largest size) are signed up on a first instance,
# unless DATA already holds as many (their cookies are kept beside the
# database), then a fresh release server is started on the same data folder
# for each size, so each starts with an empty room. Results: $OUT (default
# target/bench/presence-<time>): results.jsonl, table.md, the servers' logs,
# machine.txt. All traffic stays on 127.0.0.1; every phase is bounded by a
# timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
sizes=${SIZES:-1000 2500 5000 10000}
rate=${JOIN_RATE:-1000}
flags=()
[ "${ASK:-0}" = 1 ] && flags+=(--ask)
[ "${WITHOUT_PRESENCE:-0}" = 1 ] && flags+=(--without-presence)
out=${OUT:-$root/target/bench/presence-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
results=$out/results.jsonl
data=${DATA:-$out/data}
cookies=$data/cookies
: >"$results"

describe_machine --short >"$out/machine.txt"
cat "$out/machine.txt" >&2
build_hearth_and_bench --release
hearth=${HEARTH_BIN:-$root/target/release/hearth}
bench=$root/target/release/hearth-bench
trap stop_servers EXIT

# Starts Hearth on $out/data, logging to $1; sets $pid and $addr.
launch() {
  start_server "$1" "$hearth" --bind 127.0.0.1:0 --data-dir "$data" "${hearth_without_limits[@]}"
  pid=$server_pid
  addr=$(wait_until_listening "$pid" "$1")
}

most=$(tr ' ' '\n' <<<"$sizes" | sort -n | tail -n 1)
if [ "$(wc -l 2>/dev/null <"$cookies" || echo 0)" -lt "$most" ]; then
  echo "signing up $most users" >&2
  mkdir -p "$data"
  launch "$out/hearth-sign-up.log"
  timeout 1800 "$bench" users --server "http://$addr" --users "$most" --out "$cookies"
  stop_server "$pid"
fi

for n in $sizes; do
  echo "== $n joiners at $rate/s" >&2
  launch "$out/hearth-$n.log"
  # Joins take n/rate seconds; set-up, the settling and the workers' start take the rest.
  limit=$((n / ${rate%.*} + 120))
  if ! timeout -k 10 "$limit" "$bench" presence --server "http://$addr" --pid "$pid" \
    --cookies-file "$cookies" --joiners "$n" --join-rate "$rate" "${flags[@]}" --workers 2 \
    --label hearth --case "presence-$n" --json "$results" >>"$out/phases.log" 2>&1; then
    echo "!! presence-$n failed or timed out (see $out/phases.log)" >&2
  fi
  curl -s "http://$addr/metrics" >"$out/metrics-$n.txt" || true
  stop_server "$pid"
  sleep 1
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"

{
  echo "| joiners | join s | presence frames | frames per joiner | frames per joiner-second | uncoalesced N(N+1)/2 | share | presence MB | converged | probe p50 ms | probe p99 ms | probe max ms | server CPU s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  jq -r '"| \(.subscribed) | \(.join_s) | \(.presence_frames) | \(.frames_per_joiner) | \(.frames_per_joiner_s) | \(.uncoalesced_frames) | \(.share_of_uncoalesced) | \(.presence_bytes / 1e6 * 100 | round / 100) | \(.converged) | \(.probe_p50_ms) | \(.probe_p99_ms) | \(.probe_max_ms) | \(.server_cpu_s) |"' "$results"
} | tee "$out/table.md"
echo "results in $out" >&2
