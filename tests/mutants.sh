#!/usr/bin/env bash
# Mutation testing of the watcher core with cargo-mutants (crates.io).
#   bash tests/mutants.sh [FILE...]     default: src/watcher/{state,hub,health,reader}.rs,
#                                       src/portfolio/*.rs, src/fleet/merge.rs
# Installs cargo-mutants if missing. The tests run per mutant are the watcher's unit tables,
# the hub tests and the simulation (fewer seeds: WHALEWATCHER_SIM_SEEDS, default 300), plus
# the scripted-engine tests of tests/watcher_edges.rs (MUTANTS_LIB_ONLY=1: the unit tests
# and the simulation only). Results land in ${MUTANTS_OUT:-/tmp/whalewatcher-mutants}.
# cargo-mutants builds a copy of the tree: do not point CARGO_TARGET_DIR at a target dir
# that the worktree itself uses.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
files=("$@")
[ ${#files[@]} -eq 0 ] && files=(src/watcher/state.rs src/watcher/hub.rs src/watcher/health.rs
    src/watcher/reader.rs src/portfolio/mod.rs src/portfolio/project.rs src/portfolio/sharded.rs
    src/fleet/merge.rs)
args=()
for f in "${files[@]}"; do args+=(--file "$f"); done
export WHALEWATCHER_SIM_SEEDS="${WHALEWATCHER_SIM_SEEDS:-300}"
unset CARGO_TARGET_DIR
# No debug info: it only slows down the one build per mutant.
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
# -C: the targets go to the build as well as the test run (trailing args reach only the
# test run, and the build would compile every integration test for every mutant).
tests=(-C --lib -C --test -C watcher_edges)
[ "${MUTANTS_LIB_ONLY:-}" = 1 ] && tests=(-C --lib)
cargo mutants --no-shuffle -j 1 --timeout "${MUTANTS_TIMEOUT:-120}" --output "${MUTANTS_OUT:-/tmp/whalewatcher-mutants}" \
    "${tests[@]}" "${args[@]}"
