#!/usr/bin/env bash
# Starts dockerd, the podman API service and a standalone containerd (with CRI) under
# $WHALEWATCHER_ENGINES_DIR (default /tmp/whalewatcher-engines), imports busybox images,
# writes $DIR/env and prints its export lines on stdout. Idempotent: running pieces are kept.
# Progress goes to stderr, so `eval "$(bash tests/engines/up.sh)"` works.
set -euo pipefail

DIR=${WHALEWATCHER_ENGINES_DIR:-/tmp/whalewatcher-engines}
WAIT=${WHALEWATCHER_ENGINES_WAIT:-60}
log() { echo "up.sh: $*" >&2; }
die() { echo "up.sh: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# --- packages ---------------------------------------------------------------
need=()
for pair in dockerd:docker.io containerd:containerd podman:podman runc:runc \
    busybox:busybox-static ip:iproute2 python3:python3 curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p "$DIR"/{docker,podman,containerd,images}
DIR=$(cd "$DIR" && pwd)
DSOCK=$DIR/docker/docker.sock
PSOCK=$DIR/podman/podman.sock
CSOCK=$DIR/containerd/containerd.sock

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pidof_file() { [ -s "$1" ] && cat "$1" || true; }
# wait_for NAME LOG CMD...: polls CMD every 0.2 s for up to $WAIT s.
wait_for() {
  local name=$1 logf=$2; shift 2
  local end=$((SECONDS + WAIT))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "---- tail of $logf ----" >&2; tail -n 40 "$logf" >&2 || true
      die "$name did not come up within ${WAIT}s"
    fi
    sleep 0.2
  done
}

# --- busybox rootfs tarball ---------------------------------------------------
TARBALL=$DIR/images/busybox.tar
if [ ! -s "$TARBALL" ]; then
  log "building busybox rootfs tarball"
  BB=$(command -v busybox)
  R=$DIR/images/rootfs
  rm -rf "$R"; mkdir -p "$R"/{bin,etc,proc,sys,dev,tmp,root}
  cp "$BB" "$R/bin/busybox"
  for a in sh sleep true false cat echo ls ps kill mkdir rm env id hostname sed grep wc head tail top; do
    ln -sf busybox "$R/bin/$a"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
  echo 'root:x:0:' >"$R/etc/group"
  tar -C "$R" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
fi

# --- dockerd ------------------------------------------------------------------
docker_ok() { curl -sf --unix-socket "$DSOCK" http://d/_ping | grep -q OK; }
DPID=$(pidof_file "$DIR/docker/docker.pid")
if ! alive "$DPID" || ! docker_ok; then
  alive "$DPID" && { log "dockerd $DPID not answering, restarting"; kill "$DPID"; sleep 1; }
  log "starting dockerd"
  rm -f "$DIR/docker/docker.pid" "$DSOCK"
  # dockerd manages its own containerd; its socket lives under --exec-root
  # ($DIR/docker/exec/containerd/containerd.sock), so it never collides with ours.
  setsid dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs \
    -H "unix://$DSOCK" --data-root "$DIR/docker/data" --exec-root "$DIR/docker/exec" \
    --pidfile "$DIR/docker/docker.pid" >>"$DIR/docker/log" 2>&1 </dev/null &
  wait_for dockerd "$DIR/docker/log" docker_ok
  DPID=$(pidof_file "$DIR/docker/docker.pid")
fi
D="docker -H unix://$DSOCK"
if ! $D image inspect busybox:local >/dev/null 2>&1; then
  log "docker import busybox:local"
  $D import "$TARBALL" busybox:local >/dev/null
fi
if ! $D image inspect busybox:sleep >/dev/null 2>&1; then
  log "docker import busybox:sleep"
  $D import --change 'ENTRYPOINT ["/bin/sleep","2147483647"]' "$TARBALL" busybox:sleep >/dev/null
fi

# --- podman -------------------------------------------------------------------
cat >"$DIR/podman/storage.conf" <<EOT
[storage]
driver = "vfs"
runroot = "$DIR/podman/run"
graphroot = "$DIR/podman/storage"
EOT
cat >"$DIR/podman/containers.conf" <<EOT
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$DIR/podman/events.log"
tmp_dir = "$DIR/podman/tmp"
[network]
network_config_dir = "$DIR/podman/net"
EOT
mkdir -p "$DIR/podman/net" "$DIR/podman/tmp"
export CONTAINERS_STORAGE_CONF=$DIR/podman/storage.conf CONTAINERS_CONF=$DIR/podman/containers.conf
podman_ok() { curl -sf --unix-socket "$PSOCK" http://d/_ping | grep -q OK; }
PPID_=$(pidof_file "$DIR/podman/podman.pid")
if ! alive "$PPID_" || ! podman_ok; then
  alive "$PPID_" && { log "podman $PPID_ not answering, restarting"; kill "$PPID_"; sleep 1; }
  log "starting podman system service"
  rm -f "$PSOCK"
  setsid podman system service --time=0 "unix://$PSOCK" >>"$DIR/podman/log" 2>&1 </dev/null &
  PPID_=$!
  echo "$PPID_" >"$DIR/podman/podman.pid"
  wait_for podman "$DIR/podman/log" podman_ok
fi
P="podman --url unix://$PSOCK"
if ! $P image exists busybox:local 2>/dev/null; then
  log "podman import busybox:local"
  $P import "$TARBALL" busybox:local >/dev/null
fi
if ! $P image exists busybox:sleep 2>/dev/null; then
  log "podman import busybox:sleep"
  $P import --change 'ENTRYPOINT ["/bin/sleep","2147483647"]' "$TARBALL" busybox:sleep >/dev/null
fi

# --- containerd (standalone, CRI) ---------------------------------------------
mkdir -p "$DIR/containerd"/{root,state,runc,cni-empty,opt}
CFG=$DIR/containerd/config.toml
if [ ! -s "$CFG" ]; then
  log "writing containerd config"
  EDIT=$(cat <<'PY'
import re, sys
d, sock = sys.argv[1], sys.argv[2]
s = sys.stdin.read()
def sub(pat, rep, count=1):
    global s
    s2, n = re.subn(pat, rep, s, count=count, flags=re.M)
    if n == 0:
        sys.exit("containerd config: pattern not found: " + pat)
    s = s2
sub(r'^root = .*$', f'root = "{d}/root"')
sub(r'^state = .*$', f'state = "{d}/state"')
sub(r'^(\s*)address = "/run/containerd/containerd.sock"', rf'\1address = "{sock}"')
sub(r'^(\[ttrpc\]\n\s*address = )""', rf'\1"{sock}.ttrpc"')
sub(r'^(\s*)restrict_oom_score_adj = false', r'\1restrict_oom_score_adj = true')
sub(r'^(\s*)conf_dir = .*$', rf'\1conf_dir = "{d}/cni-empty"')
sub(r'^(\s*)sandbox_image = .*$', r'\1sandbox_image = "registry.k8s.io/pause:3.6"')
sub(r'^(\s*)netns_mounts_under_state_dir = false', r'\1netns_mounts_under_state_dir = true')
sub(r'^(\s*\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.runc\.options\]\n(?:.*\n)*?\s*)Root = ""',
    rf'\1Root = "{d}/runc"')
sub(r'^(\s*)path = "/opt/containerd"', rf'\1path = "{d}/opt"')
print(s, end="")
PY
)
  containerd config default | python3 -c "$EDIT" "$DIR/containerd" "$CSOCK" >"$CFG.tmp"
  mv "$CFG.tmp" "$CFG"
fi
C="ctr -a $CSOCK"
containerd_ok() { $C version; }
CPID=$(pidof_file "$DIR/containerd/containerd.pid")
if ! alive "$CPID" || ! containerd_ok >/dev/null 2>&1; then
  alive "$CPID" && { log "containerd $CPID not answering, restarting"; kill "$CPID"; sleep 1; }
  log "starting containerd"
  rm -f "$CSOCK" "$CSOCK.ttrpc"
  setsid containerd --config "$CFG" >>"$DIR/containerd/log" 2>&1 </dev/null &
  CPID=$!
  echo "$CPID" >"$DIR/containerd/containerd.pid"
  wait_for containerd "$DIR/containerd/log" containerd_ok
  grep -q 'io.containerd.grpc.v1.cri' "$DIR/containerd/log" || log "WARNING: no CRI plugin line in containerd log"
fi
CTR_IMAGE=docker.io/library/busybox:sleep
PLAIN_CTR_IMAGE=docker.io/library/busybox:local
SANDBOX_IMAGE=registry.k8s.io/pause:3.6
import_ctr() {
  local ns=$1
  if ! $C -n "$ns" images check "name==$CTR_IMAGE" 2>/dev/null | grep -q complete \
     || ! $C -n "$ns" images check "name==$PLAIN_CTR_IMAGE" 2>/dev/null | grep -q complete; then
    log "importing images into containerd namespace $ns"
    $D save busybox:sleep busybox:local | $C -n "$ns" images import - >/dev/null
  fi
}
import_ctr default
import_ctr k8s.io
if ! $C -n k8s.io images ls -q | grep -qx "$SANDBOX_IMAGE"; then
  $C -n k8s.io images tag "$CTR_IMAGE" "$SANDBOX_IMAGE" >/dev/null
fi
DPID=$(pidof_file "$DIR/docker/docker.pid")
ENV="export WHALEWATCHER_ENGINES_DIR=$DIR
export WHALEWATCHER_DOCKER=unix://$DSOCK
export WHALEWATCHER_PODMAN=unix://$PSOCK
export WHALEWATCHER_CONTAINERD=$CSOCK
export WHALEWATCHER_CRI=$CSOCK
export WHALEWATCHER_IMAGE=busybox:sleep
export WHALEWATCHER_PLAIN_IMAGE=busybox:local
export WHALEWATCHER_CTR_IMAGE=$CTR_IMAGE
export WHALEWATCHER_CTR_PLAIN_IMAGE=$PLAIN_CTR_IMAGE
export WHALEWATCHER_CRI_IMAGE=$CTR_IMAGE
export WHALEWATCHER_CRI_SANDBOX_IMAGE=$SANDBOX_IMAGE
export WHALEWATCHER_DOCKERD_PID=$DPID
export WHALEWATCHER_PODMAN_PID=$PPID_
export WHALEWATCHER_CONTAINERD_PID=$CPID
export WHALEWATCHER_CTR_RUNC_ROOT=$DIR/containerd/runc
export WHALEWATCHER_PODMAN_CONTAINERS_CONF=$DIR/podman/containers.conf
export WHALEWATCHER_PODMAN_STORAGE_CONF=$DIR/podman/storage.conf"
echo "$ENV" >"$DIR/env.tmp" && mv "$DIR/env.tmp" "$DIR/env"
log "engines up; env in $DIR/env"
echo "$ENV"
