#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each): bash fuzz/run.sh [SECONDS]
# Needs cargo-fuzz (cargo install cargo-fuzz); uses RUSTC_BOOTSTRAP on a stable toolchain.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
export RUSTC_BOOTSTRAP=1
failed=()
for t in $(ls fuzz_targets | sed 's/\.rs$//'); do
  mkdir -p corpus/$t
  echo "== $t ($secs s)" >&2
  log=$(mktemp)
  if cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
      -max_len=65536 >"$log" 2>&1; then
    grep -E '^Done' "$log" || true
  else
    # a crash, leak or timeout: show what libFuzzer said (panic message, input file)
    grep -vE '^#[0-9]+' "$log" | tail -40
    failed+=("$t")
  fi
  rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets with findings: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
