#!/usr/bin/env bash
# Runs all tests against real engines: starts dockerd, podman and containerd (+CRI) with
# tests/engines/up.sh (installing them with apt-get when missing), then cargo test with
# WHALEWATCHER_REQUIRE_ENGINES=1 so that no engine test can silently skip.
#
# Engine generations: WHALEWATCHER_GENERATIONS (default "host trixie"). "host" is the full
# run below against the host's engines (Debian 12); every other generation (trixie = Debian
# 13, sid = Debian unstable; engines from a debootstrapped chroot, see tests/engines/up.sh)
# then runs the real-engine suites, $GENERATION_SUITES. The whole matrix:
#   WHALEWATCHER_GENERATIONS="host trixie sid" bash tests/run-tests.sh
# Only the newer generations' suites: WHALEWATCHER_GENERATIONS="trixie sid".
set -euo pipefail
cd "$(dirname "$0")/.."
GENERATIONS=${WHALEWATCHER_GENERATIONS:-host trixie}
# Disk: full debug info and incremental state made target/ 12 GiB (5.9 GiB incremental,
# 4.9 GiB test binaries with DWARF); a CI machine with less free disk than that killed the
# linker with SIGBUS. Line tables keep backtraces with file:line; 1.4 GiB in all.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
df -h . "${TMPDIR:-/tmp}" >&2 || true
# The test binaries that talk to real engines: ps truth (docker, podman, containerd,
# *_watcher, cli), churn (docker_watcher, containerd_churn, load), events with exit codes
# and OOM (docker_watcher, containerd, containerd_watcher, cli), engine restarts
# (containerd_restart, docker_watcher, multi), faults, discovery (discover), CRI pods (cri).
GENERATION_SUITES=${WHALEWATCHER_GENERATION_SUITES:-docker podman docker_watcher cli load \
  leaks_docker faults_docker multi discover containerd grpc_containerd containerd_watcher \
  containerd_churn containerd_restart containerd_exits faults_containerd cri cri_exits \
  cri_faults}
# Suites to leave out of the newer generations' runs (none: the CRI client works on
# containerd 1.6, 1.7 and 2.x, issue 14 part 2).
GENERATION_SKIP=${WHALEWATCHER_GENERATION_SKIP-}
TIMES=()
started=$SECONDS

run_generation() { # GEN: the real-engine suites against generation GEN, in a subshell
  local gen=$1 t0=$SECONDS t1 t2 args=() s no_cri=()
  bash tests/engines/up.sh "$gen" --chroot-only
  t1=$SECONDS
  for s in $GENERATION_SUITES; do
    case " $GENERATION_SKIP " in *" $s "*) continue ;; esac
    case "$s ${GENERATION_SKIP}" in "cli "*cri*) no_cri+=(--test cli); continue ;; esac
    args+=(--test "$s")
  done
  (
    eval "$(bash tests/engines/up.sh "$gen")"
    export WHALEWATCHER_REQUIRE_ENGINES=1
    t2=$SECONDS
    echo "run-tests.sh: generation $gen: ${args[*]} ${no_cri[*]}" >&2
    cargo test --no-fail-fast "${args[@]}"
    [ ${#no_cri[@]} = 0 ] || WHALEWATCHER_CRI= cargo test --no-fail-fast "${no_cri[@]}"
    echo "$((t2 - t1)) $((SECONDS - t2))" >"${TMPDIR:-/tmp}/ww-gen-times.$$"
  )
  read -r up tests <"${TMPDIR:-/tmp}/ww-gen-times.$$"
  rm -f "${TMPDIR:-/tmp}/ww-gen-times.$$"
  TIMES+=("$gen: chroot $((t1 - t0)) s, engines up $up s, tests $tests s")
}

case " $GENERATIONS " in
  *" host "*) ;;
  *)
    for gen in $GENERATIONS; do run_generation "$gen"; done
    printf 'run-tests.sh: %s\n' "${TIMES[@]}" >&2
    exit 0 ;;
esac
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
TIMES+=("host: full run $((SECONDS - started)) s")

for gen in $GENERATIONS; do
  [ "$gen" = host ] || run_generation "$gen"
done
printf 'run-tests.sh: %s\n' "${TIMES[@]}" >&2
