#!/usr/bin/env bash
# make run: the default experiment (experiments/default.toml): dedup and vips
# guests under every directed-yield policy, the latency table (median, spread,
# reduction against vanilla), every comparison's 95 % interval, p-value and
# verdict, the series' cells reproduced, and the path of the plot. Extra
# arguments go to scripts/experiment.py (e.g. a spec path, --reps 5,
# --until-ci 10). Exit status: 0 all runs
# ok, 1 some runs failed, 2 bad spec or setup, 3 some points refused (shared
# pools without QEMU's pool= property); see docs/experiment.rst.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export VSCHED_QEMU=${VSCHED_QEMU:-$top/build/qemu-system-x86_64}
spec=$top/experiments/default.toml
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then spec=$1; shift; fi
exec /usr/bin/python3 "$top/scripts/experiment.py" "$spec" "$@"
