#!/usr/bin/env bash
# The latency the Redis hop adds: 1,000 subscribers on node 2, messages posted
# over HTTP on node 1 (two Hearth nodes sharing PostgreSQL and Redis), against
# the same fan-out with subscribers and poster on one node, in one run.
#
#   bench/two-node.sh
#
# Needs PostgreSQL (PG_URL, default postgres://postgres@127.0.0.1:5432/test:
# a database of its own is created and dropped) and Redis (REDIS_URL, default
# redis://127.0.0.1:6379; the channels get a prefix of their own).
# All traffic stays on 127.0.0.1; each phase is bounded by the tool's timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
use_services
clients=${CLIENTS:-1000}
messages=${MESSAGES:-1000}
rate=${RATE:-100}
out=${OUT:-$root/target/bench/two-node-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

build_hearth_and_bench --release
hearth=$root/target/release/hearth
bench=$root/target/release/hearth-bench

with_bench_database "hearth_bench_$$"

prefix="hearth-bench-$$"
start_node "$out/node1.log" --redis-url "$redis" --redis-channel-prefix "$prefix"
one=$port
start_node "$out/node2.log" --redis-url "$redis" --redis-channel-prefix "$prefix"
two=$port
sleep 1

common=(fanout --clients "$clients" --messages "$messages" --rate "$rate" --via http --expect-complete)
echo "== one node: subscribers and poster on node 1" >&2
"$bench" "${common[@]}" --server "http://127.0.0.1:$one" --label one-node | tee "$out/results.txt"
echo "== two nodes: subscribers on node 2, poster on node 1, through Redis" >&2
"$bench" "${common[@]}" --server "http://127.0.0.1:$two" --publish-server "http://127.0.0.1:$one" \
  --label two-nodes | tee -a "$out/results.txt"
grep '^{' "$out/results.txt" >"$out/results.jsonl"
echo "results in $out" >&2
