#!/usr/bin/env bash
# make run: compare the directed-yield policies on an overcommitted guest.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export VSCHED_QEMU=$top/build/qemu-system-x86_64
exec /usr/bin/python3 "$top/scripts/compare_policies.py" "$@"
