#!/usr/bin/env bash
# One stalled client among 1,000 subscribers: the others' latency with and
# without it, in one run, and the server's memory before and after.
#
#   bench/stalled.sh
#
# MESSAGES (10,000) at RATE (250/s) are enough to fill the stalled client's
# socket buffers. Same server settings for both phases; the stalled client never reads, so
# once its socket buffers and its send queue (--send-queue 256 here) are full
# Hearth drops it as too_slow. All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=${OUT:-$root/target/bench/stalled-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
build_hearth_and_bench --release
bench=$root/target/release/hearth-bench

trap stop_servers EXIT
start_server "$out/hearth.log" "$root/target/release/hearth" --bind 127.0.0.1:0 --data-dir "$out/data" \
  "${hearth_without_limits[@]}" --send-queue 256
pid=$server_pid
addr=$(wait_until_listening "$pid" "$out/hearth.log")
port=${addr##*:}
rss() { rss_kib "$pid"; }

common=(fanout --server "http://127.0.0.1:$port" --pid "$pid" --clients 1000 --messages "${MESSAGES:-10000}" --rate "${RATE:-250}" --expect-complete --timeout 300)
echo "rss_kib_before $(rss)" | tee "$out/rss.txt"
"$bench" "${common[@]}" --label without-stalled | tee "$out/results.txt"
echo "rss_kib_between $(rss)" | tee -a "$out/rss.txt"
"$bench" "${common[@]}" --stalled 1 --label with-one-stalled | tee -a "$out/results.txt"
echo "rss_kib_after $(rss)" | tee -a "$out/rss.txt"
grep -c 'too slow\|too_slow' "$out/hearth.log" | sed 's/^/too_slow_disconnects_logged /' | tee -a "$out/rss.txt" || true
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^hearth_(queue_drops_total|connections) ' | tee -a "$out/rss.txt"
echo "results in $out" >&2
