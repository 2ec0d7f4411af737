#!/usr/bin/env bash
# The benchmark matrix (experiments/bench.toml): 2, 3 and 4 VMs of 4 vCPUs on
# one shared pool of 2 slots, dedup and vips, ipi (relaxed on/off) and
# ipi-prio against vanilla and none, 3 repetitions (6/9/12 runs per cell).
# About 30 minutes on a 2-core machine; not part of make check. Arguments
# go to scripts/experiment.py (e.g. --reps 1 for a quick look, --until-ci 10
# --max-reps 12 to repeat each point until its intervals are 10 points wide).
# Prints the table with intervals, p-values and verdicts, and the plot path.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export VSCHED_QEMU=${VSCHED_QEMU:-$top/build/qemu-system-x86_64}
exec /usr/bin/python3 "$top/scripts/experiment.py" --bench "$@"
