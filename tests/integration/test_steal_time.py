"""KVM's paravirtual steal time for TCG guests (-accel tcg,steal-time=on).

The guest must find KVM at CPUID 0x40000000, register its steal-time
record with MSR_KVM_STEAL_TIME and account steal in /proc/stat; with
steal-time=off it sees TCG and no steal.  The guest is asked through the
image's "shell" workload on a serial console on stdio.

Run: /usr/bin/python3 -m pytest tests/integration/test_steal_time.py
"""

import json
import os
import re
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from conftest import assert_start_refused, boot_time_property  # noqa: E402
from vsched_vm import VM  # noqa: E402

SCHED = "tcg,thread=multi,vcpu-sched=on,pcpus=1"
SHELL_READY = "vsched: debug shell"
# Four busy shells on four vCPUs and one slot: three always wait.  Then the
# facts: the kernel's lines about KVM and the steal column of /proc/stat
# ("cpu" user nice system idle iowait irq softirq steal ...).
GUEST_SCRIPT = (
    "for c in 1 2 3 4; do (n=0; while [ $n -lt 3000 ]; do n=$((n+1)); done) & done; wait; "
    "dmesg | grep -e 'Hypervisor detected' -e stealtime; "
    "awk '/^cpu / { print \"STEAL=\" $9 \"=\" }' /proc/stat; exit\n")


def shell_run(qemu, image_dir, tmp_path, accel, smp=4):
    """Boot the shell workload, run GUEST_SCRIPT; returns (console, stats)."""
    stats = tmp_path / "stats.json"
    # Linux 6.1 logs "kvm-guest: stealtime: cpu N, msr ..." with pr_debug.
    vm = VM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path), smp=smp,
            workload="shell", accel="%s,stats-file=%s" % (accel, stats),
            append='dyndbg="func kvm_register_steal_time +p"')
    cmd = vm.command()
    cmd[cmd.index("-serial") + 1] = "stdio"
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = []

    def reader():
        # The script goes in as one line once the shell shows its first
        # prompt: ash's line editing may drop input typed earlier or
        # between prompts.
        sent = False
        while True:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                return
            out.append(chunk.decode(errors="replace"))
            text = "".join(out)
            if not sent and SHELL_READY in text and \
                    "# " in text[text.index(SHELL_READY):]:
                proc.stdin.write(GUEST_SCRIPT.encode())
                proc.stdin.flush()
                sent = True

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    t.join(timeout=10)
    console = "".join(out)
    err = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, (err, console[-3000:])
    with open(stats) as f:
        return console, json.load(f)


def guest_steal(console):
    m = re.search(r"^STEAL=(\d+)=", console, re.M)
    assert m, console[-3000:]
    return int(m.group(1))


def test_guest_uses_kvm_steal_time(qemu, image_dir, tmp_path):
    console, stats = shell_run(qemu, image_dir, tmp_path, SCHED + ",steal-time=on")
    assert "Hypervisor detected: KVM" in console, console[-3000:]
    # Linux registers the record on every CPU (kvm_register_steal_time);
    # the boot CPU's line comes before dyndbg= is parsed: the APs' show.
    cpus = set(re.findall(r"stealtime: cpu (\d+), msr [0-9a-f]+", console))
    assert {"1", "2", "3"} <= cpus, console[-3000:]
    assert guest_steal(console) > 0
    assert stats["steal_time_updates"] > 0, stats
    assert stats["steal_time_preempted_marks"] > 0, stats


def test_without_steal_time_the_guest_sees_tcg(qemu, image_dir, tmp_path):
    console, stats = shell_run(qemu, image_dir, tmp_path, SCHED)
    assert "Hypervisor detected: KVM" not in console, console[-3000:]
    assert "stealtime:" not in console
    assert guest_steal(console) == 0
    assert stats["steal_time_updates"] == 0, stats
    assert stats["steal_time_preempted_marks"] == 0, stats


def test_bad_value_is_refused(qemu):
    assert_start_refused(qemu, "tcg,vcpu-sched=on,steal-time=maybe", "'steal-time'")


def test_needs_the_scheduler(qemu):
    assert_start_refused(qemu, "tcg,steal-time=on", "steal-time=on needs vcpu-sched=on")


def test_fixed_at_boot_and_shown(qemu):
    """The guest reads CPUID at boot: qom-set refuses to change it later."""
    err, info, hmp = boot_time_property(qemu, "tcg,vcpu-sched=on,steal-time=on",
                                        "steal-time")
    assert "cannot change while the VM runs" in err
    assert info["steal-time"] is True
    names = {c["name"] for c in info["counters"]}
    assert {"steal_time_updates", "steal_time_preempted_marks"} <= names
    assert "steal-time: on" in hmp
