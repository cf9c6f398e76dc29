#!/usr/bin/env bash
# Issue 16's real-engine figures at 1,000 containers, on private engines (never the test
# engines):
#
#   bash benches/scale_real.sh [PART ...]     # PARTS: docker burst cri (default: all three)
#   bash benches/scale_real.sh down           # stops the private engines
#
#   docker  N containers on dockerd (started 4 at a time by benches/scale.sh, removed 2 at a
#           time: dockerd 20.10 deadlocked in its network code when 200, and once 50, were
#           removed at once): one-shot `whalewatch ps --json` vs the bollard peer and the Go algorithm
#           (benches/scale.sh), then time to Ready as whole processes — `whalewatch events
#           --count N` exits once it has printed the N synthetic starts of Ready — against
#           the same peers, in alternating rounds (benches/compare.py).
#   burst   `cargo bench --bench burst`: a `docker kill` of BURST_KILL containers at once and
#           a `docker run -d` of BURST_RUN in parallel: engine timestamp → subscriber
#           latencies and the time until the portfolio equals the truth, next to a raw
#           `GET /events` stream from the same run.
#   cri     `cargo bench --bench cri_scale`: CRI_N containers in pods of 20 through the CRI
#           API on containerd: time to Ready per mode and containerd's CPU seconds per
#           minute (idle, relist, native events).
#
# Env: WHALEWATCHER_SCALE_DIR (default /tmp/whalewatcher-scale-real: the engines' directory,
# tests/engines/up.sh with WHALEWATCHER_ENGINES_DIR), WHALEWATCHER_SCALE_N (1000),
# WHALEWATCHER_BURST_KILL (1000), WHALEWATCHER_BURST_RUN (200), WHALEWATCHER_CRI_SCALE_N
# (1000), WHALEWATCHER_CRI_SCALE_CPU_SECS (60), ROUNDS (11). Every figure is printed with the
# date and the machine's load; the containers of each part are removed at its end.
set -euo pipefail
cd "$(dirname "$0")/.."
export WHALEWATCHER_SCALE_DIR=${WHALEWATCHER_SCALE_DIR:-/tmp/whalewatcher-scale-real}
export WHALEWATCHER_ENGINES_DIR=$WHALEWATCHER_SCALE_DIR
PARTS=${*:-docker burst cri}
N=${WHALEWATCHER_SCALE_N:-1000}
ROUNDS=${ROUNDS:-11}
export WHALEWATCHER_BURST_KILL=${WHALEWATCHER_BURST_KILL:-1000}
export WHALEWATCHER_BURST_RUN=${WHALEWATCHER_BURST_RUN:-200}
export WHALEWATCHER_CRI_SCALE_N=${WHALEWATCHER_CRI_SCALE_N:-1000}
export WHALEWATCHER_CRI_SCALE_CPU_SECS=${WHALEWATCHER_CRI_SCALE_CPU_SECS:-60}

if [ "$PARTS" = down ]; then
  exec bash tests/engines/down.sh
fi
eval "$(bash tests/engines/up.sh)"
stamp() { echo "== $*: $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(free -g | awk '/^Mem:/ { print $7 }') GiB available"; }
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

for part in $PARTS; do
  case $part in
    docker)
      stamp "docker, $N containers"
      WHALEWATCHER_SCALE_ENGINES=docker ROUNDS=$ROUNDS bash benches/scale.sh "$N"
      PEER=${WHALEWATCHER_PEER_TARGET:-$TARGET/peers}/release/whalewatcher-bollard-peer
      export PEAKRSS=$TARGET/peakrss
      stamp "docker, $N containers: time to Ready (whole processes)"
      python3 benches/compare.py "$ROUNDS" \
        "bollard=$PEER $WHALEWATCHER_DOCKER" \
        "go-algorithm=$PEER $WHALEWATCHER_DOCKER serial" \
        "whalewatch-ready=$TARGET/release/examples/whalewatch --docker $WHALEWATCHER_DOCKER events --count $N"
      # 2 removals at a time: a `docker rm -f` of 50 (50 concurrent removals) deadlocked
      # dockerd 20.10 in libnetwork with 1,000 containers (goroutine dump: sandbox and
      # endpoint deletes waiting on the network store's locks).
      stamp "docker: removing the $N containers, 2 at a time"
      docker -H "$WHALEWATCHER_DOCKER" ps -aq --filter label=whalewatcher.bench=scale |
        xargs -r -P 2 -I{} curl -sf -o /dev/null --unix-socket "${WHALEWATCHER_DOCKER#unix://}" \
          -X DELETE "http://docker/containers/{}?force=1"
      ;;
    burst)
      stamp "bursts: kill $WHALEWATCHER_BURST_KILL, run $WHALEWATCHER_BURST_RUN"
      cargo bench --bench burst
      ;;
    cri)
      stamp "containerd/CRI, $WHALEWATCHER_CRI_SCALE_N containers"
      cargo bench --bench cri_scale
      ;;
    *) echo "unknown part '$part' (docker, burst, cri, down)" >&2; exit 2 ;;
  esac
done
stamp done
