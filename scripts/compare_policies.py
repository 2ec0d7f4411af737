#!/usr/bin/env python3
"""The main job, first cut: one overcommitted VM per policy, same workload.

Boots the test guest (VCPUS vCPUs on PCPUS slots) once per directed-yield
policy, A/B interleaved over REPS repetitions, and prints the guest-measured
latency (median and spread) with the reduction against `vanilla`, plus the
counters that explain it.  Writes results as JSON and a PNG plot.

Usage: compare_policies.py [--vcpus 8] [--pcpus 2] [--reps 1]
                           [--workload ipistorm] [--args "-r 4"] [--out DIR]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from vsched_vm import VM  # noqa: E402

POLICIES = [("none", True), ("vanilla", True), ("ipi", True), ("ipi", False),
            ("ipi-prio", True)]
SHOWN = ["spins_detected", "yield_strict", "yield_relaxed", "yield_scan",
         "yield_receiver", "no_target", "handoffs", "preemptions"]


def label(policy, relaxed):
    return policy if relaxed or policy not in ("ipi", "ipi-prio") else policy + "/strict"


def run_one(args, policy, relaxed, rep):
    stats = os.path.join(args.out, "stats-%s-%d.json" % (label(policy, relaxed).replace("/", "-"), rep))
    accel = ("tcg,thread=multi,vcpu-sched=on,pcpus=%d,directed-yield=%s,"
             "relaxed-boost=%s,stats-file=%s" % (args.pcpus, policy,
                                                 "on" if relaxed else "off", stats))
    vm = VM(workload=args.workload, args=args.args, smp=args.vcpus, accel=accel,
            log_path=os.path.join(args.out, "serial-%s-%d.log" % (label(policy, relaxed).replace("/", "-"), rep)))
    res = vm.run(timeout=args.timeout)
    row = {"policy": policy, "relaxed_boost": relaxed, "rep": rep,
           "vcpus": args.vcpus, "pcpus": args.pcpus, "workload": args.workload,
           "args": args.args, "status": "ok" if res.ok else "failed",
           "reason": None if res.ok else res.reason,
           "seconds": res.guest_seconds if res.ok else None,
           "wall_seconds": res.wall_seconds}
    if res.ok and os.path.exists(stats):
        with open(stats) as f:
            row["counters"] = json.load(f)
    return row


def summarize(rows):
    table = []
    base = None
    for policy, relaxed in POLICIES:
        lab = label(policy, relaxed)
        runs = [r for r in rows if label(r["policy"], r["relaxed_boost"]) == lab]
        ok = [r["seconds"] for r in runs if r["status"] == "ok"]
        med = statistics.median(ok) if ok else None
        if lab == "vanilla":
            base = med
        table.append((lab, med, (min(ok), max(ok)) if ok else None,
                      len(runs) - len(ok), runs))
    return table, base


def print_table(table, base):
    head = "%-16s %9s %17s %8s  " % ("policy", "median s", "min..max", "vs vanilla")
    print(head + " ".join("%10s" % c[:10] for c in SHOWN))
    for lab, med, spread, failed, runs in table:
        if med is None:
            print("%-16s %9s (all %d runs failed: %s)" % (lab, "-", failed,
                  ", ".join(r["reason"] or "?" for r in runs)))
            continue
        red = "%+.1f%%" % (100.0 * (base - med) / base) if base else "-"
        ctr = [r.get("counters", {}) for r in runs if r["status"] == "ok"]
        vals = [statistics.median(c.get(k, 0) for c in ctr) for k in SHOWN]
        print("%-16s %9.3f %8.3f..%-8.3f %8s  " % (lab, med, spread[0], spread[1], red)
              + " ".join("%10d" % v for v in vals)
              + ("  (%d failed)" % failed if failed else ""))


def plot(table, base, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labs = [t[0] for t in table if t[1] is not None]
    meds = [t[1] for t in table if t[1] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(labs, meds, color=["#999", "#4a7", "#47c", "#8ad", "#c74"][:len(labs)])
    for b, m in zip(bars, meds):
        txt = "%.2fs" % m
        if base:
            txt += "\n%+.1f%%" % (100.0 * (base - m) / base)
        ax.annotate(txt, (b.get_x() + b.get_width() / 2, m), ha="center", va="bottom")
    ax.set_ylabel("guest latency, s (median)")
    ax.set_title("directed-yield policies, one overcommitted VM")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vcpus", type=int, default=8)
    p.add_argument("--pcpus", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--workload", default="ipistorm")
    p.add_argument("--args", default="-r 4")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out", default=os.path.join(REPO, "build", "results",
                                                  time.strftime("run-%Y%m%d-%H%M%S")))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for rep in range(args.reps):
        for policy, relaxed in POLICIES:
            print("run %d/%d: %s" % (len(rows) + 1, args.reps * len(POLICIES),
                                     label(policy, relaxed)), flush=True)
            rows.append(run_one(args, policy, relaxed, rep))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    table, base = summarize(rows)
    print()
    print_table(table, base)
    png = os.path.join(args.out, "policies.png")
    plot(table, base, png)
    print("\nresults: %s\nplot: %s" % (os.path.join(args.out, "results.json"), png))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
