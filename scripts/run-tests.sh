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
export VSCHED_REQUIRE_QEMU=1    # integration tests fail, never skip, without QEMU
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

# One command as one test case.
record_cmd() {  # suite name command...
    local suite=$1 name=$2 log status
    shift 2
    log=$results/$suite-$name.log
    if "$@" > "$log" 2>&1; then status=""; else status='<failure message="exit status non-zero"/>'; fi
    tail -5 "$log"
    printf '<testsuite name="%s"><testcase classname="%s" name="%s">%s</testcase></testsuite>\n' \
        "$suite" "$suite" "$name" "$status" > "$results/$suite-$name.xml"
}

run_fuzz() {
    # The fuzz suite also holds the shared-pool corruption fuzzer (20 s,
    # tests/fuzz/pool_corruption_fuzz.cc; its seed is in the log).
    banner "vsched core: fuzz corpus replay, pool corruption, a bounded fuzzing run"
    meson_suite fuzz-replay "$top/build/fuzz" fuzz --suite fuzz
    record_cmd fuzz run-30s "$top/tests/fuzz/run-fuzz.sh" "$top/build/fuzz" 30
}

# Build just what the chosen upstream tests need, then run them unrebuilt.
qemu_suite() {  # name selection...
    local name=$1 targets
    shift
    # shellcheck disable=SC2086
    targets=$("$top/scripts/qemu-test-targets.py" "$qemu_build" "$@") &&
        ninja -C "$qemu_build" $targets > "$results/$name-build.log" 2>&1 || {
            tail -20 "$results/$name-build.log"
            record_error "$name" "building the test binaries failed"
            return
        }
    meson_suite "$name" "$qemu_build" "$name" --no-rebuild --num-processes 2 -t 2 "$@"
}

run_qemu_unit() {
    banner "upstream QEMU unit tests (check-unit) on the patched tree"
    qemu_suite qemu-unit --suite unit
}

run_qtest() {
    banner "upstream x86_64 qtests on the patched tree"
    # shellcheck disable=SC2046
    qemu_suite qtest $(sed 's/#.*//' "$top/tests/qemu-selected-qtests.txt" | awk 'NF {print "qtest-x86_64/" $1}')
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
