"""Integration tests: boot the vsched test guest under our QEMU build.

Run: /usr/bin/python3 -m pytest tests/integration/test_guest.py
QEMU and the guest image come from conftest.py.
The guest image is (re)built by scripts/guest/build-image.sh (idempotent).
"""

import os
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vsched_vm import VM, find_failure, guest_facts, encode_args  # noqa: E402

ACCEL = os.environ.get("VSCHED_TEST_ACCEL", "tcg,thread=multi")


def make_vm(qemu, image_dir, tmp_path, **kw):
    kw.setdefault("smp", 4)
    kw.setdefault("accel", ACCEL)
    return VM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path), **kw)


@pytest.fixture(scope="session")
def ipistorm_run(qemu, image_dir, tmp_path_factory):
    vm = make_vm(qemu, image_dir, tmp_path_factory.mktemp("ipistorm"), workload="ipistorm")
    return vm.run(timeout=150)


# ---------------------------------------------------------------- guest runs

def test_ipistorm_ok(ipistorm_run):
    res = ipistorm_run
    assert res.ok, "%s: %s\n%s" % (res.reason, res.failure_line, res.log_path)
    r = res.result
    assert r["workload"] == "ipistorm"
    assert r["status"] == "ok" and r["exit"] == 0
    assert r["vcpus"] == 4
    assert res.guest_seconds > 0
    assert r["checksum"].startswith("0x") and len(r["checksum"]) == 18
    assert res.wall_seconds > res.guest_seconds
    # the workload's own checksum line is on the console too
    with open(res.log_path, errors="replace") as f:
        log = f.read()
    assert "VSCHED-KV checksum=%s" % r["checksum"] in log
    assert r["clocksource"] == "tsc"


def test_x2apic_cluster_mode(ipistorm_run):
    res = ipistorm_run
    facts = res.facts
    assert facts["x2apic_enabled"], "guest log has no 'x2apic enabled': %s" % res.log_path
    assert facts["x2apic"] == "cluster", facts
    # the guest's own dmesg agrees
    assert res.result["x2apic"] == "cluster"
    assert facts["cpus_brought_up"] == 4


def test_panic_is_detected_early(qemu, image_dir, tmp_path):
    timeout = 120
    res = make_vm(qemu, image_dir, tmp_path, workload="panic", smp=2).run(timeout=timeout)
    assert not res.ok
    assert res.reason == "panic", (res.reason, res.log_path)
    assert "sysrq triggered crash" in res.failure_line
    assert res.wall_seconds < timeout / 3
    assert res.result is None


def test_hang_times_out(qemu, image_dir, tmp_path):
    res = make_vm(qemu, image_dir, tmp_path, workload="hang", smp=2).run(timeout=25)
    assert not res.ok
    assert res.reason == "timeout", (res.reason, res.log_path)
    assert res.result is None
    assert 25 <= res.wall_seconds < 40
    with open(res.log_path, errors="replace") as f:
        assert "hanging on purpose" in f.read()


def test_bad_workload_and_concurrent_vms(qemu, image_dir, tmp_path):
    """An unknown workload fails; two VMs run at once without clashing."""
    vms = [make_vm(qemu, image_dir, tmp_path / "bad", workload="no-such-workload", smp=2),
           make_vm(qemu, image_dir, tmp_path / "args", workload="hackbench", smp=2,
                   args="-p -T -g 2 -l 50", quiet=True)]
    results = [None, None]

    def run(i):
        try:
            results[i] = vms[i].run(timeout=120)
        except Exception as e:  # reported by the asserts below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad, hb = results
    for r in results:
        assert not isinstance(r, Exception), repr(r)
    assert not bad.ok
    assert bad.reason == "unknown workload", (bad.reason, bad.log_path)
    assert bad.result["status"] == "fail" and bad.result["exit"] == 127
    assert hb.ok, (hb.reason, hb.log_path)
    assert hb.result["args"] == "-p -T -g 2 -l 50"
    assert hb.result["hackbench_seconds"] > 0
    assert bad.log_path != hb.log_path


def test_qmp(qemu, image_dir, tmp_path):
    vm = make_vm(qemu, image_dir, tmp_path, workload="hang", smp=2)
    vm.start()
    try:
        status = vm.qmp.execute("query-status")
        assert status["status"] in ("running", "prelaunch")
        cpus = vm.qmp.execute("query-cpus-fast")
        assert len(cpus) == 2
        vm.qmp.execute("quit")
        vm.proc.wait(timeout=20)
    finally:
        vm.kill()


# ---------------------------------------------------------------- pure Python

def test_failure_patterns():
    assert find_failure("[ 1.0] ok\n[ 2.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s!\n")[0] \
        == "soft lockup"
    assert find_failure("[ 1.0] rcu: INFO: rcu_preempt self-detected stall on CPU\n")[0] == "rcu stall"
    assert find_failure("INFO: task foo:12 blocked for more than 120 seconds.\n")[0] == "hung task"
    assert find_failure("Kernel panic - not syncing: sysrq triggered crash\n")[0] == "panic"
    assert find_failure("BUG: kernel NULL pointer dereference\nOops: 0002 [#1]\n"
                        "Kernel panic - not syncing: Fatal exception\n")[0] == "BUG"
    assert find_failure("rcu: Hierarchical RCU implementation.\n")[0] is None


def test_guest_facts():
    log = ("[0.1] x2apic enabled\n[0.2] Switched APIC routing to cluster x2apic.\n"
           "[0.9] smp: Brought up 1 node, 8 CPUs\n"
           "[1.5] clocksource: Switched to clocksource tsc\n")
    f = guest_facts(log)
    assert f["x2apic"] == "cluster" and f["x2apic_enabled"]
    assert f["cpus_brought_up"] == 8 and f["clocksource"] == "tsc"
    assert guest_facts("")["x2apic"] == "off"


def test_encode_args():
    assert encode_args("-p -T -g 2") == "-p,-T,-g,2"
    assert encode_args(["a,b", "c+d"]) == "a%2Cb,c%2Bd"


def test_build_is_idempotent(image_dir):
    """A second build with the same inputs rebuilds nothing."""
    before = {f: os.stat(os.path.join(image_dir, f)).st_mtime_ns for f in os.listdir(image_dir)}
    r = subprocess.run([os.path.join(REPO, "scripts", "guest", "build-image.sh"), image_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout
    assert "up to date" in r.stdout
    after = {f: os.stat(os.path.join(image_dir, f)).st_mtime_ns for f in os.listdir(image_dir)}
    assert after == before
