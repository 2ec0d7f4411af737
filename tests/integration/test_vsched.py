"""vsched under real guests: the scheduler, its hooks, its knobs, the monitor.

Run: /usr/bin/python3 -m pytest tests/integration/test_vsched.py
Needs build/qemu-system-x86_64 (or $VSCHED_QEMU) and the guest image, which
the session fixture builds with scripts/guest/build-image.sh.
"""

import json
import re
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vsched_vm import VM, guest_facts  # noqa: E402

SCHED = "tcg,thread=multi,vcpu-sched=on,pcpus=2,directed-yield=ipi"


def counters(vm):
    info = vm.qmp.execute("query-vsched")
    return {c["name"]: c["value"] for c in info["counters"]}


def stats_file(path):
    with open(path) as f:
        return json.loads(f.read())


def sched_vm(qemu, image_dir, tmp_path, accel=SCHED, **kw):
    stats = tmp_path / "stats.json"
    kw.setdefault("smp", 8)
    kw.setdefault("workload", "ipistorm")
    vm = VM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path),
            accel="%s,stats-file=%s" % (accel, stats), **kw)
    return vm, stats


# ------------------------------------------------------------ bad input

BAD_VALUES = [
    ("pcpus=0", "pcpus"),
    ("pcpus=-1", "pcpus"),
    ("pcpus=lots", "pcpus"),
    ("slice=-5ms", "slice"),
    ("slice=0", "slice"),
    ("slice=fast", "slice"),
    ("directed-yield=greedy", "directed-yield"),
    ("relaxed-boost=maybe", "relaxed-boost"),
    ("ipi-tracking=2", "ipi-tracking"),
    ("ipi-window=-1ms", "ipi-window"),
    ("ple-gap=10parsecs", "ple-gap"),
    ("ple-window=0", "ple-window"),
    ("ple-window=5ms", "ple-window"),
    ("ple-gap=1s", "ple-gap"),
    ("slice=11s", "slice"),
    ("slice=500ns", "slice"),
    ("ipi-window=20s", "ipi-window"),
    ("pcpus=5000", "pcpus"),
    ("vcpu-sched=yes-please", "vcpu-sched"),
    ("stats-file=", "stats-file"),
]


@pytest.mark.parametrize("prop,name", BAD_VALUES)
def test_bad_property_value_is_refused(qemu, prop, name):
    r = subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                        "-accel", "tcg,vcpu-sched=on," + prop],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r.stderr
    assert "'%s'" % name in r.stderr or "%s=" % name in r.stderr, r.stderr


def test_kvm_refuses_vsched_properties(qemu):
    r = subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                        "-accel", "kvm,vcpu-sched=on"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "'vcpu-sched' needs -accel tcg" in r.stderr, r.stderr


def test_icount_is_refused(qemu):
    r = subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                        "-icount", "shift=0", "-accel", "tcg,vcpu-sched=on"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "cannot be combined with -icount" in r.stderr, r.stderr


def test_accel_help_lists_properties(qemu):
    r = subprocess.run([qemu, "-accel", "tcg,help"], capture_output=True,
                       text=True, timeout=30)
    for prop in ("vcpu-sched", "pcpus", "slice", "directed-yield",
                 "relaxed-boost", "ipi-tracking", "ipi-window", "ple-gap",
                 "ple-window", "stats-file", "halt-handoff", "ipi-lift",
                 "callfn-first", "yield-lift", "wake-preempt",
                 "wake-granularity", "wake-spinners", "wake-queued",
                 "preempt-delay", "yield-lend"):
        assert prop + "=" in r.stdout, r.stdout


def qmp_session(qemu, accel, commands):
    """Run QEMU with -M none and a QMP session on stdio; return the replies."""
    lines = [{"execute": "qmp_capabilities"}] + commands + [{"execute": "quit"}]
    r = subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                        "-accel", accel, "-qmp", "stdio"],
                       input="".join(json.dumps(c) + "\n" for c in lines),
                       capture_output=True, text=True, timeout=30)
    replies = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    return [x for x in replies if "return" in x or "error" in x][1:]


def test_settings_reach_the_scheduler(qemu):
    accel = ("tcg,vcpu-sched=on,pcpus=3,slice=2ms,directed-yield=ipi-prio,"
             "relaxed-boost=off,ipi-window=20ms")
    info = qmp_session(qemu, accel, [{"execute": "query-vsched"}])[0]["return"]
    assert info["enabled"] is True
    assert (info["pcpus"], info["slice-ns"], info["policy"]) == (3, 2000000, "ipi-prio")
    assert info["relaxed-boost"] is False
    assert info["ipi-window-ns"] == 20000000


def test_runtime_knobs_and_fixed_ones(qemu):
    replies = qmp_session(qemu, "tcg,vcpu-sched=on,pcpus=2", [
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "directed-yield", "value": "vanilla"}},
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "ipi-window", "value": "7ms"}},
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "pcpus", "value": 5}},
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "directed-yield", "value": "bogus"}},
        {"execute": "query-vsched"},
    ])
    assert "return" in replies[0] and "return" in replies[1]
    assert "cannot change while the VM runs" in replies[2]["error"]["desc"]
    assert "directed-yield" in replies[3]["error"]["desc"]
    info = replies[4]["return"]
    assert (info["policy"], info["ipi-window-ns"], info["pcpus"]) == ("vanilla", 7000000, 2)


def test_mechanism_switches_at_start_and_run_time(qemu):
    """Each of ipi-prio's mechanisms is a bool property: set at start, read
    back, switched at run time; the defaults are the documented ones."""
    get = lambda p: {"execute": "qom-get", "arguments": {"path": "/machine/accel",
                                                        "property": p}}
    replies = qmp_session(qemu, "tcg,vcpu-sched=on,pcpus=2,ipi-lift=on", [
        get("halt-handoff"), get("ipi-lift"), get("callfn-first"), get("yield-lift"),
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "halt-handoff", "value": False}},
        get("halt-handoff"),
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "yield-lift", "value": "maybe"}},
        get("yield-lend"),
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "yield-lend", "value": True}},
        get("yield-lend"),
    ])
    assert [r["return"] for r in replies[:4]] == [True, True, False, False]
    assert "return" in replies[4] and replies[5]["return"] is False
    assert "error" in replies[6]
    assert replies[7]["return"] is False and replies[9]["return"] is True


def test_wake_preempt_and_its_granularity(qemu):
    """wake-preempt is off by default, its granularity 1ms; both change at
    run time."""
    get = lambda p: {"execute": "qom-get", "arguments": {"path": "/machine/accel",
                                                        "property": p}}
    put = lambda p, v: {"execute": "qom-set", "arguments": {"path": "/machine/accel",
                                                           "property": p, "value": v}}
    replies = qmp_session(qemu, "tcg,vcpu-sched=on,pcpus=2", [
        get("wake-preempt"), get("wake-granularity"),
        put("wake-preempt", True), put("wake-granularity", "250us"),
        get("wake-preempt"), get("wake-granularity"),
    ])
    assert [r["return"] for r in replies[:2]] == [False, "1ms"]
    assert "return" in replies[2] and "return" in replies[3]
    assert [r["return"] for r in replies[4:6]] == [True, "250us"]


def test_preempt_delay_default_and_set_at_run_time(qemu):
    """preempt-delay is 0 (off) by default and changes at run time."""
    get = {"execute": "qom-get", "arguments": {"path": "/machine/accel",
                                               "property": "preempt-delay"}}
    put = {"execute": "qom-set", "arguments": {"path": "/machine/accel",
                                               "property": "preempt-delay", "value": "50us"}}
    replies = qmp_session(qemu, "tcg,vcpu-sched=on,pcpus=2", [get, put, get])
    assert replies[0]["return"] == "0ns"
    assert "return" in replies[1]
    assert replies[2]["return"] == "50us"


RANGE_CASES = [
    ("ple-window", "5ms", "Parameter 'ple-window' must be between 1us and 3200us (got 5ms)"),
    ("ple-gap", "0", "Parameter 'ple-gap' must be between 1us and 10ms (got 0ns)"),
    ("ipi-window", "11s", "Parameter 'ipi-window' must be between 1us and 10s (got 11s)"),
    ("wake-granularity", "11s",
     "Parameter 'wake-granularity' must be between 1us and 10s (got 11s)"),
    ("preempt-delay", "11ms",
     "Parameter 'preempt-delay' must be between 0ns and 10ms (got 11ms)"),
]


@pytest.mark.parametrize("prop,value,msg", RANGE_CASES)
def test_range_error_same_at_start_and_run_time(qemu, prop, value, msg):
    start = subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                            "-accel", "tcg,vcpu-sched=on,%s=%s" % (prop, value)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
    assert start.returncode == 1 and msg in start.stderr, start.stderr
    replies = qmp_session(qemu, "tcg,vcpu-sched=on", [
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": prop, "value": value}},
        {"execute": "qom-get", "arguments": {"path": "/machine/accel",
         "property": prop}},
    ])
    assert replies[0]["error"]["desc"] == msg
    assert replies[1]["return"] != value   # the old value stays


def test_fixed_settings_refuse_run_time_changes(qemu):
    replies = qmp_session(qemu, "tcg,vcpu-sched=on", [
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "slice", "value": "2ms"}},
        {"execute": "qom-set", "arguments": {"path": "/machine/accel",
         "property": "ple-window", "value": "3200us"}},
    ])
    assert "cannot change while the VM runs" in replies[0]["error"]["desc"]
    assert "return" in replies[1]


def test_user_guide_property_table_matches_the_settings(qemu):
    """docs/user-guide.rst lists every -accel setting with its run-time column."""
    help_text = subprocess.run([qemu, "-accel", "tcg,help"], capture_output=True,
                               text=True, timeout=30).stdout
    props = {}
    for line in help_text.splitlines():
        m = re.match(r"\s+([a-z-]+)=<\S+>\s+- vsched: .*\((?:.*; )?(run time|fixed at start)\)$",
                     line)
        if m:
            props[m.group(1)] = m.group(2) == "run time"
    guide = open(os.path.join(REPO, "docs", "user-guide.rst")).read()
    rows = {}
    for line in guide.splitlines():
        m = re.match(r"``([a-z-]+)``\s.*\s(yes|no)$", line)
        if m:
            rows[m.group(1)] = m.group(2) == "yes"
    assert rows == props


def test_off_by_default(qemu):
    info = qmp_session(qemu, "tcg", [{"execute": "query-vsched"}])[0]["return"]
    assert info == {"enabled": False}


# ------------------------------------------------------------ guests

def test_ipi_workload_under_scheduler(qemu, image_dir, tmp_path):
    """8 vCPUs on 2 slots: PAUSE spins, x2APIC IPIs, strict and relaxed yields."""
    vm, stats = sched_vm(qemu, image_dir, tmp_path, args="-r 10")
    with vm:
        vm.start()
        vm.wait_for_workload()
        info = vm.qmp.execute("query-vsched")
        res = vm.wait(timeout=300)
    assert res.ok, res.summary()
    assert info["enabled"] and info["policy"] == "ipi"
    assert len(info["vcpus"]) == 8
    assert sum(v["slot"] >= 0 for v in info["vcpus"]) <= 2
    facts = guest_facts(vm.read_log())
    assert facts["x2apic"] == "cluster" and facts["cpus_brought_up"] == 8, facts
    c = stats_file(stats)
    assert c["pause_events"] > 0
    assert c["spins_detected"] > 0
    # Firmware and early boot write the xAPIC ICR; Linux then switches to x2APIC.
    assert c["ipi_icr_x2apic"] > 100 * c["ipi_icr_xapic"]
    assert c["ipi_unicast"] + c["ipi_multicast"] > 0
    assert c["yield_strict"] > 0, c
    assert c["yield_relaxed"] > 0, c
    assert c["preemptions"] > 0 and c["handoffs"] > 0


def wait_for_decisions(vm, since, more, timeout=30.0):
    """Poll query-vsched until spin_decisions grew by `more`; return the counters."""
    deadline = time.monotonic() + timeout
    while True:
        now = counters(vm)
        if now["spin_decisions"] >= since["spin_decisions"] + more:
            return now
        assert time.monotonic() < deadline, "only %d spin decisions in %.0f s" % (
            now["spin_decisions"] - since["spin_decisions"], timeout)
        time.sleep(0.2)


def test_relaxed_boost_flip_at_run_time(qemu, image_dir, tmp_path):
    # Long enough (about 20 s of guest work here) that both windows fit in it.
    vm, stats = sched_vm(qemu, image_dir, tmp_path, args="-r 30")
    with vm:
        vm.start()
        vm.wait_for_workload()
        on = wait_for_decisions(vm, counters(vm), 50)
        vm.qmp.execute("qom-set", path="/machine/accel", property="relaxed-boost",
                       value=False)
        assert vm.qmp.execute("qom-get", path="/machine/accel",
                              property="relaxed-boost") is False
        time.sleep(0.3)   # a decision taken before the flip may still finish
        off_start = counters(vm)
        off_end = wait_for_decisions(vm, off_start, 300)
        vm.qmp.execute("qom-set", path="/machine/accel", property="relaxed-boost",
                       value=True)
        res = vm.wait(timeout=300)
    assert res.ok, res.summary()
    assert on["spin_decisions"] > 0
    assert off_end["yield_relaxed"] == off_start["yield_relaxed"]
    assert stats_file(stats)["yield_relaxed"] >= off_end["yield_relaxed"]


def test_stop_cont_200_times(qemu, image_dir, tmp_path):
    vm, stats = sched_vm(qemu, image_dir, tmp_path, smp=4, args="-r 10")
    with vm:
        vm.start()
        vm.wait_for_workload(settle=0.2)
        for _ in range(200):
            vm.qmp.execute("stop")
            vm.qmp.execute("cont")
        status = vm.qmp.execute("query-status")
        info = vm.qmp.execute("query-vsched")
        res = vm.wait(timeout=300)
    assert status["status"] == "running"
    assert len(info["vcpus"]) == 4
    assert res.ok, res.summary()
    c = stats_file(stats)
    assert c["release_stop"] > 0


def test_info_vsched_hmp(qemu, image_dir, tmp_path):
    vm, _ = sched_vm(qemu, image_dir, tmp_path, smp=4, workload="ipistorm")
    with vm:
        vm.start()
        vm.wait_for_workload()
        text = vm.qmp.execute("human-monitor-command", **{"command-line": "info vsched"})
        res = vm.wait(timeout=300)
    assert res.ok, res.summary()
    assert "vsched: 2 slots" in text and "directed-yield=ipi" in text
    assert len([l for l in text.splitlines() if l[:4].strip().isdigit()]) == 4
    assert "yield_strict" in text


def test_every_guest_pause_reaches_the_hook(qemu, image_dir, tmp_path):
    """A user-mode PAUSE loop: the hook sees each PAUSE; the guest reports its cost."""
    vm, stats = sched_vm(qemu, image_dir, tmp_path, smp=2, workload="spin",
                         args="-m pause -t 2 -n 50000",
                         accel="tcg,thread=multi,vcpu-sched=on,pcpus=2")
    res = vm.run(timeout=300)
    assert res.ok, res.summary()
    assert res.result["mode"] == "pause" and res.result["pause_ns"] > 0, res.result
    c = stats_file(stats)
    assert c["pause_events"] >= 2 * 50000, c["pause_events"]
    assert c["exec_exits_unlocked"] > 50000, c["exec_exits_unlocked"]


def test_round_robin_never_blocks(qemu, image_dir, tmp_path):
    """thread=single: the scheduler only picks who runs next (skips, no waits)."""
    vm, stats = sched_vm(qemu, image_dir, tmp_path, smp=4, args="-r 1",
                         accel="tcg,thread=single,vcpu-sched=on,pcpus=1,directed-yield=ipi")
    res = vm.run(timeout=300)
    assert res.ok, res.summary()
    c = stats_file(stats)
    assert c["gate_rr_skips"] > 0 and c["gate_waits"] == 0
    assert c["spins_detected"] > 0 and c["handoffs"] > 0
