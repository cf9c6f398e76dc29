#!/usr/bin/env bash
# One-shot listing at scale (issue 16): `whalewatch ps --json` against peers, on Docker and
# Podman, with N alive containers, whole processes measured from outside in alternating rounds
# (benches/compare.py: median/p90 wall, CPU user+sys, peak RSS; ratios to the first peer).
#
#   bash benches/scale.sh [N ...]         # default: 50 200 1000
#
# Peers (built here; neither is in the library's dependency tree):
#   bollard         benches/peers/bollard: bollard 0.21 + tokio, list then all inspects at once
#   go-algorithm    the same peer with `serial`: list, then one inspect after another — the
#                   Go whalewatcher's algorithm
# and ours: `list` and `ready` (benches/peers/probe: DockerClient::list on a new client, and
# Watcher::new + wait_ready, as bare processes; WHALEWATCHER_INSPECT_CONNECTIONS and
# WHALEWATCHER_PIPELINE_DEPTH override the client's defaults), and the CLI's `ps --json`.
# The engine's CPU per run (its own and its reaped children's) is reported too.
# WHALEWATCHER_SCALE_ALSO="NAME=COMMAND" adds a command (URL in it: the engine's address).
# Engines: private dockerd and podman services started by tests/engines/up.sh under
# $WHALEWATCHER_SCALE_DIR (default /tmp/whalewatcher-scale), so the bench never disturbs the
# test engines; WHALEWATCHER_SCALE_ENGINES="docker podman" picks the engines, ROUNDS=11 the
# rounds. Containers carry the label whalewatcher.bench=scale; the engines are left running
# (tests/engines/down.sh with WHALEWATCHER_ENGINES_DIR=$WHALEWATCHER_SCALE_DIR stops them).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-50 200 1000}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})
ROUNDS=${ROUNDS:-11}
ENGINES=${WHALEWATCHER_SCALE_ENGINES:-docker podman}
export WHALEWATCHER_ENGINES_DIR=${WHALEWATCHER_SCALE_DIR:-/tmp/whalewatcher-scale}
LABEL=whalewatcher.bench=scale

eval "$(bash tests/engines/up.sh)"
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
echo "== building whalewatch (release) and the bollard peer" >&2
cargo build --quiet --release --example whalewatch
PEER_TARGET=${WHALEWATCHER_PEER_TARGET:-$TARGET/peers}
CARGO_TARGET_DIR=$PEER_TARGET cargo build --quiet --release \
  --manifest-path benches/peers/bollard/Cargo.toml
CARGO_TARGET_DIR=$PEER_TARGET cargo build --quiet --release \
  --manifest-path benches/peers/probe/Cargo.toml
PROBE=$PEER_TARGET/release/whalewatcher-probe
mkdir -p "$TARGET"
gcc -O2 -o "$TARGET/peakrss" benches/peakrss.c
export PEAKRSS=$TARGET/peakrss
WW=$TARGET/release/examples/whalewatch
PEER=$PEER_TARGET/release/whalewatcher-bollard-peer

cli() { # cli ENGINE ARGS...: the engine's own CLI on its private socket
  local e=$1; shift
  case $e in
    docker) docker -H "$WHALEWATCHER_DOCKER" "$@" ;;
    podman) CONTAINERS_CONF=$WHALEWATCHER_PODMAN_CONTAINERS_CONF \
      CONTAINERS_STORAGE_CONF=$WHALEWATCHER_PODMAN_STORAGE_CONF \
      podman --url "$WHALEWATCHER_PODMAN" "$@" ;;
  esac
}
url() { case $1 in docker) echo "$WHALEWATCHER_DOCKER" ;; podman) echo "$WHALEWATCHER_PODMAN" ;; esac; }
engine_pid() { case $1 in docker) echo "$WHALEWATCHER_DOCKERD_PID" ;; podman) echo "$WHALEWATCHER_PODMAN_PID" ;; esac; }

# scale_to ENGINE N: exactly N running containers with the bench label.
scale_to() {
  local e=$1 n=$2 have
  have=$(cli "$e" ps -q --filter "label=$LABEL" | wc -l)
  if [ "$have" -lt "$n" ]; then
    echo "   $e: starting $((n - have)) containers" >&2
    seq $((n - have)) | xargs -P 4 -I{} bash -c "$(declare -f cli); cli $e run -d --network none \
      --label $LABEL --label com.docker.compose.project=scale $WHALEWATCHER_IMAGE >/dev/null"
  elif [ "$have" -gt "$n" ]; then
    # (podman rm -f waits 10 s per container for the sleeping PID 1 to mind SIGTERM: -t 0;
    # 2 at a time: dockerd 20.10's libnetwork deadlocked on a `docker rm -f` of 50 among 1,000)
    cli "$e" ps -q --filter "label=$LABEL" | tail -n $((have - n)) | xargs -n 2 \
      bash -c "$(declare -f cli); cli $e rm -f $([ "$e" = podman ] && echo -t 0) \"\$@\" >/dev/null" _
  fi
  have=$(cli "$e" ps -q --filter "label=$LABEL" | wc -l)
  [ "$have" -eq "$n" ] || { echo "$e: $have containers instead of $n" >&2; exit 1; }
}
export WHALEWATCHER_DOCKER WHALEWATCHER_PODMAN WHALEWATCHER_PODMAN_CONTAINERS_CONF \
  WHALEWATCHER_PODMAN_STORAGE_CONF

echo "== $(nproc) cores; $ROUNDS alternating rounds per size; $(date -u +%FT%TZ)"
for e in $ENGINES; do
  u=$(url "$e")
  for n in "${SIZES[@]}"; do
    scale_to "$e" "$n"
    echo "== $e, $n containers: ps (list + inspect every container); $(uptime)"
    ENGINE_PID=$(engine_pid "$e") python3 benches/compare.py "$ROUNDS" \
      "bollard=$PEER $u" \
      "go-algorithm=$PEER $u serial" \
      "list=$PROBE $u list" \
      "list-no-info=env WHALEWATCHER_NO_IDENTITY=1 $PROBE $u list" \
      "ready=$PROBE $u ready" \
      "whalewatch-ps=$WW --docker $u ps --json" \
      ${WHALEWATCHER_SCALE_ALSO:+"${WHALEWATCHER_SCALE_ALSO//URL/$u}"}
  done
done
