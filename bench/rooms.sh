#!/usr/bin/env bash
# How many Redis messages each of two nodes receives when 100 rooms are busy
# but each node serves subscribers in only some of them. Node 1 holds
# subscribers in rooms 1–10, node 2 in rooms 11–30; 10 messages are posted
# over HTTP to each of the 100 rooms, alternating between the nodes. Prints,
# per node, the Redis messages received and the channels subscribed
# (hearth_broker_received_total, hearth_broker_channels).
#
#   bench/rooms.sh                       # this tree (debug build: counts, not speed)
#   HEARTH_BIN=/path/to/old/hearth bench/rooms.sh   # another build, e.g. before a change
#
# Needs PostgreSQL (PG_URL, default postgres://postgres@127.0.0.1:5432/test:
# a database of its own is created and dropped) and Redis (REDIS_URL, default
# redis://127.0.0.1:6379; the channels get a prefix of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
use_services
rooms=${ROOMS:-100}
per_room=${MESSAGES_PER_ROOM:-10}
hold=${HOLD:-45}
out=${OUT:-$root/target/bench/rooms-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

build_hearth_and_bench
hearth=${HEARTH_BIN:-$root/target/debug/hearth}
bench=$root/target/debug/hearth-bench

with_bench_database "hearth_bench_$$"

metric() { # node port, metric name → value, or – when the node has no such metric
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; found=1 } END { if (!found) print "–" }'
}

prefix="hearth-rooms-$$"
start_node "$out/node1.log" --redis-url "$redis" --redis-channel-prefix "$prefix"
one=$port one_pid=$pid
start_node "$out/node2.log" --redis-url "$redis" --redis-channel-prefix "$prefix"
two=$port two_pid=$pid

# A poster and the rooms: #general is room 1, the others are created.
jar="$out/cookies.txt"
curl -s -o /dev/null -c "$jar" -d "email=poster@example.com&nickname=poster&password=correct-horse" \
  "http://127.0.0.1:$one/sign_up"
for r in $(seq 2 "$rooms"); do
  curl -s -o /dev/null -b "$jar" -d "name=room-$r" "http://127.0.0.1:$one/chatrooms"
done

# Subscribers: 2 per room, on node 1 in rooms 1–10, on node 2 in rooms 11–30;
# `idle` waits $hold s, opens them, and holds them $hold s more.
start_server "$out/idle1.txt" "$bench" idle --server "http://127.0.0.1:$one" --pid "$one_pid" --users 2 \
  --rooms "$(seq -s, 1 10)" --steps 20 --settle "$hold"
start_server "$out/idle2.txt" "$bench" idle --server "http://127.0.0.1:$two" --pid "$two_pid" --users 2 \
  --rooms "$(seq -s, 11 30)" --steps 40 --settle "$hold"
for _ in $(seq 1 $((hold * 20 + 200))); do
  [ "$(metric "$one" hearth_subscriptions)" = 20 ] && [ "$(metric "$two" hearth_subscriptions)" = 40 ] && break
  sleep 0.1
done
sleep 0.5 # the nodes subscribe to the rooms' channels just after confirming

echo "posting $per_room messages to each of $rooms rooms, alternating nodes" >&2
started=$(date +%s.%N)
for r in $(seq 1 "$rooms"); do
  node=$([ $((r % 2)) = 1 ] && echo "$one" || echo "$two")
  for n in $(seq 1 "$per_room"); do
    echo "http://127.0.0.1:$node/chatrooms/$r/messages content=m$n"
  done
done | xargs -P 4 -L 1 sh -c 'curl -s -o /dev/null -w "%{http_code}\n" -b "'"$jar"'" -H "Accept: application/json" --data-urlencode "$1" "$0"' \
  | sort | uniq -c >"$out/posts.txt"
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
sleep 1

{
  echo "posts (status counts): $(tr -s ' ' <"$out/posts.txt" | tr '\n' ' ') in ${elapsed%???????} s"
  printf '| node | subscribers | rooms followed | Redis channels subscribed | Redis messages received | published |\n'
  printf '|---|---|---|---|---|---|\n'
  printf '| 1 | %s | 1–10 | %s | %s | %s |\n' "$(metric "$one" hearth_subscriptions)" \
    "$(metric "$one" hearth_broker_channels)" "$(metric "$one" hearth_broker_received_total)" \
    "$(metric "$one" hearth_broker_published_total)"
  printf '| 2 | %s | 11–30 | %s | %s | %s |\n' "$(metric "$two" hearth_subscriptions)" \
    "$(metric "$two" hearth_broker_channels)" "$(metric "$two" hearth_broker_received_total)" \
    "$(metric "$two" hearth_broker_published_total)"
} | tee "$out/results.md"
echo "results in $out" >&2
