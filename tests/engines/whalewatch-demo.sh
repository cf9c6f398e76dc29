#!/usr/bin/env bash
# The main job: start the local engines (dockerd, podman, containerd + CRI) with a few demo
# containers, then run the whalewatch example against all of them.
#   bash tests/engines/whalewatch-demo.sh [ps|events|watch|...]   (default: ps)
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(bash tests/engines/up.sh)"
bash tests/engines/demo.sh >&2
[ $# -gt 0 ] || set -- ps
exec cargo run --quiet --release --example whalewatch -- \
  --docker "$WHALEWATCHER_DOCKER" --docker "$WHALEWATCHER_PODMAN" \
  --containerd "$WHALEWATCHER_CONTAINERD" --cri "$WHALEWATCHER_CRI" "$@"
