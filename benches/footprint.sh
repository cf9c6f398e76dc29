#!/usr/bin/env bash
# The footprint of `whalewatch events` (examples/whalewatch/main.rs, release build) watching the
# dockerd of WHALEWATCHER_DOCKER (or DOCKER_HOST) with N sleeping containers:
#   stripped binary size, VmRSS/VmHWM, threads, fds, and the normal dependency count.
#
#   bash benches/footprint.sh [N]      # N containers, default 200
#   WHALEWATCHER_PROFILE=small bash benches/footprint.sh 200   # the size-optimized profile
#                                      # (Cargo.toml [profile.small]: LTO, opt-level "s")
#   WHALEWATCHER_FOOTPRINT_ALSO="before=/path/to/whalewatch" bash benches/footprint.sh 1000
#                                      # also measure other builds (e.g. of an older commit)
#                                      # on the same containers, in alternating rounds
#   WHALEWATCHER_FOOTPRINT_ROUNDS=3    # rounds per build (default 1; medians are reported)
#   WHALEWATCHER_FOOTPRINT_KEEP=1      # leave the N containers running at the end, and reuse
#                                      # them when exactly N are running at the start (saves
#                                      # ~10 minutes of starting 1,000 on vfs; no baseline then);
#                                      # remove them 2 at a time: docker ps -aq --filter
#                                      # label=whalewatcher.bench=footprint | xargs -n 2 docker rm -f
#
# Goals (issue 7): <= 4 MiB RSS with 200 containers, <= 3 threads per engine, <= 30 normal
# dependencies, no async runtime in the tree. Issue 16: anonymous memory <= 1 KiB per
# container beyond the baseline without containers, <= 5 MiB RSS with 1,000 containers.
# Containers are started in batches of at most 50, 4 at a time, and removed 2 at a time:
# dockerd 20.10's libnetwork deadlocks for good on many concurrent removals (200 at once;
# on 2026-12-06 22:08 UTC a `docker rm -f` of 50 of 1,000: goroutines in sandbox.Delete and
# endpoint.Delete on getNetworksFromStore's mutex; README "Known problems"). The containers
# carry the label whalewatcher.bench=footprint and are removed at the end (trap), also on
# failure (unless WHALEWATCHER_FOOTPRINT_KEEP=1).
# Without an engine it prints a loud skip message and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-200}
case $N in '' | *[!0-9]*) echo "usage: $0 [N]  (N = number of containers)" >&2; exit 2 ;; esac

URL=${WHALEWATCHER_DOCKER:-${DOCKER_HOST:-}}
if [ -z "$URL" ] && [ -f /tmp/whalewatcher-engines/env ]; then
  # shellcheck disable=SC1091
  source /tmp/whalewatcher-engines/env
  URL=$WHALEWATCHER_DOCKER
fi
if [ -z "$URL" ]; then
  echo "*** benches/footprint.sh: SKIPPED — no engine configured (set WHALEWATCHER_DOCKER=unix:///… or run tests/engines/up.sh) ***" >&2
  exit 0
fi
IMAGE=${WHALEWATCHER_IMAGE:-busybox:sleep}
LABEL=whalewatcher.bench=footprint
PROJECT=whalewatcher-footprint
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$(mktemp -d /tmp/whalewatcher-footprint.XXXXXX)
PID=
KEEP=${WHALEWATCHER_FOOTPRINT_KEEP:-0}

dk() { docker -H "$URL" "$@"; }
cleanup() {
  local rc=$?
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  local ids=
  [ "$KEEP" = 1 ] || ids=$(dk ps -aq --filter "label=$LABEL" 2>/dev/null || true)
  if [ -n "$ids" ]; then
    echo "removing $(echo "$ids" | wc -l) containers ..." >&2
    echo "$ids" | xargs -n 2 docker -H "$URL" rm -f >/dev/null || echo "WARNING: docker rm -f failed; remove label $LABEL by hand" >&2
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB (%d kB)", k / 1024, k }'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
field() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"; }

# Anonymous memory of process $1 by mapping: glibc's main arena ([heap]), the other threads'
# malloc arenas (heaps at 64 MiB-aligned addresses), thread stacks (2 or 8 MiB mappings,
# cached by glibc after a thread exits), everything else (large mmapped allocations,
# .data/.bss).
anon_maps() {
  perl -ne '
    if (/^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(\S*)/) {
      my $size = (hex($2) - hex($1)) / 1024;
      $k = $3 eq "[heap]" ? "heap" : $3 eq "[stack]" ? "main" : ($size == 8192 || $size == 8196 || $size == 2048 || $size == 2052) ? "stacks" : (hex($1) % (64 << 20) == 0) ? "arenas" : "other";
      $n++ if $k eq "stacks";
      $na++ if $k eq "arenas";
    }
    $a{$k} += $1 if /^Anonymous:\s+(\d+)/;
    END { printf "[heap] %d kB, other arenas %d kB (%d), thread stacks %d kB (%d), main stack %d kB, other %d kB", $a{heap}, $a{arenas}, $na, $a{stacks}, $n, $a{main}, $a{other} }
  ' "/proc/$1/smaps"
}

# --- build and size ---------------------------------------------------------------------
PROFILE=${WHALEWATCHER_PROFILE:-release}
echo "== build: cargo build --profile $PROFILE --example whalewatch" >&2
cargo build --quiet --profile "$PROFILE" --example whalewatch
BIN=$WORK/whalewatch
cp "$TARGET/$PROFILE/examples/whalewatch" "$BIN"
UNSTRIPPED=$(stat -c %s "$BIN")
strip "$BIN"
STRIPPED=$(stat -c %s "$BIN")

# --- dependencies -----------------------------------------------------------------------
crates() {
  cargo tree --quiet -e normal --prefix none "$@" | sed 's/ (\*)$//; s/ (proc-macro)$//' |
    grep -v '^whalewatcher v' | sort -u
}
crates >"$WORK/deps-default"
crates --no-default-features --features docker >"$WORK/deps-docker"
DEPS_DEFAULT=$(wc -l <"$WORK/deps-default")
DEPS_DOCKER=$(wc -l <"$WORK/deps-docker")
ASYNC=$(cat "$WORK/deps-default" "$WORK/deps-docker" |
  grep -E '^(tokio|async-std|smol|async-io|futures-executor) ' | sort -u || true)

# --- the builds measured: this one first, then WHALEWATCHER_FOOTPRINT_ALSO's ---------------
BUILD_NAMES=(this)
BINS=("$BIN")
for nb in ${WHALEWATCHER_FOOTPRINT_ALSO:-}; do
  [ -x "${nb#*=}" ] || { echo "WHALEWATCHER_FOOTPRINT_ALSO: ${nb#*=} is not an executable" >&2; exit 2; }
  BUILD_NAMES+=("${nb%%=*}")
  BINS+=("${nb#*=}")
done
ROUNDS=${WHALEWATCHER_FOOTPRINT_ROUNDS:-1}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# --- baseline: no bench containers --------------------------------------------------------
REUSE=0
if [ "$KEEP" = 1 ] && [ "$(dk ps -aq --filter "label=$LABEL" | wc -l)" -eq "$N" ] &&
  [ "$(dk ps -q --filter "label=$LABEL" | wc -l)" -eq "$N" ]; then
  REUSE=1 # N bench containers running: no baseline run without them
  echo "== reusing the $N running bench containers (WHALEWATCHER_FOOTPRINT_KEEP=1); no baseline" >&2
else
  dk ps -aq --filter "label=$LABEL" | xargs -r -n 2 docker -H "$URL" rm -f >/dev/null 2>&1 || true # leftovers
fi
OTHERS=$(($(dk ps -q | wc -l) - REUSE * N))
BASE_THREADS=n/a
for r in $(seq "$ROUNDS"); do
  [ "$REUSE" = 1 ] && break
  for b in "${!BINS[@]}"; do
    "${BINS[$b]}" --docker "$URL" events </dev/null >"$WORK/base.out" 2>"$WORK/base.err" &
    PID=$!
    sleep 2
    kill -0 "$PID" || { cat "$WORK/base.err" >&2; echo "whalewatch died" >&2; exit 1; }
    echo "$(field VmRSS $PID)" >>"$WORK/base-rss.$b"
    echo "$(field RssAnon $PID)" >>"$WORK/base-anon.$b"
    BASE_THREADS=$(ls "/proc/$PID/task" | wc -l)
    kill "$PID"; wait "$PID" 2>/dev/null || true
    PID=
  done
done
if [ "$REUSE" = 1 ]; then # baselines of 0: the per-container figures below are totals / N
  for b in "${!BINS[@]}"; do echo 0 >"$WORK/base-rss.$b"; echo 0 >"$WORK/base-anon.$b"; done
fi
BASE_RSS=$(median <"$WORK/base-rss.0")
BASE_ANON=$(median <"$WORK/base-anon.0")

# --- N containers --------------------------------------------------------------------------
if [ "$REUSE" = 0 ]; then
  echo "== starting $N containers ($IMAGE) on $URL" >&2
  START=$(now_ms)
  : >"$WORK/ids"
  for from in $(seq 1 50 "$N"); do # batches of at most 50, 4 at a time
    to=$((from + 49 < N ? from + 49 : N))
    seq "$from" "$to" | xargs -P 4 -I{} docker -H "$URL" run -d --network none --label "$LABEL" \
      --label "com.docker.compose.project=$PROJECT" "$IMAGE" >>"$WORK/ids"
  done
  [ "$(wc -l <"$WORK/ids")" -eq "$N" ] || { echo "not all $N containers started" >&2; exit 1; }
  echo "   started in $(($(now_ms) - START)) ms" >&2
fi

# Starts build $1 and waits until it has printed N started lines of the bench's project.
watch_n() {
  "$1" --docker "$URL" events </dev/null >"$WORK/events.out" 2>"$WORK/events.err" &
  PID=$!
  READY_START=$(now_ms)
  seen=0
  for _ in $(seq 600); do # at most 60 s
    seen=$(grep -c "started .* project=$PROJECT " "$WORK/events.out" || true)
    [ "$seen" -ge "$N" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/events.err" >&2; echo "whalewatch died" >&2; exit 1; }
    sleep 0.1
  done
  [ "$seen" -ge "$N" ] || { echo "whalewatch printed $seen of $N started lines within 60 s" >&2; exit 1; }
  SEEN_AFTER=$(($(now_ms) - READY_START))
  sleep 1 # settle
}

# The other builds (and this one but in the last round), alternating.
for r in $(seq "$ROUNDS"); do
  for b in "${!BINS[@]}"; do
    [ "$b" -eq 0 ] && [ "$r" -eq "$ROUNDS" ] && continue
    watch_n "${BINS[$b]}"
    echo "$(field VmRSS $PID)" >>"$WORK/rss.$b"
    echo "$(field RssAnon $PID)" >>"$WORK/anon.$b"
    echo "round $r: $(anon_maps "$PID")" >>"$WORK/maps.$b"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    PID=
  done
done

watch_n "$BIN"
RSS=$(field VmRSS $PID)
HWM=$(field VmHWM $PID)
ANON=$(field RssAnon $PID)
echo "$RSS" >>"$WORK/rss.0"
echo "$ANON" >>"$WORK/anon.0"
ANON_MAPS=$(anon_maps "$PID")
echo "round $ROUNDS: $ANON_MAPS" >>"$WORK/maps.0"
FILE=$(field RssFile $PID)
PSS=$(awk '$1 == "Pss:" { print $2 }' "/proc/$PID/smaps_rollup") # shared pages split among their users
THREADS=$(ls "/proc/$PID/task" | wc -l)
NAMES=$(cat /proc/"$PID"/task/*/comm | sort | uniq -c | awk '{ printf "%s%s x%d", sep, $2, $1; sep = ", " }')
ENGINE_THREADS=$(cat /proc/"$PID"/task/*/comm | grep -c '^whalewatch0-' || true)
FDS=$(ls "/proc/$PID/fd" | wc -l) # stdio and fds inherited from the caller included
FD_KINDS=$(for f in /proc/"$PID"/fd/*; do readlink "$f"; done | sed 's/:.*//; s,^/.*,file,' | sort | uniq -c | awk '{ printf "%s%s x%d", sep, $2, $1; sep = ", " }')

verdict() { if [ "$1" -le "$2" ]; then echo "ok (goal <= $2)"; else echo "MISSED (goal <= $2)"; fi; }
# anonymous bytes per container beyond the baseline, from median kB figures
per_ctr() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }'; }
RSS_GOAL=4096 # issue 7, at 200 containers
[ "$N" -ge 1000 ] && RSS_GOAL=5120 # issue 16, at 1,000
cat <<EOF

=== benches/footprint.sh: whalewatch events, $N containers ($OTHERS other alive containers on the engine) ===
binary ($PROFILE, default features)  $(mib $((UNSTRIPPED / 1024))) unstripped, $(mib $((STRIPPED / 1024))) stripped
all $N started lines printed after   ${SEEN_AFTER} ms (process start to last line, polled every 0.1 s)
VmRSS                               $(mib "$RSS")  [anon $(mib "$ANON"), file $(mib "$FILE")]  $(verdict "$RSS" $RSS_GOAL)
anonymous memory per container      $(if [ "$REUSE" = 1 ]; then echo "n/a (reused containers: no baseline)"; else
  echo "$(per_ctr "$(median <"$WORK/anon.0")" "$BASE_ANON") B beyond the baseline (medians of $ROUNDS)  $(verdict "$(per_ctr "$(median <"$WORK/anon.0")" "$BASE_ANON")" 1024)"; fi)
anonymous memory by mapping         $ANON_MAPS
VmHWM                               $(mib "$HWM")
Pss                                 $(mib "$PSS")
VmRSS without bench containers      $(mib "$BASE_RSS") [anon $(mib "$BASE_ANON")] ($BASE_THREADS threads)
threads                             $THREADS: $NAMES
threads of the engine's watcher     $ENGINE_THREADS  $(verdict "$ENGINE_THREADS" 3)
fds                                 $FDS: $FD_KINDS
normal dependencies (cargo tree -e normal, unique, without whalewatcher)
  default features                  $DEPS_DEFAULT  $(verdict "$DEPS_DEFAULT" 30)
  --no-default-features -F docker   $DEPS_DOCKER  $(verdict "$DEPS_DOCKER" 30)
async runtimes in the tree          ${ASYNC:-none}
EOF
if [ "${#BINS[@]}" -gt 1 ] || [ "$ROUNDS" -gt 1 ]; then
  echo "builds on the same containers (medians of $ROUNDS rounds; kB):"
  for b in "${!BINS[@]}"; do
    rss=$(median <"$WORK/rss.$b") anon=$(median <"$WORK/anon.$b")
    brss=$(median <"$WORK/base-rss.$b") banon=$(median <"$WORK/base-anon.$b")
    printf '  %-10s VmRSS %6d (baseline %6d)  anon %6d (baseline %6d)  anon/container %5d B  [%s]\n' \
      "${BUILD_NAMES[$b]}" "$rss" "$brss" "$anon" "$banon" "$(per_ctr "$anon" "$banon")" "${BINS[$b]}"
    sed 's/^/               /' "$WORK/maps.$b"
  done
fi
echo "default-feature crates: $(tr '\n' ' ' <"$WORK/deps-default")"
echo "docker-only crates:     $(tr '\n' ' ' <"$WORK/deps-docker")"
[ -z "$ASYNC" ] || { echo "FAIL: an async runtime is in the dependency tree" >&2; exit 1; }
