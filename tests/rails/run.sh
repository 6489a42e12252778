#!/usr/bin/env bash
# Hearth and a real Rails Action Cable server (Puma, Rails' Redis adapter) on
# one Redis: runs interop.rb against both, once with a channel prefix and
# once without. Needs ruby-actioncable, ruby-redis and puma (.ci/run
# installs them), a Redis (REDIS_URL, default redis://127.0.0.1:6379) and
# the hearth binary (HEARTH_BIN, default target/debug/hearth).
#
#   tests/rails/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
hearth=${HEARTH_BIN:-$root/target/debug/hearth}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { ruby -rsocket -e 'puts TCPServer.new("127.0.0.1", 0).addr[1]'; }

# Waits until $1 answers HTTP (any status).
wait_http() {
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2
  return 1
}

run_case() {
  local prefix=$1 label=$2 port hearth_port log
  echo "== $label" >&2
  export CHANNEL_PREFIX=$prefix
  port=$(free_port)
  (cd "$here" && exec puma --bind "tcp://127.0.0.1:$port" --threads 2:2 --environment production --quiet config.ru) \
    >"$work/puma-$label.log" 2>&1 &
  pids+=($!)
  log="$work/hearth-$label.log"
  "$hearth" --bind 127.0.0.1:0 --data-dir "$work/data-$label" --redis-url "$REDIS_URL" \
    --redis-channel-prefix "$prefix" 2>"$log" &
  pids+=($!)
  hearth_port=""
  for _ in $(seq 1 100); do
    hearth_port=$(grep -o 'listening addr=[0-9.]*:[0-9]*' "$log" | head -1 | sed 's/.*://' || true)
    [ -n "$hearth_port" ] && break
    sleep 0.1
  done
  [ -n "$hearth_port" ] || { cat "$log" >&2; exit 1; }
  wait_http "http://127.0.0.1:$port/cable"
  wait_http "http://127.0.0.1:$hearth_port/ready"
  if ! HEARTH_URL="http://127.0.0.1:$hearth_port" RAILS_URL="http://127.0.0.1:$port" \
    timeout 60 ruby "$here/interop.rb"; then
    echo "-- puma log" >&2; cat "$work/puma-$label.log" >&2
    echo "-- hearth log" >&2; cat "$log" >&2
    exit 1
  fi
}

# A prefix of its own, so a shared Redis carries no one else's rooms into it.
run_case "hearth-rails-$$" "with channel_prefix"
# No prefix: bare chatrooms:<id>. On a shared Redis another test could use
# the same room id, so this case runs on a Redis of its own when it can.
if command -v redis-server >/dev/null; then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  pids+=($!)
  export REDIS_URL="redis://127.0.0.1:$redis_port"
  for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
fi
run_case "" "without channel_prefix"
