#!/bin/sh
# Run the vsched libFuzzer target for a bounded time, or replay a corpus.
#
#   run-fuzz.sh [BUILD_DIR] [SECONDS]     fuzz for SECONDS (default 30),
#                                         starting from tests/fuzz/corpus;
#                                         new inputs go to a temp dir
#   run-fuzz.sh --replay FUZZER CORPUS    run every corpus input once
#
# A crash leaves crash-* files in the current directory and exits non-zero.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = "--replay" ]; then
    fuzzer=$2
    corpus=$3
    exec "$fuzzer" -runs=0 "$corpus"
fi

build=${1:-build/fuzz}
secs=${2:-30}
fuzzer=$build/tests/fuzz/vsched-fuzz
if [ ! -x "$fuzzer" ]; then
    echo "run-fuzz: $fuzzer not built (CXX=clang++ meson setup -Dfuzz=true $build)" >&2
    exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/vsched-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 "$work" "$here/corpus"
