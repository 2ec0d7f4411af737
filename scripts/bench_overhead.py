#!/usr/bin/env python3
"""Overhead of vsched in the emulator, A/B interleaved in one run.

Variants, each booting the same guest and workload:
  upstream   QEMU built without our patches (build/qemu-upstream-build)
  off        our QEMU, vcpu-sched=off
  on         our QEMU, vcpu-sched=on, pcpus = vCPUs (no overcommit)
Prints the guest-measured median per variant and the ratio to upstream.
Targets (not asserted): off within 1 %, on within 3 % of upstream.
"""
import argparse
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from vsched_vm import VM  # noqa: E402

OURS = os.path.join(REPO, "build", "qemu-system-x86_64")
UPSTREAM = os.path.join(REPO, "build", "qemu-upstream-build", "qemu-system-x86_64")


def variants(vcpus):
    return [("upstream", UPSTREAM, "tcg,thread=multi"),
            ("off", OURS, "tcg,thread=multi"),
            ("on", OURS, "tcg,thread=multi,vcpu-sched=on,pcpus=%d" % vcpus)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vcpus", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workloads", default="ipistorm:-r 2,spin:")
    a = p.parse_args()
    for spec in a.workloads.split(","):
        workload, _, wargs = spec.partition(":")
        times = {name: [] for name, _, _ in variants(a.vcpus)}
        for rep in range(a.reps):
            for name, qemu, accel in variants(a.vcpus):
                res = VM(qemu=qemu, workload=workload, args=wargs or None,
                         smp=a.vcpus, accel=accel).run(timeout=300)
                print("  %-9s %-8s rep %d: %s" % (workload, name, rep, res.summary()),
                      flush=True)
                if res.ok:
                    times[name].append(res.guest_seconds)
        base = statistics.median(times["upstream"]) if times["upstream"] else None
        print("%s, %d vCPUs, %d reps:" % (workload, a.vcpus, a.reps))
        for name, ts in times.items():
            if not ts:
                print("  %-9s all runs failed" % name)
                continue
            med = statistics.median(ts)
            ratio = " %+.2f %% vs upstream" % (100.0 * (med - base) / base) if base else ""
            print("  %-9s median %.3f s (min %.3f, max %.3f)%s" % (name, med, min(ts), max(ts), ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
