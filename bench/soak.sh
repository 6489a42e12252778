#!/usr/bin/env bash
# The soak test of RELIABILITY.md (not run in CI): a release Hearth holds
# 5,000 subscribers of one room for DURATION (default 30m) while 100 of them
# a second disconnect, reconnect, resubscribe and `catch_up`, and 20 messages
# a second are posted over HTTP. The server's RSS, open files and /metrics
# are sampled every 10 s. Exits non-zero if any client lacks a message or
# holds one twice, if a post failed or an acknowledged message is not stored,
# or if the mean RSS of the last 5 minutes, less SQLite's page caches (they
# fill up to a fixed size as the database grows; /metrics reports them), is
# more than RSS_TOLERANCE % (default 10) above that of the first 5 minutes,
# or open files more than
# FD_TOLERANCE % (default 2) (each window at most a third of the run), or
# if, 5 s after every client has left, the server still counts a connection
# or holds more than 20 files above what it held before the soak.
#
#   bench/soak.sh            # 30 minutes, plus about a minute of set-up
#   bench/soak.sh 2m         # a short run (whole numbers of s, m or h)
#   CLIENTS=10000 WORKERS=2 CHURN=100 RATE=20 bench/soak.sh 30m
#
# Results in $OUT (default target/soak/<time>): result.jsonl (the summary
# line), samples.jsonl (one JSON line per sample), soak.svg (RSS and open
# files against time), hearth.log, machine.txt. Loopback only; the run is
# bounded by DURATION plus 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
duration=${1:-30m}
clients=${CLIENTS:-5000}
workers=${WORKERS:-1}
churn=${CHURN:-100}
rate=${RATE:-20}
rss_tolerance=${RSS_TOLERANCE:-10}
fd_tolerance=${FD_TOLERANCE:-2}
out=${OUT:-$root/target/soak/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

{
  describe_machine --full
  echo "soak: duration $duration, clients $clients, workers $workers, churn $churn/s, rate $rate/s"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

build_hearth_and_bench --release
bench=$root/target/release/hearth-bench
# Copy the binary so a rebuild during the run cannot change what runs.
cp target/release/hearth "$out/hearth"

data=$(mktemp -d)
trap 'stop_servers; rm -rf "$data"' EXIT

# Starts Hearth on $data, logging to $1; sets $pid and $addr.
start_hearth() {
  start_server "$1" "$out/hearth" --bind 127.0.0.1:0 --data-dir "$data" \
    "${hearth_without_limits[@]}" --max-connections 100000
  pid=$server_pid
  addr=$(wait_until_listening "$pid" "$1")
}

# Sign the users up on a first instance and restart on the same data, so
# the measured process starts clean (each Argon2 hash borrows 19 MiB).
start_hearth "$out/hearth-sign-up.log"
"$bench" users --server "http://$addr" --users 20 --out "$out/cookies"
stop_server "$pid"
start_hearth "$out/hearth.log"
fds_before=$(ls /proc/$pid/fd | wc -l)
echo "hearth: pid $pid at $addr, RSS $(rss_kib "$pid") KiB, $fds_before open files" | tee -a "$out/machine.txt" >&2

case $duration in
  *h) seconds=$((${duration%h} * 3600)) ;;
  *m) seconds=$((${duration%m} * 60)) ;;
  *s) seconds=${duration%s} ;;
  *) seconds=$duration ;;
esac
status=0
timeout $((seconds + 600)) "$bench" soak \
  --server "http://$addr" --pid "$pid" --cookies-file "$out/cookies" \
  --clients "$clients" --workers "$workers" --churn "$churn" --rate "$rate" \
  --duration "$duration" --samples "$out/samples.jsonl" \
  --rss-tolerance "$rss_tolerance" --fd-tolerance "$fd_tolerance" \
  --label hearth --case "soak-$duration" --json "$out/result.jsonl" || status=$?
if kill -0 "$pid" 2>/dev/null; then
  # Every client has gone: what the connections held must be given back.
  sleep 5
  fds_after=$(ls /proc/$pid/fd | wc -l)
  conns_after=$(curl -sf "http://$addr/metrics" | awk '$1 == "hearth_connections" {print $2}')
  echo "5 s after the clients left: ${conns_after:-?} connections, $fds_after open files (before: $fds_before), RSS $(rss_kib "$pid") KiB" | tee -a "$out/machine.txt" >&2
  if [ "${conns_after:-1}" != 0 ] || [ "$fds_after" -gt $((fds_before + 20)) ]; then
    echo "the server did not give back its connections or files" >&2
    status=1
  fi
else
  echo "hearth died during the soak; its log:" >&2
  tail -50 "$out/hearth.log" >&2
  status=1
fi
stop_server "$pid"

"$bench" chart --input "$out/samples.jsonl" --out "$out/soak.svg" || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
echo "results in $out" >&2
exit "$status"
