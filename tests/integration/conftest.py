"""Fixtures shared by the integration tests: the emulator and the guest image.

QEMU: $VSCHED_QEMU, default build/qemu-system-x86_64 (`make` builds it).  A
missing emulator fails the tests: they never skip.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import vsched_vm  # noqa: E402


@pytest.fixture(scope="session")
def qemu():
    path = os.environ.get("VSCHED_QEMU") or vsched_vm.DEFAULT_QEMU
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("QEMU binary %s not built (run make, or set VSCHED_QEMU)" % path)
    return path


@pytest.fixture(scope="session")
def image_dir():
    """The test guest, (re)built by scripts/guest/build-image.sh (idempotent)."""
    out = os.environ.get("VSCHED_IMAGE") or os.path.join(REPO, "build", "guest")
    r = subprocess.run([os.path.join(REPO, "scripts", "guest", "build-image.sh"), out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, "build-image.sh failed:\n" + r.stdout
    return out


def run_none(qemu, accel, stdin=""):
    """QEMU with -M none, this -accel and QMP on stdio fed with stdin."""
    return subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                           "-accel", accel, "-qmp", "stdio"], input=stdin,
                          capture_output=True, text=True, timeout=30)


def boot_time_property(qemu, accel, prop):
    """qom-set of the boot-time property prop, then query-vsched and HMP
    info vsched: returns (the qom-set error, the query's return, the HMP text)."""
    cmds = [{"execute": "qmp_capabilities"},
            {"execute": "qom-set", "arguments": {"path": "/machine/accel",
             "property": prop, "value": False}},
            {"execute": "query-vsched"},
            {"execute": "human-monitor-command",
             "arguments": {"command-line": "info vsched"}},
            {"execute": "quit"}]
    r = run_none(qemu, accel, "".join(json.dumps(c) + "\n" for c in cmds))
    replies = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    replies = [x for x in replies if "return" in x or "error" in x][1:]
    return replies[0].get("error", {}).get("desc", ""), replies[1]["return"], \
        replies[2]["return"]


def assert_start_refused(qemu, accel, message):
    """QEMU with this -accel stops at start, exit status 1, saying message."""
    r = run_none(qemu, accel)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr, r.stderr


def dedup_with_stats(qemu, image_dir, tmp_path, accel, smp, cpu="max,-monitor"):
    """dedup with smp threads on smp vCPUs (by default a KVM guest's CPU:
    no MONITOR/MWAIT), the stats file on: returns (console, stats, stderr).
    Fails unless the run and dedup's byte-exact round trip are ok."""
    stats = tmp_path / "stats.json"
    vm = vsched_vm.VM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path), smp=smp,
                      cpu=cpu, workload="dedup", size="small", threads=smp,
                      accel="%s,stats-file=%s" % (accel, stats))
    res = vm.run(timeout=600)
    console = vm.read_log()
    with open(vm.stderr_path, errors="replace") as f:
        err = f.read()
    assert res.ok, (res.reason, err, console[-3000:])
    assert "roundtrip=ok" in console, console[-3000:]
    with open(stats) as f:
        return console, json.load(f), err
