#!/usr/bin/env bash
# Creates a few demo containers on the engines from up.sh (removing earlier ones first):
# docker: shop-web-1 and shop-db-1 (compose project "shop"), blog-web-1 (project "blog",
# paused), standalone "lonely"; podman: "podman-demo"; containerd ns default: "ctr-demo"
# with label nerdctl/name=ctr-demo.
set -euo pipefail
DIR=${WHALEWATCHER_ENGINES_DIR:-/tmp/whalewatcher-engines}
[ -s "$DIR/env" ] || { echo "demo.sh: $DIR/env missing: run tests/engines/up.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
source "$DIR/env"
D="docker -H $WHALEWATCHER_DOCKER"
P="podman --url $WHALEWATCHER_PODMAN"
C="ctr -a $WHALEWATCHER_CONTAINERD -n default"

$D rm -f shop-web-1 shop-db-1 blog-web-1 lonely >/dev/null 2>&1 || true
drun() { # project name service
  $D run -d --network none --name "$2" \
    --label com.docker.compose.project="$1" --label com.docker.compose.service="$3" \
    "$WHALEWATCHER_IMAGE" >/dev/null
}
drun shop shop-web-1 web
drun shop shop-db-1 db
drun blog blog-web-1 web
$D run -d --network none --name lonely "$WHALEWATCHER_IMAGE" >/dev/null
$D pause blog-web-1 >/dev/null

$P rm -f podman-demo >/dev/null 2>&1 || true
$P run -d --name podman-demo "$WHALEWATCHER_IMAGE" >/dev/null

if $C c info ctr-demo >/dev/null 2>&1; then
  $C tasks kill -s KILL ctr-demo >/dev/null 2>&1 || true
  for _ in $(seq 50); do
    $C tasks ls -q 2>/dev/null | grep -qx ctr-demo || break
    $C tasks rm -f ctr-demo >/dev/null 2>&1 || true
    sleep 0.1
  done
  $C c rm ctr-demo >/dev/null
fi
$C run -d --runc-root "$WHALEWATCHER_ENGINES_DIR/containerd/runc" --label nerdctl/name=ctr-demo "$WHALEWATCHER_CTR_IMAGE" ctr-demo >/dev/null

echo "docker:" >&2
$D ps -a --format '  {{.Names}}\t{{.Status}}\t{{.Label "com.docker.compose.project"}}' >&2
echo "podman:" >&2
$P ps -a --format '  {{.Names}}\t{{.Status}}' >&2
echo "containerd (ns default):" >&2
$C tasks ls | sed 's/^/  /' >&2
