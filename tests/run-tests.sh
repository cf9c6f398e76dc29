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
# --all-targets builds the library with `unstable` (the self dev-dependency); --lib checks
# it as dependents get it, with the wire layers private.
cargo clippy --quiet --lib -- -D warnings
for f in docker containerd cri serde; do
  cargo clippy --quiet --all-targets --no-default-features --features "$f" -- -D warnings
  cargo clippy --quiet --lib --no-default-features --features "$f" -- -D warnings
done
cargo test --all-targets
# The C ABI (feature ffi): the shared and static libraries, the header check, the ABI tests,
# and the C (gcc, under valgrind) and Python (ctypes) examples against the real dockerd.
for tool in gcc valgrind; do
  command -v "$tool" >/dev/null || apt-get install -y "$tool" || { apt-get update && apt-get install -y "$tool"; }
done
cargo clippy --all-targets --features ffi -- -D warnings
cargo clippy --quiet --lib --features ffi -- -D warnings
cargo rustc --lib --features ffi --crate-type cdylib,staticlib
export WHALEWATCHER_FFI_LIB_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug"
cargo test --features ffi --lib ffi::
cargo test --features ffi --test ffi --test ffi_header --test ffi_examples
cargo test --doc
cargo bench --no-run --quiet
