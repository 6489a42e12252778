#!/usr/bin/env bash
# Starts the Rails Action Cable peer (config.ru beside this script) with Puma
# on 127.0.0.1:PORT (default 3300), in the foreground. Installs Debian's
# ruby-actioncable and puma first if they are missing.
#
#   bench/peers/rails/run.sh 3300
#   hearth-bench fanout --app plain --server http://127.0.0.1:3300 --clients 1000
#
# One Puma process (one Ruby VM, so one core at a time), 5 threads, Action
# Cable's own worker pool of 4 and the async adapter: Rails' defaults for a
# single-process Action Cable.
set -euo pipefail
port=${1:-3300}
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v puma >/dev/null || ! ruby -e 'require "action_cable"' 2>/dev/null; then
  echo "installing ruby-actioncable and puma…" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ruby-actioncable puma >/dev/null
fi

cd "$here"
exec puma --bind "tcp://127.0.0.1:$port" --threads 5:5 --environment production config.ru
