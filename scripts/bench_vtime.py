#!/usr/bin/python3
"""Virtual time against real time: speed, and the physics grid (make bench).

Speed, two figures, each the median of --reps runs with its range:

1. cpuloop (V threads on V vCPUs, P slots, nothing shared): guest
   instructions per host second in real time (MTTCG, and round robin) and
   in virtual time (one thread, lockstep rounds), and virtual / real.  The
   loop's instruction count comes from a 1-vCPU virtual-time run: at shift
   0 one instruction is one virtual ns, so loop_ns / iterations is the
   instructions per iteration.  Host time is taken from the guest's
   "workload=" line to its result line: wall seconds and QEMU's CPU
   seconds (utime + stime; on a shared host the CPU seconds are the
   steadier figure).
2. dedup (1 VM, --dedup-vcpus vCPUs on --dedup-pcpus slots, ipi): the host
   CPU seconds the same job takes in real and in virtual time (the guest
   spins differently in each, so instructions are not comparable), and in
   virtual time the executed instructions per CPU second of the whole run
   and per run (vtime_executed, vtime_runs of the stats file).

Physics: elapsed of V threads on P slots over the 1-thread time, against
max(1, V/P), for V in {1,2,4,8} and P in {1,2,4}.

Figures only, nothing asserted; real-time figures move with the host's load.

Usage: scripts/bench_vtime.py [--iters N] [--smp V] [--pcpus P] [--reps R]
                              [--no-dedup] [--no-grid]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vsched_vm import VM, VTIME_ICOUNT  # noqa: E402

VTIME = "tcg,thread=single,vcpu-sched=on,time=virtual,pcpus=%d"
REAL = "tcg,thread=multi,vcpu-sched=on,pcpus=%d"
REAL_RR = "tcg,thread=single,vcpu-sched=on,pcpus=%d"


def timed_run(smp, accel, iters=None, icount=None, workload="cpuloop", args=None):
    """Run a workload; return (result, wall s, CPU s of the workload phase,
    CPU s of the whole run, stats-file counters or {})."""
    if args is None:
        args = "-n %d" % iters
    stats = tempfile.mktemp(prefix="vsched-bench-", suffix=".json")
    vm = VM(smp=smp, workload=workload, accel=accel + ",stats-file=" + stats,
            args=args, icount=icount, quiet=True)
    vm.start()
    try:
        t0 = c0 = c1 = None
        cpu = 0.0
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and vm.proc.poll() is None:
            log = vm.read_log()
            cpu = vm.cpu_seconds() or cpu
            if t0 is None and "vsched: workload=" in log:
                t0, c0 = time.monotonic(), cpu
            if "VSCHED-RESULT" in log:
                c1 = cpu
                break
            time.sleep(0.02)
        t1 = time.monotonic()
        res = vm.wait(timeout=1800)
    finally:
        vm.cleanup()
    counters = {}
    try:
        with open(stats) as f:
            counters = json.load(f)
        os.unlink(stats)
    except (OSError, ValueError):
        pass
    if not res.ok or t0 is None or c1 is None:
        raise SystemExit("bench_vtime: run failed: %s" % res.summary())
    return res.result, t1 - t0, c1 - c0, res.cpu_seconds or cpu, counters


def med(values):
    """'median (min..max)' of a list of numbers."""
    return "%.1f (%.1f..%.1f)" % (statistics.median(values), min(values), max(values))


def speed_cpuloop(a):
    one = timed_run(1, VTIME % 1, a.iters, VTIME_ICOUNT)[0]
    per_iter = one["loop_ns"] / a.iters
    insns = per_iter * a.iters * a.smp
    print("cpuloop: %.2f instructions per iteration (1-vCPU virtual run), "
          "V=%d P=%d, %d runs each" % (per_iter, a.smp, a.pcpus, a.reps))
    rates = {}
    modes = (("real MTTCG", REAL % a.pcpus, None),
             ("real RR", REAL_RR % a.pcpus, None),
             ("virtual", VTIME % a.pcpus, VTIME_ICOUNT))
    for _ in range(a.reps):
        for mode, accel, icount in modes:   # interleaved: load drifts
            _, wall, cpu, _, _ = timed_run(a.smp, accel, a.iters, icount)
            r = rates.setdefault(mode, {"wall": [], "cpu": []})
            r["wall"].append(insns / wall / 1e6)
            r["cpu"].append(insns / max(cpu, 0.01) / 1e6)
    for mode, _, _ in modes:
        print("  %-11s M guest instructions per host wall s %s, per CPU s %s"
              % (mode, med(rates[mode]["wall"]), med(rates[mode]["cpu"])))
    v = rates["virtual"]
    for mode in ("real MTTCG", "real RR"):
        r = rates[mode]
        print("  virtual / %-10s per wall s %.2f, per CPU s %.2f"
              % (mode, statistics.median(v["wall"]) / statistics.median(r["wall"]),
                 statistics.median(v["cpu"]) / statistics.median(r["cpu"])))


def speed_dedup(a):
    args = a.dedup_args
    print("dedup %s: 1 VM x %d vCPUs on %d slots, ipi, %d runs each"
          % (args, a.dedup_vcpus, a.dedup_pcpus, a.reps))
    out = {"real": [], "virtual": []}
    vrate, vrun, vtotal = [], [], []
    for _ in range(a.reps):
        for mode, accel, icount in (
                ("real", REAL % a.dedup_pcpus, None),
                ("virtual", VTIME % a.dedup_pcpus, VTIME_ICOUNT)):
            accel += ",directed-yield=ipi"
            _, _, cpu, total, ctr = timed_run(a.dedup_vcpus, accel, icount=icount,
                                              workload="dedup", args=args)
            out[mode].append(cpu)
            if mode == "virtual" and ctr.get("vtime_executed"):
                vtotal.append(total)
                vrate.append(ctr["vtime_executed"] / total / 1e6)
                vrun.append(ctr["vtime_executed"] / max(1, ctr["vtime_runs"]))
    print("  host CPU s of the workload: real %s, virtual %s, virtual / real %.2f"
          % (med(out["real"]), med(out["virtual"]),
             statistics.median(out["virtual"]) / statistics.median(out["real"])))
    if vrate:
        print("  virtual, whole run (boot included): %s CPU s, M executed "
              "instructions per CPU s %s, instructions per run %s"
              % (med(vtotal), med(vrate), med(vrun)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=20000000)
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--pcpus", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--dedup-vcpus", type=int, default=8)
    p.add_argument("--dedup-pcpus", type=int, default=2)
    p.add_argument("--dedup-args", default="-m 2")
    p.add_argument("--no-cpuloop", action="store_true")
    p.add_argument("--no-dedup", action="store_true")
    p.add_argument("--no-grid", action="store_true")
    a = p.parse_args()

    if not a.no_cpuloop:
        speed_cpuloop(a)
    if not a.no_dedup:
        speed_dedup(a)
    if a.no_grid:
        return 0
    print("physics (virtual time): elapsed / 1-vCPU elapsed vs max(1, V/P)")
    grid_iters = max(1, a.iters // 8)
    base = timed_run(1, VTIME % 1, grid_iters, VTIME_ICOUNT)[0]
    for pc in (1, 2, 4):
        for v in (1, 2, 4, 8):
            r = timed_run(v, VTIME % pc, grid_iters, VTIME_ICOUNT)[0]
            got = r["loop_ns"] / base["loop_ns"]
            want = max(1.0, v / pc)
            print("  V=%d P=%d: %.4f (model %.2f, %+.2f %%)"
                  % (v, pc, got, want, 100 * (got / want - 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
