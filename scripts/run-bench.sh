#!/usr/bin/env bash
# make bench: the benchmarks and their figures (printed, never asserted).
#   1. the core: one yield decision per policy and size, and the hooks
#      (Google Benchmark; ends with "decision <policy> vcpus=<n> <median> ns")
#   2. the emulator: the same guest workload with vcpu-sched off and on,
#      A/B interleaved in one run, medians and ratios
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

echo "=== core: decision and hook costs ==="
"$top/build/core/tests/bench/vsched-bench"

echo
echo "=== virtual time: speed against real time, physics grid ==="
/usr/bin/python3 "$top/scripts/bench_vtime.py"

echo
echo "=== emulator: vcpu-sched off vs on, same guest workload ==="
VSCHED_QEMU_VARIANT=upstream "$top/scripts/build-qemu.sh" >/dev/null
exec /usr/bin/python3 "$top/scripts/bench_overhead.py" "$@"
