#!/usr/bin/env python3
"""Overhead of vsched in the emulator, A/B interleaved in one run.

Variants, each booting the same guest and workload:
  upstream   QEMU 10.0 built from the same source without our patches
             (build/qemu-upstream-build, made by `make bench`)
  off        our QEMU, vcpu-sched=off
  on         our QEMU, vcpu-sched=on, pcpus = vCPUs (no overcommit)
Each repetition runs every variant once, in a rotated order, so host drift
hits all variants alike.  Prints the guest-measured median per variant, the
ratio of medians to upstream, and the median of the per-repetition ratios
(each run against the upstream run of the same repetition: less sensitive
to slow drift of the host).  Targets (not asserted): off within 1 %, on within
3 % of upstream; the PAUSE loop shows the per-PAUSE cost of the hooks.
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

# name: (workload, args, metric in the result line, unit)
WORKLOADS = {
    "ipistorm": ("ipistorm", "-r 24", "seconds", "s"),
    "dedup": ("dedup", "-m 40", "roi_seconds", "s"),
    "pause": ("spin", "-m pause -n 2000000", "pause_ns", "ns/PAUSE"),
}


def variants(vcpus):
    return [("upstream", UPSTREAM, "tcg,thread=multi"),
            ("off", OURS, "tcg,thread=multi"),
            ("on", OURS, "tcg,thread=multi,vcpu-sched=on,pcpus=%d" % vcpus)]


def measure(workload, args, metric, qemu, accel, vcpus):
    res = VM(qemu=qemu, workload=workload, args=args, smp=vcpus, accel=accel).run(timeout=600)
    value = (res.result or {}).get(metric) if res.ok else None
    return res, value


def run_workload(name, vcpus, reps):
    workload, args, metric, unit = WORKLOADS[name]
    vs = variants(vcpus)
    values = {v[0]: [None] * reps for v in vs}
    for rep in range(reps):
        order = vs[rep % len(vs):] + vs[:rep % len(vs)]
        for vname, qemu, accel in order:
            res, value = measure(workload, args, metric, qemu, accel, vcpus)
            shown = "%s=%s" % (metric, value) if value is not None else res.summary()
            print("  %-8s %-8s rep %d: %s" % (name, vname, rep, shown), flush=True)
            if value is not None:
                values[vname][rep] = float(value)
    return values, metric, unit


def paired_ratio(vals, up):
    """Median of per-repetition ratios to upstream (None if no pair)."""
    ratios = [v / u for v, u in zip(vals, up) if v is not None and u]
    return statistics.median(ratios) if ratios else None


def report(name, vcpus, reps, values, metric, unit):
    up = values["upstream"]
    ok_up = [u for u in up if u is not None]
    base = statistics.median(ok_up) if ok_up else None
    print("%s (%s, %s), %d vCPUs, %d reps; ratios to upstream (>1: slower):"
          % (name, metric, unit, vcpus, reps))
    for vname, vals in values.items():
        ok = [v for v in vals if v is not None]
        if not ok:
            print("  %-9s all runs failed" % vname)
            continue
        med = statistics.median(ok)
        line = "  %-9s median %10.3f  min %10.3f  max %10.3f" % (vname, med, min(ok), max(ok))
        if base:
            line += "  of medians %.4f" % (med / base)
        paired = paired_ratio(vals, up)
        if paired:
            line += "  paired %.4f (%+.2f %%)" % (paired, 100.0 * (paired - 1))
        print(line, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vcpus", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma-separated, from: %s" % ", ".join(WORKLOADS))
    a = p.parse_args()
    names = [w for w in a.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        p.error("unknown workload(s) %s; known: %s" % (", ".join(unknown), ", ".join(WORKLOADS)))
    for q in (OURS, UPSTREAM):
        if not os.access(q, os.X_OK):
            p.error("%s missing: run `make bench` (it builds both)" % q)
    for name in names:
        values, metric, unit = run_workload(name, a.vcpus, a.reps)
        report(name, a.vcpus, a.reps, values, metric, unit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
