#!/usr/bin/env bash
# Reading at a million messages: seeds a database of MESSAGES messages
# (default 1,000,000) in 100 rooms with `hearth-bench seed`, then times
# searches, history pages, room pages, unread counts and the server's start
# with `hearth-bench reads`, ROUNDS times (default 3), on SQLite and on
# PostgreSQL (PG_URL's server; a database of its own, dropped at the end).
#
#   bench/reads.sh [sqlite|postgres|both] [OUT]
#
# OUT (default target/bench/reads-<time>, ignored by git) gets the seed logs and each
# round's table and JSON lines; the SQLite file is made there and deleted
# at the end. Nothing generated belongs in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

engines=${1:-both}
out=${2:-$root/target/bench/reads-$(date -u +%Y%m%dT%H%M%SZ)}
messages=${MESSAGES:-1000000}
rounds=${ROUNDS:-3}
mkdir -p "$out"
build_hearth_and_bench --release -q
describe_machine >"$out/machine.txt"
use_services

run_engine() {
  local name=$1 database=$2
  /usr/bin/time -v target/release/hearth-bench seed --database "$database" \
    --messages "$messages" --rooms 100 --users 1000 2>&1 | tee "$out/seed-$name.log"
  for round in $(seq 1 "$rounds"); do
    target/release/hearth-bench reads --database "$database" --repeat 200 \
      --out "$out/reads-$name-$round.jsonl" | tee "$out/reads-$name-$round.md"
  done
}

if [ "$engines" = sqlite ] || [ "$engines" = both ]; then
  db=$out/seed.db
  run_engine sqlite "$db"
  ls -l "$db" >>"$out/seed-sqlite.log"
  rm -f "$db" "$db-wal" "$db-shm"
fi
if [ "$engines" = postgres ] || [ "$engines" = both ]; then
  with_bench_database "hearth_reads_$$"
  run_engine postgres "$url"
  psql "$url" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))" >>"$out/seed-postgres.log"
fi
echo "results in $out"
