#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each): bash fuzz/run.sh [SECONDS]
# Needs cargo-fuzz (cargo install cargo-fuzz); uses RUSTC_BOOTSTRAP on a stable toolchain.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
export RUSTC_BOOTSTRAP=1
for t in $(ls fuzz_targets | sed 's/\.rs$//'); do
  mkdir -p corpus/$t
  echo "== $t ($secs s)" >&2
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 2>&1 |
    grep -E '^(#[0-9]+ *DONE|Done|==[0-9]+== ERROR|SUMMARY)' || true
done
