#!/usr/bin/env bash
# Run every test suite of vsched and print "N passed, N failed" at the end.
# Suites: the core's unit/property tests, a bounded fuzz run, upstream QEMU's
# unit tests and chosen x86_64 qtests on the patched tree, our QEMU
# integration tests (guests booted under the scheduler).
# Usage: run-tests.sh [suite...]   (default: all)
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
results=$top/build/test-results
qemu_build=$top/build/qemu-build
export VSCHED_QEMU=$top/build/qemu-system-x86_64
ALL_SUITES="core fuzz qemu-unit qtest integration"
suites=${*:-$ALL_SUITES}

rm -rf "$results" && mkdir -p "$results"

banner() { printf '\n=== %s ===\n' "$*"; }

# A suite that could not even start is one failed test, never a silent pass.
record_error() {  # suite message
    printf '<testsuite name="%s"><testcase name="%s"><failure message="%s"/></testcase></testsuite>\n' \
        "$1" "$1-setup" "$2" > "$results/$1-error.xml"
    echo "run-tests: $1: $2" >&2
}

meson_suite() {  # name builddir logbase meson-test-args...
    local name=$1 dir=$2 logbase=$3; shift 3
    meson test -C "$dir" --print-errorlogs --logbase "$logbase" "$@"
    local xml=$dir/meson-logs/$logbase.junit.xml
    if [ -f "$xml" ]; then cp "$xml" "$results/$name.xml"; else record_error "$name" "no result file"; fi
}

run_core() {
    banner "vsched core: unit and property tests"
    meson_suite core "$top/build/core" core --num-processes 2
}

run_fuzz() {
    banner "vsched core: fuzz target (bounded run)"
    "$top/tests/fuzz/run-fuzz.sh" "$results/fuzz.xml" || true
    [ -f "$results/fuzz.xml" ] || record_error fuzz "fuzz run produced no result"
}

run_qemu_unit() {
    banner "upstream QEMU unit tests (check-unit) on the patched tree"
    meson_suite qemu-unit "$qemu_build" qemu-unit --suite unit --num-processes 2 -t 2
}

run_qtest() {
    banner "upstream x86_64 qtests on the patched tree"
    local tests
    tests=$(sed 's/#.*//' "$top/tests/qemu-selected-qtests.txt" | awk 'NF {print "qtest-x86_64/" $1}')
    # shellcheck disable=SC2086
    meson_suite qtest "$qemu_build" qtest --num-processes 2 -t 2 $tests
}

run_integration() {
    banner "vsched integration tests (Linux guests under TCG)"
    /usr/bin/python3 -m pytest -v -p no:cacheprovider "$top/tests/integration" \
        --junitxml="$results/integration.xml"
    [ -f "$results/integration.xml" ] || record_error integration "pytest produced no result"
}

for s in $suites; do
    case $s in
    core) run_core ;;
    fuzz) run_fuzz ;;
    qemu-unit) run_qemu_unit ;;
    qtest) run_qtest ;;
    integration) run_integration ;;
    *) record_error "$s" "unknown suite (known: $ALL_SUITES)" ;;
    esac
done

banner "summary"
/usr/bin/python3 "$top/scripts/junit-summary.py" "$results"/*.xml
