#!/usr/bin/env bash
# Three Hearth nodes on one PostgreSQL and one Redis, 100 rooms: what each
# node hears from Redis, and what fan-out costs on one node against three.
#
# 1. Routing. Node k holds subscribers (2 a room, `hearth-bench idle`) only in
#    its third of the rooms (1–33, 34–66, 67–100); 10 messages are posted over
#    HTTP to every room, message n of room r through node (r + n) mod 3. Per
#    node: Redis messages received (hearth_broker_received_total) against
#    the messages of the rooms it serves, Redis channels subscribed, published;
#    and Redis's own count of subscribers of each room's channel
#    (PUBSUB NUMSUB), which must be 1.
# 2. Fan-out, ROUNDS times, two phases each, over the busy rooms 1, 34 and 67:
#    - one node: all CLIENTS subscribers on node 1, a third in each busy
#      room; one writer per room posts through node 1 for DURATION s;
#    - three nodes: the same subscribers, those of room 1 on node 1, of 34
#      on node 2, of 67 on node 3; the writer of each room posts through the
#      next node, so every message reaches its subscribers through Redis and
#      the relay's database check (the dearer path);
#    - apart: the costs one by one: one subscriber in room 34 on node 2 and
#      one in room 67 on node 3, their writers posting through node 1, so
#      node 1 only posts and nodes 2 and 3 only relay what Redis brings.
#    Each node's CPU (utime + stime from /proc/<pid>/stat), deliveries
#    (hearth_deliveries_total) and Redis messages received are read just
#    before the writers start and once deliveries have stopped. The on-paper
#    figures (one machine per node) are derived from these at the end.
#
#   bench/nodes.sh                              # release builds of this tree
#   ROUNDS=1 CLIENTS=300 DURATION=5 bench/nodes.sh   # a quick look
#
# Env: PG_URL (default postgres://postgres@127.0.0.1:5432/test: a database of
# its own is created and dropped), REDIS_URL (default redis://127.0.0.1:6379;
# a channel prefix of its own), ROOMS (100), MESSAGES_PER_ROOM (10), CLIENTS
# (1500), DURATION (10), ROUNDS (3), OUT. All traffic stays on 127.0.0.0/8;
# every tool runs under `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
use_services
rooms=${ROOMS:-100}
per_room=${MESSAGES_PER_ROOM:-10}
clients=${CLIENTS:-1500}
duration=${DURATION:-10}
rounds=${ROUNDS:-3}
out=${OUT:-$root/target/bench/nodes-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

build_hearth_and_bench --release -q
hearth=$root/target/release/hearth
bench=$root/target/release/hearth-bench
describe_machine --short | tee "$out/machine.txt" >&2

with_bench_database "hearth_bench_$$"

# node k's port, pid, and its third of the rooms (first and last room).
prefix="hearth-nodes-$$"
ports=() pids=() first=() last=()
for k in 0 1 2; do
  start_node "$out/node$((k + 1)).log" --redis-url "$redis" --redis-channel-prefix "$prefix"
  ports+=("$port") pids+=("$pid")
  first+=($((k * rooms / 3 + 1))) last+=($(((k + 1) * rooms / 3)))
done
busy=("${first[@]}") # the fan-out phases' rooms: the first of each third

metric() { # port, name → value (0 when the node has no such metric yet)
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { v = $2 } END { print v + 0 }'
}
cpu_ticks() { # pid → utime + stime, clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

# Waits (at most 60 s) until node k's metric NAME is VALUE.
wait_metric() {
  local k=$1 name=$2 want=$3
  for _ in $(seq 1 600); do
    [ "$(metric "${ports[$k]}" "$name")" = "$want" ] && return 0
    sleep 0.1
  done
  echo "node $((k + 1)): $name stayed at $(metric "${ports[$k]}" "$name"), not $want" >&2
  return 1
}

# Waits until no node's deliveries moved for a second (at most 60 s).
wait_quiet() {
  local before now
  before=$(for k in 0 1 2; do metric "${ports[$k]}" hearth_deliveries_total; done)
  for _ in $(seq 1 60); do
    sleep 1
    now=$(for k in 0 1 2; do metric "${ports[$k]}" hearth_deliveries_total; done)
    [ "$now" = "$before" ] && return 0
    before=$now
  done
}

# One line per node: cpu_ticks deliveries received stored published.
sample() {
  local k
  for k in 0 1 2; do
    echo "$(cpu_ticks "${pids[$k]}") $(metric "${ports[$k]}" hearth_deliveries_total)" \
      "$(metric "${ports[$k]}" hearth_broker_received_total)" \
      "$(metric "${ports[$k]}" hearth_messages_stored_total)" \
      "$(metric "${ports[$k]}" hearth_broker_published_total)"
  done
}

# Holds N subscribers on node k spread over ROOMS (comma-separated) until
# stopped; sets $holder to its pid.
hold_subscribers() {
  local k=$1 n=$2 list=$3 log=$4
  start_server "$log" timeout 900 "$bench" idle --server "http://127.0.0.1:${ports[$k]}" \
    --pid "${pids[$k]}" --cookies-file "$out/cookies.txt" --rooms "$list" --steps "$n" \
    --settle 0.5 --hold 800
  holder=$server_pid
}

# Stops the holders and waits until no node follows a room any more.
release_subscribers() {
  local p k
  for p in "$@"; do stop_server "$p"; done
  for k in 0 1 2; do
    wait_metric "$k" hearth_subscriptions 0
    wait_metric "$k" hearth_broker_channels 0
  done
}

# Users for every tool (signed up once, so no Argon2 runs inside a window),
# and a poster who creates the rooms: #general is room 1.
timeout 120 "$bench" users --server "http://127.0.0.1:${ports[0]}" --users 30 --out "$out/cookies.txt" >&2
jar="$out/poster.txt"
curl -s -o /dev/null -c "$jar" -d "email=poster@example.com&nickname=poster&password=correct-horse" \
  "http://127.0.0.1:${ports[0]}/sign_up"
for r in $(seq 2 "$rooms"); do
  curl -s -o /dev/null -b "$jar" -d "name=room-$r" "http://127.0.0.1:${ports[0]}/chatrooms"
done

echo "== routing: node k holds 2 subscribers in each room of its third" >&2
holders=()
for k in 0 1 2; do
  hold_subscribers "$k" $((2 * (last[k] - first[k] + 1))) "$(seq -s, "${first[$k]}" "${last[$k]}")" \
    "$out/idle-routing-$((k + 1)).txt"
  holders+=("$holder")
done
for k in 0 1 2; do
  wait_metric "$k" hearth_subscriptions $((2 * (last[k] - first[k] + 1)))
  wait_metric "$k" hearth_broker_channels $((last[k] - first[k] + 1))
done
before=$(sample)
started=$(date +%s.%N)
# shellcheck disable=SC2016 # $0 and $1 are the inner shell's: the URL and the form field
for r in $(seq 1 "$rooms"); do
  for n in $(seq 1 "$per_room"); do
    echo "http://127.0.0.1:${ports[$(((r + n) % 3))]}/chatrooms/$r/messages content=m$n"
  done
done | timeout 300 xargs -P 4 -L 1 sh -c 'curl -s --max-time 30 -o /dev/null -w "%{http_code}\n" -b "'"$jar"'" -H "Accept: application/json" --data-urlencode "$1" "$0"' \
  | sort | uniq -c >"$out/posts.txt"
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
for k in 0 1 2; do
  wait_metric "$k" hearth_broker_received_total $((per_room * (last[k] - first[k] + 1))) || true
done
after=$(sample)
# Redis's side: how many subscribers each room's channel has.
# shellcheck disable=SC2046 # one argument per room channel
numsub=$(redis-cli -u "$redis" PUBSUB NUMSUB $(for r in $(seq 1 "$rooms"); do echo "$prefix:chatrooms:$r"; done) \
  | awk 'NR % 2 == 0 { print $1 }' | sort | uniq -c | awk '{ printf "%s%s channel(s) with %s subscriber(s)", sep, $1, $2; sep = ", " }')
{
  echo "## Routing: $rooms rooms, $per_room messages each, posted round robin over the nodes"
  echo
  echo "posts (status counts): $(tr -s ' ' <"$out/posts.txt" | tr '\n' ' ') in ${elapsed%???????} s"
  echo "Redis PUBSUB NUMSUB over the $rooms room channels: $numsub"
  echo
  echo "| node | rooms served | subscribers | Redis channels subscribed | Redis messages received | messages of its rooms | only its rooms | published to Redis | stored here | CPU s |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  paste <(echo "$before") <(echo "$after") | for k in 0 1 2; do
    read -r c0 _ r0 s0 p0 c1 _ r1 s1 p1
    served=$((last[k] - first[k] + 1))
    got=$((r1 - r0))
    ok=$([ "$got" = $((per_room * served)) ] && echo yes || echo "**no**")
    printf '| %s | %s–%s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n' $((k + 1)) "${first[$k]}" "${last[$k]}" \
      "$(metric "${ports[$k]}" hearth_subscriptions)" "$(metric "${ports[$k]}" hearth_broker_channels)" \
      "$got" $((per_room * served)) "$ok" $((p1 - p0)) $((s1 - s0)) "$(echo "($c1 - $c0) / $hz" | bc -l)"
  done
  echo
} | tee "$out/results.md"
release_subscribers "${holders[@]}"

# Runs one fan-out phase: EACH subscribers in every room of PLACES ("node
# room" pairs), writers as WRITERS ("node room" pairs). Appends one line per
# node to $out/phases.txt: phase round node window_s cpu_s deliveries received stored.
fanout_phase() {
  local phase=$1 round=$2 each=$3 places=$4 writers=$5 k r p hs=() ps=() t0 t1
  declare -A on_node=()
  while read -r k r; do on_node[$k]+="$r,"; done <<<"$places"
  for k in "${!on_node[@]}"; do
    local list=${on_node[$k]%,} n
    n=$((each * $(tr ',' '\n' <<<"$list" | wc -l)))
    hold_subscribers "$k" "$n" "$list" "$out/idle-$phase-$round-$((k + 1)).txt"
    hs+=("$holder")
    wait_metric "$k" hearth_subscriptions "$n"
  done
  sleep 1
  local before after
  before=$(sample)
  t0=$(date +%s.%N)
  while read -r k r; do
    timeout $((duration + 60)) "$bench" post --server "http://127.0.0.1:${ports[$k]}" \
      --cookies-file "$out/cookies.txt" --room "$r" --writers 1 --duration "$duration" \
      --via http --label "$phase" --case "room-$r" >>"$out/post-$phase-$round.txt" 2>&1 &
    ps+=($!)
  done <<<"$writers"
  for p in "${ps[@]}"; do wait "$p"; done
  wait_quiet
  t1=$(date +%s.%N)
  after=$(sample)
  paste <(echo "$before") <(echo "$after") | for k in 0 1 2; do
    read -r c0 d0 r0 s0 _ c1 d1 r1 s1 _
    echo "$phase $round $((k + 1)) $(echo "$t1 - $t0" | bc) $(echo "($c1 - $c0) / $hz" | bc -l)" \
      $((d1 - d0)) $((r1 - r0)) $((s1 - s0))
  done >>"$out/phases.txt"
  release_subscribers "${hs[@]}"
}

: >"$out/phases.txt"
for round in $(seq 1 "$rounds"); do
  echo "== round $round: one node" >&2
  fanout_phase one "$round" $((clients / 3)) "$(printf '0 %s\n' "${busy[@]}")" "$(printf '0 %s\n' "${busy[@]}")"
  echo "== round $round: three nodes" >&2
  fanout_phase three "$round" $((clients / 3)) "$(for k in 0 1 2; do echo "$k ${busy[$k]}"; done)" \
    "$(for k in 0 1 2; do echo "$(((k + 1) % 3)) ${busy[$k]}"; done)"
  echo "== round $round: the costs apart: node 1 only posts, nodes 2 and 3 only relay" >&2
  fanout_phase apart "$round" 1 "$(printf '1 %s\n2 %s\n' "${busy[1]}" "${busy[2]}")" \
    "$(printf '0 %s\n0 %s\n' "${busy[1]}" "${busy[2]}")"
done

# The tables: per round and node, then medians and the on-paper figures.
awk -v rounds="$rounds" '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function per(cpu_s, n) { return n ? 1e6 * cpu_s / n : 0 }
  function row(r, label, k, ph) {
    printf "| %d | %s | %s | %.1f | %.2f | %d | %.0f | %.2f | %d | %.0f | %d |\n", r, label, k, w[ph, r], cpu[ph, r, k],
      del[ph, r, k], del[ph, r, k] / w[ph, r], per(cpu[ph, r, k], del[ph, r, k]), rec[ph, r, k],
      per(cpu[ph, r, k], rec[ph, r, k]), st[ph, r, k]
  }
  { ph = $1; r = $2; k = $3; w[ph, r] = $4; cpu[ph, r, k] = $5; del[ph, r, k] = $6; rec[ph, r, k] = $7; st[ph, r, k] = $8 }
  END {
    print "## Fan-out, per round (window: writers start → deliveries stop)"
    print ""
    print "| round | phase | node | window s | CPU s | deliveries | deliveries/s | CPU µs / delivery | Redis msgs received | CPU µs / received | stored here |"
    print "|---|---|---|---|---|---|---|---|---|---|---|"
    for (r = 1; r <= rounds; r++) {
      row(r, "one node", 1, "one")
      sc = sd = sr = mx = 0
      for (k = 1; k <= 3; k++) {
        row(r, "three nodes", k, "three")
        sc += cpu["three", r, k]; sd += del["three", r, k]; sr += rec["three", r, k]
        if (per(cpu["three", r, k], del["three", r, k]) > mx) mx = per(cpu["three", r, k], del["three", r, k])
      }
      cpu["three", r, "sum"] = sc; del["three", r, "sum"] = sd; rec["three", r, "sum"] = sr
      st["three", r, "sum"] = st["three", r, 1] + st["three", r, 2] + st["three", r, 3]
      row(r, "three nodes", "sum", "three")
      for (k = 1; k <= 3; k++) row(r, "apart", k, "apart")
      # One node: CPU per delivery, per message (all in), deliveries per message.
      u1 = per(cpu["one", r, 1], del["one", r, 1]); m1 = per(cpu["one", r, 1], st["one", r, 1])
      fan = del["one", r, 1] / st["one", r, 1]
      # Apart: a post on a node with no subscriber of its room; a message
      # received from Redis by a node with one subscriber of its room.
      post = per(cpu["apart", r, 1], st["apart", r, 1])
      relay = per(cpu["apart", r, 2] + cpu["apart", r, 3], rec["apart", r, 2] + rec["apart", r, 3])
      one_rate[r] = del["one", r, 1] / w["one", r]; three_rate[r] = sd / w["three", r]
      one_u[r] = u1; three_u[r] = per(sc, sd); max_u[r] = mx; one_m[r] = m1; fans[r] = fan
      posts[r] = post; relays[r] = relay; deliveries[r] = (m1 - post) / fan
      measured[r] = 3 * u1 / mx
      modelled[r] = 3 * m1 / (m1 + relay)
    }
    print ""
    print "## Fan-out, medians of " rounds " round(s)"
    print ""
    print "| measure | one node | three nodes |"
    print "|---|---|---|"
    printf "| deliveries/s on this machine (every node and tool shares its 2 cores) | %.0f | %.0f |\n", median(one_rate, rounds), median(three_rate, rounds)
    printf "| CPU µs / delivery (three nodes: their CPU over their deliveries) | %.2f | %.2f |\n", median(one_u, rounds), median(three_u, rounds)
    printf "| CPU µs / delivery of the dearest of the three | | %.2f |\n", median(max_u, rounds)
    printf "| deliveries per message | %.0f | |\n", median(fans, rounds)
    printf "| CPU µs per message, all in (post, store, publish, deliveries) | %.0f | |\n", median(one_m, rounds)
    printf "| apart: CPU µs per post on a node without its subscribers | %.0f | |\n", median(posts, rounds)
    printf "| apart: CPU µs per Redis message received (relay, database check, one delivery) | | %.0f |\n", median(relays, rounds)
    printf "| so CPU µs per delivery beyond the post, (all in − post) ÷ deliveries per message | %.2f | |\n", median(deliveries, rounds)
    printf "| on paper, measured: 3 × one node µs/delivery ÷ dearest node µs/delivery | 1× | **%.2f×** |\n", median(measured, rounds)
    printf "| on paper, modelled: 3 × all-in µs per message ÷ (all-in + relay µs per message) | 1× | **%.2f×** |\n", median(modelled, rounds)
  }' "$out/phases.txt" | tee -a "$out/results.md"
echo "results in $out" >&2
