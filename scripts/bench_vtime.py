#!/usr/bin/python3
"""Virtual time against real time: speed, and the physics grid (make bench).

Speed: the same guest (cpuloop, V threads on V vCPUs, P slots) in real time
(MTTCG, host clock) and in virtual time (one thread, lockstep rounds).
Prints guest instructions per host second for both and their ratio.  The
instruction count of the loop comes from a 1-vCPU virtual-time run: at
shift 0 one instruction is one virtual ns, so loop_ns / iterations is the
instructions per iteration.  The host time is measured from the guest's
"workload=" line to its result line in the serial log.

Physics: elapsed of V threads on P slots over the 1-thread time, against
max(1, V/P), for V in {1,2,4,8} and P in {1,2,4}.

Usage: scripts/bench_vtime.py [--iters N] [--smp V] [--pcpus P] [--no-grid]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vsched_vm import VM, VTIME_ICOUNT  # noqa: E402

VTIME = "tcg,thread=single,vcpu-sched=on,time=virtual,pcpus=%d"
REAL = "tcg,thread=multi,vcpu-sched=on,pcpus=%d"


def timed_run(smp, accel, iters, icount=None):
    """Run cpuloop; return (result, host seconds of the workload phase)."""
    vm = VM(smp=smp, workload="cpuloop", accel=accel, args="-n %d" % iters,
            icount=icount, quiet=True)
    vm.start()
    try:
        t0 = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and vm.proc.poll() is None:
            log = vm.read_log()
            if t0 is None and "vsched: workload=" in log:
                t0 = time.monotonic()
            if "VSCHED-RESULT" in log:
                break
            time.sleep(0.02)
        t1 = time.monotonic()
        res = vm.wait(timeout=60)
    finally:
        vm.cleanup()
    if not res.ok or t0 is None:
        raise SystemExit("bench_vtime: run failed: %s" % res.summary())
    return res.result, t1 - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=20000000)
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--pcpus", type=int, default=2)
    p.add_argument("--no-grid", action="store_true")
    a = p.parse_args()

    one, _ = timed_run(1, VTIME % 1, a.iters, VTIME_ICOUNT)
    per_iter = one["loop_ns"] / a.iters
    insns = per_iter * a.iters * a.smp
    print("cpuloop: %.2f instructions per iteration (1-vCPU virtual run)" % per_iter)
    rates = {}
    for mode, accel, icount in (("real", REAL % a.pcpus, None),
                                ("virtual", VTIME % a.pcpus, VTIME_ICOUNT)):
        r, secs = timed_run(a.smp, accel, a.iters, icount)
        rates[mode] = insns / secs
        print("%-8s V=%d P=%d: workload %.2f s host, %.1f M guest instructions "
              "per host second" % (mode, a.smp, a.pcpus, secs, rates[mode] / 1e6))
    print("virtual / real speed: %.2f" % (rates["virtual"] / rates["real"]))
    if a.no_grid:
        return 0
    print("physics (virtual time): elapsed / 1-vCPU elapsed vs max(1, V/P)")
    grid_iters = max(1, a.iters // 8)
    base, _ = timed_run(1, VTIME % 1, grid_iters, VTIME_ICOUNT)
    for pc in (1, 2, 4):
        for v in (1, 2, 4, 8):
            r, _ = timed_run(v, VTIME % pc, grid_iters, VTIME_ICOUNT)
            got = r["loop_ns"] / base["loop_ns"]
            want = max(1.0, v / pc)
            print("  V=%d P=%d: %.4f (model %.2f, %+.2f %%)"
                  % (v, pc, got, want, 100 * (got / want - 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
