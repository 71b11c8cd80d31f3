#!/bin/sh
# Checks the packages fanyi needs; installs the missing ones with apt-get when
# run as root, otherwise stops with the exact command to run.
#   ensure-deps.sh build   C compiler, pkg-config, OpenBLAS, cJSON, utf8proc
#   ensure-deps.sh test    the above plus Python torch + sentencepiece (the test oracle),
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
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "fanyi: installing missing packages:$missing" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null; } ||
    { echo "fanyi: '$cmd' failed" >&2; exit 1; }
else
  echo "fanyi: missing packages:$missing" >&2
  echo "fanyi: run as root:  $cmd" >&2
  exit 1
fi
