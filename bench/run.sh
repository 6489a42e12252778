#!/usr/bin/env bash
# Hearth side by side with the minimal reference (fanout-reference), Rails
# Action Cable (bench/peers/rails) and the tokio-tungstenite defaults
# baseline: the same phases, the same client, one server after the other in
# one run, so a shared, noisy machine is compared against itself. Prints the
# side-by-side table with ratios and draws the chart.
#
#   bench/run.sh                      # everything, about 15 minutes once built
#   SERVERS="hearth reference" bench/run.sh
#   QUICK=1 bench/run.sh              # small sizes, a couple of minutes
#   PHASES="idle fanout-1k fanout-10k" bench/run.sh   # only these phases
#   REFERENCE_PAD=444 SERVERS="hearth reference" PHASES="fanout-1k fanout-10k" bench/run.sh
#                                     # the reference's frames as large as the page's
#
# Hearth's clients hold what its room page subscribes to: the room with
# its presence and typing (ChatroomChannel, "presence":true), taking each
# message in the "html" format, and the live room list (RoomsChannel).
#
# Results: $OUT (default target/bench/<time>): results.jsonl (one JSON line
# per result), summary.md, chart.svg/.png, the servers' logs, machine.txt.
# All traffic stays on 127.0.0.0/8; every phase is bounded by a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=${OUT:-$root/target/bench/$(date +%Y%m%d-%H%M%S)}
servers=${SERVERS:-hearth reference rails baseline}
# Hearth's own per-user and per-address limits would refuse a load test.
hearth_args=${HEARTH_ARGS:-${hearth_without_limits[*]}}
quick=${QUICK:-0}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"

step() { printf '\n== %s\n' "$*" >&2; }

describe_machine --short >"$out/machine.txt"
cat "$out/machine.txt" >&2

step "Build (release)"
build_hearth_and_bench --release
bench=$root/target/release/hearth-bench

# The server under test: its name, pid, port and log.
name="" pid="" port="" log=""
trap stop_servers EXIT

# Starts `COMMAND…` logging to $log and waits for its `listening addr=`
# line; sets $pid and $port.
launch() {
  local addr
  start_server "$log" "$@"
  pid=$server_pid
  addr=$(wait_until_listening "$pid" "$log")
  port=${addr##*:}
}

hearth_data=""
# Starts server NAME and waits until it listens; sets $name, $log, $pid and
# $port.
start_named() {
  name=$1
  log=$out/$name.log
  case $name in
    hearth)
      if [ -z "$hearth_data" ]; then
        # Sign the users up on a first instance and restart, so the measured
        # process starts clean (each Argon2 hash borrows 19 MiB).
        hearth_data=$(mktemp -d)
        log=$out/hearth-sign-up.log
        # shellcheck disable=SC2086
        launch target/release/hearth --bind 127.0.0.1:0 --data-dir "$hearth_data" $hearth_args
        "$bench" users --server "http://127.0.0.1:$port" --users 20 --out "$out/cookies"
        stop_server "$pid"
        log=$out/$name.log
      fi
      # shellcheck disable=SC2086
      launch target/release/hearth --bind 127.0.0.1:0 --data-dir "$hearth_data" $hearth_args
      ;;
    reference)
      launch target/release/fanout-reference --bind 127.0.0.1:0
      ;;
    baseline)
      launch target/release/tungstenite-baseline --bind 127.0.0.1:0
      ;;
    rails)
      port=$(free_port)
      start_server "$log" env CABLE_LOG_LEVEL=error bench/peers/rails/run.sh "$port"
      pid=$server_pid
      wait_until_accepting "$port" "$pid" "$log"
      ;;
  esac
  echo "$name: pid $pid, port $port, RSS $(rss_kib "$pid") KiB" >&2
}

# Runs one phase against the current server, bounded in time; a failed
# phase is reported and the run goes on.
phase() {
  local case=$1 limit=$2
  shift 2
  if [ -n "${PHASES:-}" ] && [[ " $PHASES " != *" $case "* ]]; then
    return
  fi
  local app=(--app plain)
  [ "$name" = hearth ] && app=(--app hearth --cookies-file "$out/cookies" --presence --format html --also '{"channel":"RoomsChannel"}')
  # The reference's frames padded to the size of the frame Hearth's page
  # gets (REFERENCE_PAD bytes of filler: 444 makes both 570 bytes), to
  # compare the engines on frames of one size.
  if [ "$name" = reference ] && [ -n "${REFERENCE_PAD:-}" ] && [[ $case == fanout-* ]]; then
    app+=(--pad "$REFERENCE_PAD")
  fi
  step "$name · $case"
  if ! timeout -k 10 "$limit" "$bench" "$@" "${app[@]}" \
    --server "http://127.0.0.1:$port" --pid "$pid" \
    --label "$name" --case "$case" --json "$results" >>"$out/phases.log" 2>&1; then
    echo "!! $name · $case failed or timed out (see $out/phases.log)" >&2
  fi
  tail -n 1 "$results" | cut -c1-240 >&2
  sleep 1
}

if [ "$quick" = 1 ]; then
  idle_rust=500,1000 idle_rails=500,1000 connect_n=1000 sub_10k=2000 rtt_steps=2 secs=3
else
  idle_rust=1000,5000,10000,19000 idle_rails=1000,5000,10000 connect_n=10000 sub_10k=10000 rtt_steps=5 secs=5
fi

for name in $servers; do
  step "Server: $name"
  start_named "$name"
  rust=1
  [ "$name" = rails ] && rust=0
  # Messages per throughput phase: enough for a few seconds of work on each
  # server (Rails is ~100× slower, so it gets fewer).
  if [ $rust = 1 ]; then m1k=1000 m10k=200 idle=$idle_rust workers=2; else m1k=100 m10k=10 idle=$idle_rails workers=1; fi

  phase idle 300 idle --steps "$idle" --settle 2 --workers "$workers"
  phase connect 180 connect --clients "$connect_n" --concurrency 500
  phase connect-100 180 connect --clients "$connect_n" --concurrency 100
  phase fanout-1k 180 fanout --clients 1000 --messages "$m1k" --rate 0 --publishers 4 --timeout 60
  phase latency-1k 180 fanout --clients 1000 --messages $((secs * 100)) --rate 100 --timeout 60
  if [ "$name" = hearth ]; then
    phase http-1k 180 fanout --clients 1000 --messages $((secs * 100)) --rate 100 --via http --timeout 60
    phase post-100 120 post --via http --writers 100 --duration "$secs"
  fi
  phase speak-100 120 post --via speak --writers 100 --rooms own --duration "$secs"
  phase fanout-10k 300 fanout --clients "$sub_10k" --messages "$m10k" --rate 0 --publishers 4 --timeout 90
  phase rtt 300 rtt --step-size 1000 --steps "$rtt_steps" --sample-size 20 --concurrent 4

  stop_server "$pid"
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
step "Summary"
"$bench" summary --input "$results" | tee "$out/summary.md"
"$bench" chart --input "$results" --out "$out/chart.svg" || true
"$bench" chart --input "$results" --out "$out/chart.png" || true
echo "results in $out" >&2
