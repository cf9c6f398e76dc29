#!/usr/bin/env bash
# Stops the engines started by up.sh under $WHALEWATCHER_ENGINES_DIR (default
# /tmp/whalewatcher-engines), kills leftover shims/conmons/container processes that belong to
# that dir, unmounts everything mounted below it and removes it. Safe to run twice.
#
#   bash tests/engines/down.sh [GEN]    GEN = host (default), trixie or sid
#
# For trixie/sid (DIR=/tmp/whalewatcher-engines-GEN) it also unmounts the chroot's mounts
# (below ${WHALEWATCHER_CHROOTS:-/var/cache/whalewatcher/chroots}/GEN, deepest first); the
# chroot itself stays cached for the next up.sh.
set -uo pipefail
GEN=${1:-${WHALEWATCHER_GENERATION:-host}}
log() { echo "down.sh[$GEN]: $*" >&2; }
R=
case "$GEN" in
  host) DIR=${WHALEWATCHER_ENGINES_DIR:-/tmp/whalewatcher-engines} ;;
  trixie | sid)
    DIR=/tmp/whalewatcher-engines-$GEN
    R=${WHALEWATCHER_CHROOTS:-/var/cache/whalewatcher/chroots}/$GEN ;;
  *) log "unknown generation '$GEN' (host, trixie or sid)"; exit 2 ;;
esac
cd /
# The chroot's mounts, deepest first; the chroot's / (bound onto itself) last.
unmount_chroot() {
  [ -n "$R" ] || return 0
  local m
  for _ in 1 2 3; do
    mnts=$(awk -v d="$R/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    [ -n "$mnts" ] || break
    for m in $mnts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  while awk -v m="$R" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; do
    umount "$R" 2>/dev/null || umount -l "$R" || break
  done
}
if [ ! -d "$DIR" ]; then
  unmount_chroot
  log "$DIR does not exist: nothing to do"
  exit 0
fi
DIR=$(cd "$DIR" && pwd)
[ -x "$DIR/bin/docker" ] && export PATH=$DIR/bin:$PATH # the generation's CLIs

# Processes that belong to DIR: cmdline mentions DIR, or root/cwd lies below it.
belongs() {
  local p=$1
  tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "$DIR/" && return 0
  case "$(readlink "/proc/$p/root" 2>/dev/null)" in "$DIR"/*) return 0 ;; esac
  case "$(readlink "/proc/$p/cwd" 2>/dev/null)" in "$DIR"/*) return 0 ;; esac
  if [ -n "$R" ]; then # anything running in the chroot, or in its dockerd's cgroup parent
    case "$(readlink "/proc/$p/root" 2>/dev/null)" in "$R" | "$R"/*) return 0 ;; esac
  fi
  local id cg
  cg=$(cat "/proc/$p/cgroup" 2>/dev/null) || return 1
  [ -n "$R" ] && case "$cg" in *":/whalewatcher-$GEN/"*) return 0 ;; esac
  for id in "${IDS[@]}"; do
    case "$cg" in *"$id"*) return 0 ;; esac
  done
  return 1
}
ours() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    case "$p" in "$$" | "$BASHPID" | "$PPID") continue ;; esac
    belongs "$p" && echo "$p"
  done
}

# 0. containers, through their engines (runc state of ctr containers lives in
#    /run/containerd/runc/<ns>, outside DIR: delete the tasks properly). Docker and podman
#    ids are remembered for the cgroup fallback below; ctr ones are not: their cgroup
#    /<ns>/<id> is shared with any other containerd that has the same ns/id.
IDS=()
DSOCK=$DIR/docker/docker.sock PSOCK=$DIR/podman/podman.sock CSOCK=$DIR/containerd/containerd.sock
export CONTAINERS_STORAGE_CONF=$DIR/podman/storage.conf CONTAINERS_CONF=$DIR/podman/containers.conf
if [ -S "$DSOCK" ]; then
  dids=($(timeout 20 docker -H "unix://$DSOCK" ps -aq --no-trunc 2>/dev/null))
  for id in "${dids[@]}"; do IDS+=("/docker/$id"); done
  [ ${#dids[@]} -gt 0 ] && timeout 60 docker -H "unix://$DSOCK" rm -f "${dids[@]}" >/dev/null 2>&1
fi
if [ -S "$PSOCK" ]; then
  pids=($(timeout 20 podman --url "unix://$PSOCK" ps -aq --no-trunc 2>/dev/null))
  for id in "${pids[@]}"; do IDS+=("libpod-$id"); done
  timeout 60 podman --url "unix://$PSOCK" rm -af -t 0 >/dev/null 2>&1
fi
if [ -S "$CSOCK" ]; then
  for ns in $(timeout 10 ctr -a "$CSOCK" ns ls -q 2>/dev/null); do
    C="ctr -a $CSOCK -n $ns"
    for id in $(timeout 10 $C tasks ls -q 2>/dev/null); do
      timeout 10 $C tasks kill -s KILL "$id" >/dev/null 2>&1
    done
    for id in $(timeout 10 $C tasks ls -q 2>/dev/null); do
      for _ in $(seq 25); do timeout 10 $C tasks rm -f "$id" >/dev/null 2>&1 && break; sleep 0.2; done
    done
  done
fi

# 1. the daemons, politely, by their pid files
for f in docker/docker.pid podman/podman.pid containerd/containerd.pid; do
  pid=$(cat "$DIR/$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping ${f%%/*} ($pid)"
    kill -TERM "$pid" 2>/dev/null || true
  fi
done
for f in docker/docker.pid podman/podman.pid containerd/containerd.pid; do
  pid=$(cat "$DIR/$f" 2>/dev/null || true)
  [ -n "$pid" ] || continue
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && { log "killing ${f%%/*} ($pid)"; kill -KILL "$pid" 2>/dev/null || true; }
done

# 2. leftovers: shims, conmon, dockerd's containerd, container processes
for round in 1 2 3; do
  pids=$(ours)
  [ -n "$pids" ] || break
  log "killing leftover processes (round $round): $(echo $pids)"
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
done

# 3. mounts below DIR, deepest first
for _ in 1 2 3; do
  mnts=$(awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  [ -n "$mnts" ] || break
  for m in $mnts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done

# 4. the chroot's mounts (the host's /tmp among them: before any rm -rf)
unmount_chroot

# 5. the dir itself
rm -rf "$DIR" 2>/dev/null || { sleep 1; rm -rf "$DIR"; }
[ -d "$DIR" ] && { log "ERROR: could not remove $DIR"; exit 1; }
log "engines in $DIR stopped and removed"
