#!/bin/sh
# Checks the packages fanyi needs; installs the missing ones with apt-get when
# run as root (waiting, bounded, for another package manager's dpkg lock),
# otherwise stops with the exact command to run.
#   ensure-deps.sh build   C compiler, pkg-config, OpenBLAS, cJSON, utf8proc
#   ensure-deps.sh test    the above plus Python torch + sentencepiece (the test oracle), numpy (fanyi get),
#                          spm_encode, GNU parallel, mandoc and valgrind
#   ensure-deps.sh fuzz    the build packages plus clang (libFuzzer)
set -u
what=${1:-build}
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing build-essential"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
if command -v pkg-config >/dev/null 2>&1; then
  pkg-config --exists openblas || missing="$missing libopenblas-dev"
  pkg-config --exists libcjson || missing="$missing libcjson-dev"
  pkg-config --exists libutf8proc || missing="$missing libutf8proc-dev"
else
  missing="$missing libopenblas-dev libcjson-dev libutf8proc-dev"
fi
if [ "$what" = test ]; then
  /usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || missing="$missing python3-torch"
  /usr/bin/python3 -c 'import sentencepiece' >/dev/null 2>&1 || missing="$missing python3-sentencepiece"
  /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing="$missing python3-numpy"
  command -v spm_encode >/dev/null 2>&1 || missing="$missing sentencepiece"
  command -v parallel >/dev/null 2>&1 || missing="$missing parallel"
  command -v mandoc >/dev/null 2>&1 || missing="$missing mandoc"
  command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
  command -v /usr/bin/time >/dev/null 2>&1 || missing="$missing time"
  command -v clang >/dev/null 2>&1 || missing="$missing clang"
fi
if [ "$what" = fuzz ]; then
  command -v clang >/dev/null 2>&1 || missing="$missing clang"
fi
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "fanyi: missing packages:$missing" >&2
  echo "fanyi: run as root:  $cmd" >&2
  exit 1
fi

# Another apt or dpkg (unattended-upgrades on a fresh machine, a second make)
# may hold the dpkg lock: wait for it, at most FANYI_LOCK_WAIT seconds.
lock_wait=${FANYI_LOCK_WAIT:-600}
log=$(mktemp "${TMPDIR:-/tmp}/fanyi-apt.XXXXXX") || exit 1
trap 'rm -f "$log"' EXIT
started=$(date +%s)

# Runs apt-get "$@", retrying while the lock is held; its output goes to $log.
apt_locked() {
  told=0
  while :; do
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$lock_wait" "$@" >"$log" 2>&1 && return 0
    grep -q -i -E 'could not get lock|unable to acquire the dpkg frontend lock|unable to lock' "$log" || return 1
    waited=$(( $(date +%s) - started ))
    if [ "$waited" -ge "$lock_wait" ]; then
      echo "fanyi: gave up after ${waited} s waiting for the dpkg lock, held by another apt-get or dpkg:" >&2
      tail -n 3 "$log" | sed 's/^/  /' >&2
      echo "fanyi: when it has finished, run as root:  $cmd" >&2
      exit 1
    fi
    if [ "$told" = 0 ]; then
      echo "fanyi: another package manager holds the dpkg lock; waiting for it (at most ${lock_wait} s)" >&2
      told=1
    fi
    sleep "${FANYI_LOCK_POLL:-5}"
  done
}

echo "fanyi: installing missing packages:$missing" >&2
apt_locked install -y --no-install-recommends $missing && exit 0
# The package lists may be missing or stale on a fresh machine.
apt_locked update && apt_locked install -y --no-install-recommends $missing && exit 0
echo "fanyi: '$cmd' failed:" >&2
tail -n 5 "$log" | sed 's/^/  /' >&2
exit 1
