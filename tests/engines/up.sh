#!/usr/bin/env bash
# Starts dockerd, the podman API service and a standalone containerd (with CRI) of one engine
# GENERATION, imports busybox images, writes $DIR/env and prints its export lines on stdout.
# Idempotent: running pieces are kept. Progress goes to stderr, so
# `eval "$(bash tests/engines/up.sh [GEN])"` works.
#
#   GEN=host (default): the host's packages (Debian 12: docker.io 20.10, podman 4.3,
#       containerd 1.6); DIR=${WHALEWATCHER_ENGINES_DIR:-/tmp/whalewatcher-engines}.
#   GEN=trixie | sid: the engines of Debian 13 / Debian unstable, run from a debootstrapped
#       chroot (cached in ${WHALEWATCHER_CHROOTS:-/var/cache/whalewatcher/chroots}/GEN and
#       reused) on private sockets under DIR=/tmp/whalewatcher-engines-GEN, which the host
#       dials by their usual path (the host's /tmp is bind-mounted at the chroot's /tmp).
#       $DIR/bin holds docker, dockerd, podman, containerd, ctr and runc wrappers that run the
#       chroot's binaries; $DIR/env puts that dir first in PATH, so tests that call the CLIs
#       drive the generation's own ones. `up.sh GEN --chroot-only` only builds the chroot.
set -euo pipefail

GEN=${1:-${WHALEWATCHER_GENERATION:-host}}
CHROOT_ONLY=0 # `up.sh GEN --chroot-only`: build (or find) the cached chroot, start nothing
[ "${2:-}" = --chroot-only ] && CHROOT_ONLY=1
WAIT=${WHALEWATCHER_ENGINES_WAIT:-60}
log() { echo "up.sh[$GEN]: $*" >&2; }
die() { echo "up.sh[$GEN]: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
case "$GEN" in
  host) DIR=${WHALEWATCHER_ENGINES_DIR:-/tmp/whalewatcher-engines} ;;
  trixie | sid) DIR=/tmp/whalewatcher-engines-$GEN ;;
  *) die "unknown generation '$GEN' (host, trixie or sid)" ;;
esac

# --- host packages ------------------------------------------------------------
need=()
for pair in dockerd:docker.io containerd:containerd podman:podman runc:runc \
    busybox:busybox-static ip:iproute2 python3:python3 curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ "$GEN" = host ] || command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p "$DIR"/{docker,podman,containerd,images}
DIR=$(cd "$DIR" && pwd)
# Every daemon starts from a directory that outlives the caller: a podman service whose
# working directory was deleted (a removed clone) makes conmon fail with "Failed to get
# working directory", and every `podman run` then with "write child: broken pipe".
cd /
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
mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# --- the generation's chroot ----------------------------------------------------
DOCKERD_FLAGS=()
# The env's PATH line: without any generation's wrapper dir (so that sourcing one env after
# another in the same shell switches the CLIs too), then this generation's first.
# shellcheck disable=SC2016
ENV_PATH='export PATH=$(printf %s "$PATH" | awk -v RS=: -v ORS=: '"'"'!/^\/tmp\/whalewatcher-engines-[a-z]+\/bin$/'"'"' | sed '"'"'s/:$//'"'"')'
if [ "$GEN" != host ]; then
  CHROOTS=${WHALEWATCHER_CHROOTS:-/var/cache/whalewatcher/chroots}
  R=$CHROOTS/$GEN
  mkdir -p "$CHROOTS"
  if [ ! -e "$R/.whalewatcher-ready" ]; then
    (
      flock 9
      [ -e "$R/.whalewatcher-ready" ] && exit 0
      T=$R.tmp
      # A half-built chroot from an interrupted run: its mounts first, then the files.
      awk -v d="$T/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
      if [ ! -e "$T/.whalewatcher-debootstrapped" ]; then
        # The mirror the host's apt already uses (deb822 URIs: or one-line deb entries).
        MIRROR=${WHALEWATCHER_DEBIAN_MIRROR:-$(
          { sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
            sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
              /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
          } | awk '/debian/ && !/security/ && !m { m = $0 } END { print m ? m : "http://deb.debian.org/debian" }')}
        rm -rf "$T"
        log "debootstrap --variant=minbase $GEN from $MIRROR (~40 s)"
        debootstrap --variant=minbase "$GEN" "$T" "$MIRROR" >"$CHROOTS/$GEN.debootstrap.log" 2>&1 ||
          { tail -n 20 "$CHROOTS/$GEN.debootstrap.log" >&2; die "debootstrap failed"; }
        touch "$T/.whalewatcher-debootstrapped"
      fi
      log "installing the engines in the chroot (~20 s)"
      # No init script may start a daemon on install; sid's Release file may be expired.
      printf '#!/bin/sh\nexit 101\n' >"$T/usr/sbin/policy-rc.d"
      chmod +x "$T/usr/sbin/policy-rc.d"
      echo 'Acquire::Check-Valid-Until "false";' >"$T/etc/apt/apt.conf.d/99whalewatcher"
      mount -t proc proc "$T/proc"
      mount --bind /dev "$T/dev"
      ok=0
      {
        chroot "$T" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
          chroot "$T" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends docker.io docker-cli containerd podman runc crun \
            busybox-static procps &&
          chroot "$T" apt-get clean && ok=1
      } >"$CHROOTS/$GEN.install.log" 2>&1 || true
      umount "$T/dev" "$T/proc"
      [ $ok = 1 ] || { tail -n 20 "$CHROOTS/$GEN.install.log" >&2; die "apt-get install in the chroot failed"; }
      touch "$T/.whalewatcher-ready"
      mv "$T" "$R"
    ) 9>"$CHROOTS/$GEN.lock"
  fi
  [ $CHROOT_ONLY = 1 ] && { log "chroot ready: $R"; exit 0; }
  # Mounts. The chroot's / must itself be a mount point (else `docker import` fails with
  # "remount /, flags: 0x84000: invalid argument"); private, so nothing propagates back.
  if ! mounted "$R"; then
    log "mounting the chroot $R"
    mount --bind "$R" "$R"
    mount --make-private "$R"
  fi
  mounted "$R/proc" || mount -t proc proc "$R/proc"
  mounted "$R/sys" || { mount --rbind /sys "$R/sys" && mount --make-rslave "$R/sys"; }
  mounted "$R/dev" || { mount --rbind /dev "$R/dev" && mount --make-rslave "$R/dev"; }
  mounted "$R/run" || mount -t tmpfs -o mode=755 tmpfs "$R/run"
  # The host's /tmp (DIR, and the private dirs tests make for their own engines) at the
  # same path inside; private, so the chroot's container mounts stay below $R.
  mounted "$R/tmp" || { mount --bind /tmp "$R/tmp" && mount --make-private "$R/tmp"; }
  # Wrappers: the chroot's binaries under their usual names (exec: the PID stays the same).
  mkdir -p "$DIR/bin"
  for b in docker:/usr/bin/docker dockerd:/usr/sbin/dockerd podman:/usr/bin/podman \
      containerd:/usr/bin/containerd ctr:/usr/bin/ctr runc:/usr/sbin/runc; do
    name=${b%%:*} path=${b#*:}
    [ -x "$R$path" ] || path=$(chroot "$R" sh -c "command -v $name") || die "no $name in $R"
    extra=
    # dockerd 26+ wants ip6tables off too when iptables is off (no netfilter here).
    [ "$name" = dockerd ] && extra=' --ip6tables=false'
    # The chroot's own PATH: dockerd finds containerd by PATH, and this dir is visible inside.
    printf '#!/bin/sh\n# %s of the %s generation (%s)\nexport PODMAN_IGNORE_CGROUPSV1_WARNING=1\nexport PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexec chroot %s %s%s "$@"\n' \
      "$name" "$GEN" "$R" "$R" "$path" "$extra" >"$DIR/bin/$name.tmp"
    chmod +x "$DIR/bin/$name.tmp"
    mv "$DIR/bin/$name.tmp" "$DIR/bin/$name"
  done
  export PATH=$DIR/bin:$PATH
  ENV_PATH="$ENV_PATH
export PATH=$DIR/bin:\$PATH"
  DOCKERD_FLAGS=(--cgroup-parent "/whalewatcher-$GEN")
fi

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
    ${DOCKERD_FLAGS[@]+"${DOCKERD_FLAGS[@]}"} -H "unix://$DSOCK" --data-root "$DIR/docker/data" --exec-root "$DIR/docker/exec" \
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
$([ "$GEN" = host ] || echo 'runtime = "runc"  # crun 1.2x: "cgroups in hybrid mode not supported" here')
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
  # The keys of containerd 1.6/1.7 (config version 2) and of 2.x (version 3, where the CRI
  # runtime keys live in [plugins."io.containerd.cri.v1.runtime"] and the sandbox image is
  # [plugins."io.containerd.cri.v1.images".pinned_images] sandbox); 2.x quotes with '.
  EDIT=$(cat <<'PY'
import re, sys
d, sock = sys.argv[1], sys.argv[2]
s = sys.stdin.read()
Q = "[\"']"
def sub(pat, rep, count=1, optional=False):
    global s
    s2, n = re.subn(pat, rep, s, count=count, flags=re.M)
    if n == 0 and not optional:
        sys.exit("containerd config: pattern not found: " + pat)
    s = s2
sub(r'^root = .*$', f'root = "{d}/root"')
sub(r'^state = .*$', f'state = "{d}/state"')
sub(rf'^(\s*)address = {Q}/run/containerd/containerd.sock{Q}', rf'\1address = "{sock}"')
sub(rf'^(\[ttrpc\]\n\s*address = ){Q}{Q}', rf'\1"{sock}.ttrpc"')
sub(r'^(\s*)restrict_oom_score_adj = false', r'\1restrict_oom_score_adj = true')
sub(r'^(\s*)conf_dir = .*$', rf'\1conf_dir = "{d}/cni-empty"')
sub(r'^(\s*)(sandbox_image|sandbox) = .*$', r'\1\2 = "registry.k8s.io/pause:3.6"')
sub(r'^(\s*)netns_mounts_under_state_dir = false', r'\1netns_mounts_under_state_dir = true')
sub(rf'^(\s*\[plugins\.{Q}io\.containerd\.(?:grpc\.v1\.cri{Q}|cri\.v1\.runtime{Q})\.containerd\.runtimes\.runc\.options\]\n(?:.*\n)*?\s*)Root = {Q}{Q}',
    rf'\1Root = "{d}/runc"')
sub(rf'^(\s*)path = {Q}/opt/containerd{Q}', rf'\1path = "{d}/opt"')
# NRI (1.7+) would listen on /var/run/nri: off, as in 1.6.
sub(rf'^(\s*\[plugins\.{Q}io\.containerd\.nri\.v1\.nri{Q}\]\n\s*)disable = false', r'\1disable = true',
    optional=True)
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
    # --local where ctr has it: ctr 2.x's default import through the transfer service
    # fails now and then on a pipe ("short read"; its export to stdout ends early too).
    local l=
    $C images import --help 2>/dev/null | grep -q -- --local && l=--local
    $D save busybox:sleep busybox:local | $C -n "$ns" images import $l - >/dev/null
  fi
}
import_ctr default
import_ctr k8s.io
if ! $C -n k8s.io images ls -q | grep -qx "$SANDBOX_IMAGE"; then
  $C -n k8s.io images tag "$CTR_IMAGE" "$SANDBOX_IMAGE" >/dev/null
fi
DPID=$(pidof_file "$DIR/docker/docker.pid")
ENV="export WHALEWATCHER_GENERATION=$GEN
export WHALEWATCHER_ENGINES_DIR=$DIR
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
export WHALEWATCHER_PODMAN_STORAGE_CONF=$DIR/podman/storage.conf
$ENV_PATH"
echo "$ENV" >"$DIR/env.tmp" && mv "$DIR/env.tmp" "$DIR/env"
log "engines up; env in $DIR/env"
echo "$ENV"
