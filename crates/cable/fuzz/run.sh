#!/usr/bin/env bash
# Fuzzes every target for N seconds each (default 20), from a scratch copy of
# its seed corpus so the checkout gains no files, and fails if any crashed.
# A crashing input is kept in artifacts/<target>/ (not committed).
#   crates/cable/fuzz/run.sh [seconds-per-target]
set -euo pipefail
seconds=${1:-20}
cd "$(dirname "$0")"
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); this lets the
# stable toolchain accept them.
export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# Builds into fuzz/target, apart from the workspace's target/.
cargo fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $(cargo fuzz list); do
  cp -r "corpus/$target" "$scratch/$target"
  log="$scratch/$target.log"
  start=$SECONDS
  if cargo fuzz run "$target" "$scratch/$target" -- \
      -max_total_time="$seconds" -max_len=4096 -dict=cable.dict -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASHED
    failed+=("$target")
    # The panic, then the input as libFuzzer wrote it (hex, text, file, base64).
    grep -m1 -A1 'panicked at' "$log" || tail -n 40 "$log"
    sed -n '/^MS: /,/^Base64: /p' "$log"
  fi
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "$target: $result, ${executions:-?} executions in $((SECONDS - start))s"
done

if ((${#failed[@]})); then
  echo "crashed: ${failed[*]} (inputs in $(pwd)/artifacts/)" >&2
  exit 1
fi
