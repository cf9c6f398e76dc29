#!/usr/bin/env bash
# Runs all tests against real engines: starts dockerd, podman and containerd (+CRI) with
# tests/engines/up.sh (installing them with apt-get when missing), then cargo test with
# WHALEWATCHER_REQUIRE_ENGINES=1 so that no engine test can silently skip.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash tests/engines/up.sh)"
export WHALEWATCHER_REQUIRE_ENGINES=1
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
for f in docker containerd cri serde; do
  cargo clippy --quiet --all-targets --no-default-features --features "$f" -- -D warnings
done
cargo test --all-targets
cargo test --doc
cargo bench --no-run --quiet
