"""KVM's paravirtual sched yield for TCG guests (-accel tcg,...,pv-sched-yield=on).

With steal-time=on and pv-sched-yield=on on an AMD CPU model without
MONITOR/MWAIT (-cpu max,-monitor), a Linux guest must take the feature
("setup PV sched yield"); a vCPU whose call-function IPI went to a
preempted vCPU then makes the KVM_HC_SCHED_YIELD hypercall (VMMCALL), and
vsched hands it the caller's slot if it is queued (pv_yields > 0).  dedup's
round trip checks every byte, so a wrong register or EIP after the
hypercall would fail it.

Run: /usr/bin/python3 -m pytest tests/integration/test_pv_sched_yield.py
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from conftest import assert_start_refused, boot_time_property, dedup_with_stats  # noqa: E402,E501

# Eight vCPUs on two slots: most are preempted at any time.
SCHED = "tcg,thread=multi,vcpu-sched=on,pcpus=2,steal-time=on"
KVM_GUEST = "max,-monitor"
SETUP_LINE = "setup PV sched yield"


def dedup_run(qemu, image_dir, tmp_path, accel, cpu=KVM_GUEST):
    """dedup with 8 threads on 8 vCPUs; returns (console, stats, stderr)."""
    return dedup_with_stats(qemu, image_dir, tmp_path, accel, 8, cpu)


def test_guest_yields_to_preempted_ipi_receivers(qemu, image_dir, tmp_path):
    console, stats, _ = dedup_run(qemu, image_dir, tmp_path,
                                  SCHED + ",pv-sched-yield=on")
    assert SETUP_LINE in console, console[-3000:]
    assert stats["pv_yield_requests"] > 0, stats
    assert stats["pv_yields"] > 0, stats
    assert stats["pv_yield_requests"] == stats["pv_yields"] + stats["pv_yield_misses"]
    assert stats["hypercalls_refused"] == 0, stats


def test_off_by_default(qemu, image_dir, tmp_path):
    console, stats, _ = dedup_run(qemu, image_dir, tmp_path, SCHED)
    assert SETUP_LINE not in console, console[-3000:]
    assert stats["pv_yield_requests"] == 0, stats


def test_cpu_not_amd_is_not_offered_it(qemu, image_dir, tmp_path):
    """An Intel model would make the hypercall with VMCALL, which TCG does
    not decode: the feature is not offered, with a warning."""
    console, stats, err = dedup_run(qemu, image_dir, tmp_path,
                                    SCHED + ",pv-sched-yield=on",
                                    cpu="max,-monitor,vendor=GenuineIntel")
    assert "not AMD" in err, err
    assert SETUP_LINE not in console, console[-3000:]
    assert stats["pv_yield_requests"] == 0, stats


def test_cpu_with_mwait_gets_a_warning(qemu, image_dir, tmp_path):
    """Linux ignores the feature when the CPU has MWAIT: say so, still run."""
    console, stats, err = dedup_run(qemu, image_dir, tmp_path,
                                    SCHED + ",pv-sched-yield=on", cpu="max")
    assert "pv-sched-yield=on" in err and "add -monitor to -cpu" in err, err
    assert SETUP_LINE not in console, console[-3000:]
    assert stats["pv_yield_requests"] == 0, stats


def test_needs_steal_time(qemu):
    assert_start_refused(qemu, "tcg,vcpu-sched=on,pv-sched-yield=on",
                         "pv-sched-yield=on needs steal-time=on")


def test_bad_value_is_refused(qemu):
    assert_start_refused(qemu, "tcg,vcpu-sched=on,steal-time=on,pv-sched-yield=maybe",
                         "'pv-sched-yield'")


def test_fixed_at_boot_and_shown(qemu):
    """The guest reads CPUID at boot: qom-set refuses to change it later."""
    err, info, hmp = boot_time_property(
        qemu, "tcg,vcpu-sched=on,steal-time=on,pv-sched-yield=on", "pv-sched-yield")
    assert "cannot change while the VM runs" in err
    assert info["pv-sched-yield"] is True
    names = {c["name"] for c in info["counters"]}
    assert {"pv_yield_requests", "pv_yields", "pv_yield_misses"} <= names
    assert "pv-sched-yield: on" in hmp
