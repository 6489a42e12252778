# shellcheck shell=bash
# What the bench scripts share: building, describing the machine, starting a
# server and waiting until it listens, picking a free port, and stopping the
# servers again. Each script sources it from the repository's root:
#
#   cd "$(dirname "$0")/.."
#   . bench/lib.sh
#
# Every server is started on loopback; every wait is bounded (60 s).
# Sourcing it sets $root, the repository's root.

root=$PWD

# Hearth's limits on one user and one address (messages, sign-ups, rooms,
# cable connections and subscriptions) would refuse a load test, whose clients are
# a few users on one machine: every script starts Hearth with them off.
hearth_without_limits=(--message-rate 0 --sign-up-rate-per-ip 0 --room-create-rate 0
  --max-connections-per-user 0 --max-connections-per-address 0 --max-subscriptions-per-user 0)

# Builds Hearth and the load generator; the arguments go to `cargo build`
# (`--release`, `-q`).
build_hearth_and_bench() {
  cargo build "$@" -p hearth -p hearth-bench
}

# Prints what a result depends on, a line each: the date, the commit (its
# whole hash with `--full`, abbreviated with `--short`), cores, memory,
# kernel, CPU, the open-file limit and the load before the run.
describe_machine() {
  local rev=(git rev-parse HEAD)
  [ "$1" = --short ] && rev=(git rev-parse --short HEAD)
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $("${rev[@]}" 2>/dev/null || echo none) $(git diff --quiet 2>/dev/null || echo '(with uncommitted changes)')"
  echo "nproc: $(nproc)"
  echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "open files: $(ulimit -Hn)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# The servers started and not yet stopped, for stop_servers.
server_pids=()

# Starts `COMMAND [ARG…]` in the background, its output to LOG; sets
# $server_pid.
start_server() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  server_pid=$!
  server_pids+=("$server_pid")
}

# Runs `CHECK [ARG…]` every 0.1 s until it succeeds. Fails, showing LOG, if
# process PID ends first or CHECK has not succeeded after 60 s.
wait_for_server() {
  local pid=$1 log=$2
  shift 2
  for _ in $(seq 1 600); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server logging to $log did not start; its log:" >&2
  cat "$log" >&2
  return 1
}

# Prints HOST:PORT from the `listening addr=HOST:PORT` line that Hearth and
# the reference peers write to LOG; fails while there is none.
listening_addr() {
  local addr
  addr=$(grep -m1 -o 'listening addr=[0-9.]*:[0-9]*' "$1" 2>/dev/null | cut -d= -f2)
  [ -n "$addr" ] && echo "$addr"
}

# Succeeds if something accepts connections on 127.0.0.1:PORT.
accepts_on() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits until the server PID has written where it listens to LOG, and prints
# HOST:PORT (see wait_for_server).
wait_until_listening() {
  wait_for_server "$1" "$2" listening_addr "$2"
}

# Starts Hearth as `COMMAND [ARG…]`, which gives it `--data-dir DIR` and a
# port, twice: first to sign 20 users up (each Argon2 hash borrows 19 MiB),
# then again, clean, as the server to measure; logs DIR/users.log and
# DIR/measured.log. Sets $server_pid, $addr and $cookies (DIR/cookies).
# Needs $bench, the hearth-bench binary.
start_hearth_with_users() {
  local dir=$1 pass
  shift
  for pass in users measured; do
    start_server "$dir/$pass.log" "$@"
    addr=$(wait_until_listening "$server_pid" "$dir/$pass.log")
    if [ "$pass" = users ]; then
      "$bench" users --server "http://$addr" --users 20 --out "$dir/cookies" >/dev/null 2>&1
      stop_server "$server_pid"
    fi
  done
  cookies=$dir/cookies
}

# Waits until the server PID, logging to LOG, accepts connections on PORT,
# for servers that do not say where they listen (see wait_for_server).
wait_until_accepting() {
  local port=$1 pid=$2 log=$3
  wait_for_server "$pid" "$log" accepts_on "$port"
}

# Prints a port between 20000 and 39999 that nothing on 127.0.0.1 accepts on.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    accepts_on "$p" || {
      echo "$p"
      return
    }
  done
}

# Stops the server PID and waits until it has exited.
stop_server() {
  local pid=$1 p kept=()
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${server_pids[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  server_pids=("${kept[@]}")
}

# Stops every server still running; for `trap … EXIT`.
stop_servers() {
  local p
  for p in "${server_pids[@]}"; do
    stop_server "$p"
  done
}

# Prints the resident memory of process PID, KiB.
rss_kib() {
  awk '/VmRSS/ {print $2}' "/proc/$1/status"
}

# Sets $admin and $redis, the services of the multi-node scripts:
# PostgreSQL (PG_URL; each run creates and drops a database of its own) and
# Redis (REDIS_URL; each run uses a channel prefix of its own).
use_services() {
  admin=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
  redis=${REDIS_URL:-redis://127.0.0.1:6379}
}

# Creates the PostgreSQL database $2 beside the admin URL $1 and prints its
# URL; drop_database drops it again (for the exit trap).
create_database() {
  psql "$1" -qc "CREATE DATABASE $2" >&2
  echo "${1%/*}/$2"
}
drop_database() {
  psql "$1" -qc "DROP DATABASE IF EXISTS $2 WITH (FORCE)" || true
}

# Creates this run's own database $1 beside $admin and sets $url to it; on
# exit the servers are stopped and the database dropped.
with_bench_database() {
  bench_db=$1
  url=$(create_database "$admin" "$bench_db")
  trap 'stop_servers; drop_database "$admin" "$bench_db"' EXIT
}

# Starts a Hearth node ($hearth) on the database $url with its limits off,
# logging to $1; further arguments are more flags. Sets $port and $pid.
start_node() {
  local log=$1 addr
  shift
  start_server "$log" "$hearth" --bind 127.0.0.1:0 --data-dir "$out" "${hearth_without_limits[@]}" \
    --database-url "$url" "$@"
  pid=$server_pid
  addr=$(wait_until_listening "$pid" "$log")
  port=${addr##*:}
}
