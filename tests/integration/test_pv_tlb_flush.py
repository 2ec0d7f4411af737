"""KVM's paravirtual TLB flush for TCG guests (-accel tcg,...,pv-tlb-flush=on).

With steal-time=on and pv-tlb-flush=on on a CPU without MONITOR/MWAIT, a
Linux guest must take the feature ("KVM setup pv remote TLB flush"), skip
the flush IPI to preempted vCPUs and leave the flush to their next entry
(pv_tlb_flushes > 0), and still compute right: dedup's round trip checks
every byte, so a vCPU that ran on with stale translations after a munmap
would fail it.

Run: /usr/bin/python3 -m pytest tests/integration/test_pv_tlb_flush.py
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from conftest import assert_start_refused, boot_time_property, dedup_with_stats  # noqa: E402,E501

# Four vCPUs on one slot: three are preempted at any time.
SCHED = "tcg,thread=multi,vcpu-sched=on,pcpus=1,steal-time=on"
KVM_GUEST = "max,-monitor"
SETUP_LINE = "KVM setup pv remote TLB flush"


def dedup_run(qemu, image_dir, tmp_path, accel, cpu=KVM_GUEST):
    """dedup with 4 threads on 4 vCPUs; returns (console, stats, stderr)."""
    return dedup_with_stats(qemu, image_dir, tmp_path, accel, 4, cpu)


def test_guest_leaves_flushes_of_preempted_vcpus_to_their_entry(qemu, image_dir, tmp_path):
    console, stats, _ = dedup_run(qemu, image_dir, tmp_path,
                                  SCHED + ",pv-tlb-flush=on")
    assert SETUP_LINE in console, console[-3000:]
    assert "roundtrip=ok" in console, console[-3000:]
    assert stats["pv_tlb_flushes"] > 0, stats
    assert stats["steal_time_preempted_marks"] > 0, stats


def test_off_by_default(qemu, image_dir, tmp_path):
    console, stats, _ = dedup_run(qemu, image_dir, tmp_path, SCHED)
    assert SETUP_LINE not in console, console[-3000:]
    assert stats["pv_tlb_flushes"] == 0, stats


def test_cpu_with_mwait_gets_a_warning(qemu, image_dir, tmp_path):
    """Linux ignores the feature when the CPU has MWAIT: say so, still run."""
    console, stats, err = dedup_run(qemu, image_dir, tmp_path,
                                    SCHED + ",pv-tlb-flush=on", cpu="max")
    assert "add -monitor to -cpu" in err, err
    assert SETUP_LINE not in console, console[-3000:]
    assert stats["pv_tlb_flushes"] == 0, stats


def test_needs_steal_time(qemu):
    assert_start_refused(qemu, "tcg,vcpu-sched=on,pv-tlb-flush=on",
                         "pv-tlb-flush=on needs steal-time=on")


def test_bad_value_is_refused(qemu):
    assert_start_refused(qemu, "tcg,vcpu-sched=on,steal-time=on,pv-tlb-flush=sometimes",
                         "'pv-tlb-flush'")


def test_fixed_at_boot_and_shown(qemu):
    """The guest reads CPUID at boot: qom-set refuses to change it later."""
    err, info, hmp = boot_time_property(
        qemu, "tcg,vcpu-sched=on,steal-time=on,pv-tlb-flush=on", "pv-tlb-flush")
    assert "cannot change while the VM runs" in err
    assert info["pv-tlb-flush"] is True
    assert "pv_tlb_flushes" in {c["name"] for c in info["counters"]}
    assert "pv-tlb-flush: on" in hmp
