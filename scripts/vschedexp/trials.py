"""Trials: the plan (points, rounds of interleaved variants), one trial (all
the VMs of a point started together on one pool), and the loop over points
with the --until-ci stopping rule."""

import concurrent.futures
import datetime
import json
import os
import threading
from dataclasses import dataclass

import vsched_vm

from vschedexp import summary
from vschedexp.spec import OFF, points_of, seed_of, vcpus_of

# Latency: the workload's region of interest when it reports one.
LATENCY_KEYS = ("roi_seconds", "hackbench_seconds", "seconds")
# Guest-side checks surfaced as columns (value "ok" expected when present).
CHECK_KEYS = ("roundtrip", "size_check")

ROW_FIELDS = [
    "run_id", "spec", "trial", "point", "workload", "size", "args", "vms", "vm_index", "vcpus",
    "pcpus", "pool_mode", "pool", "policy", "relaxed_boost", "variant", "rep", "order",
    "status", "reason", "latency_seconds", "latency_key", "guest_seconds", "boot_seconds",
    "wall_seconds", "time", "icount", "seed", "virtual_seconds", "host_seconds",
    "cpu_seconds", "boot_cpu_seconds", "check", "roundtrip", "size_check", "failure_line",
    "memory_mb",
    "threads", "timeout", "accel", "qemu", "qemu_version", "git_commit", "host", "host_cpus",
    "started_at", "log", "stats_file", "result_json",
]



@dataclass(frozen=True)
class Trial:
    """One variant at one point, repetition rep; order: its place in the round."""
    point: str
    workload: dict
    vms: int
    rep: int
    order: int
    variant: dict


def round_trials(spec, point, rep):
    """Repetition rep of a point: every variant once, rotated by rep (A/B
    interleaving: drift and host noise spread over all variants)."""
    nv = len(spec["variants"])
    return [Trial(point.id, point.workload, point.vms, rep, k,
                  spec["variants"][(k + rep) % nv]) for k in range(nv)]


def plan(spec):
    """The list of trials, in run order: points, then reps, then rotated variants."""
    return [t for p in points_of(spec) for rep in range(spec["repetitions"])
            for t in round_trials(spec, p, rep)]


def refused_points(spec, has_pool):
    """Points this QEMU cannot run, as {point: message}."""
    out = {}
    if spec["pool"] != "shared":
        return out
    for w in spec["workloads"]:
        for nvms in spec["vms"]:
            if nvms < 2:
                continue
            pid = "%s-%s-%dvm" % (w["name"], w["size"], nvms)
            if not has_pool:
                out[pid] = (
                    "refused: %d VMs on one shared pool need QEMU's pool= property "
                    "(-accel tcg,pool=NAME), which this build lacks "
                    "(qemu-system-x86_64 -accel tcg,help); set pool = \"separate\" "
                    "to give each VM its own %d slots instead" % (nvms, spec["pcpus"]))
    return out


def accel_of(spec, variant, stats_file, pool_name, pool_members=1):
    """The -accel value of one VM: real time runs MTTCG (one host thread per
    vCPU), virtual time the single round-robin thread on instruction counts.
    A virtual-time pool waits for all pool_members VMs before its first
    round (pool-members=N): otherwise the VM released first would run alone
    for a host-timed stretch."""
    if variant["policy"] == OFF:
        # upstream QEMU: no slots, no pool; the host kernel shares the cores
        accel = "tcg,thread=multi,vcpu-sched=off"
        if variant.get("extra"):
            accel += "," + variant["extra"].replace("+", ",")
        return accel
    thread = "single" if spec.get("time") == "virtual" else "multi"
    accel = ("tcg,thread=%s,vcpu-sched=on,pcpus=%d,directed-yield=%s,relaxed-boost=%s,"
             "stats-file=%s" % (thread, spec["pcpus"], variant["policy"],
                                "on" if variant["relaxed_boost"] else "off", stats_file))
    if spec.get("time") == "virtual":
        accel += ",time=virtual"
        if spec["quantum"] is not None:
            accel += ",quantum=%d" % spec["quantum"]
    if pool_name:
        accel += ",pool=%s" % pool_name
        if spec.get("time") == "virtual":
            accel += ",pool-members=%d" % pool_members
    if spec["accel_extra"]:
        accel += "," + spec["accel_extra"]
    if variant.get("extra"):
        accel += "," + variant["extra"].replace("+", ",")
    return accel


def icount_of(spec):
    """-icount for virtual time (None in real time): a fixed shift, no sleep."""
    if spec.get("time") != "virtual":
        return None
    return "shift=%d,sleep=off" % spec["shift"]


# ---------------------------------------------------------------- run
def latency_of(result):
    for k in LATENCY_KEYS:
        v = (result or {}).get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v), k
    return None, None


def run_trial(spec, trial, ctx, tno):
    """Start the trial's VMs together (paused, then released at once when
    there are several), wait for all of them; one row per VM."""
    tag = "t%04d-%s-%s-r%d" % (tno, trial.point, trial.variant["label"].replace("/", "-"),
                               trial.rep)
    pool_name = ""
    if spec["pool"] == "shared" and trial.vms > 1 and trial.variant["policy"] != OFF:
        pool_name = "vsched-%s-%d-t%d" % (ctx["run_id"], os.getpid(), tno)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    vms = [_make_vm(spec, trial, ctx, tag, i, pool_name) for i in range(trial.vms)]
    results = _run_together(spec, [vm for vm, _, _ in vms])
    return [_row(spec, trial, ctx, tno, i, vm, pool_name, started, res)
            for i, (vm, res) in enumerate(zip(vms, results))]


def _make_vm(spec, trial, ctx, tag, i, pool_name):
    w, v = trial.workload, trial.variant
    stats_file = os.path.join(ctx["outdir"], "stats", "%s-vm%d.json" % (tag, i))
    accel = accel_of(spec, v, stats_file, pool_name, trial.vms)
    vm = vsched_vm.VM(workload=w["name"], smp=vcpus_of(spec, trial.vms), accel=accel,
                      qemu=ctx["qemu"], image_dir=ctx["image"],
                      icount=icount_of(spec), seed=seed_of(spec, trial.rep),
                      memory=w["memory_mb"] or spec["memory_mb"], cpu=spec["cpu"],
                      args=w["args"] or None, size=w["size"], threads=w["threads"],
                      extra_args=["-S"] if trial.vms > 1 else [],
                      log_path=os.path.join(ctx["outdir"], "logs", "%s-vm%d.log" % (tag, i)))
    if os.path.exists(stats_file):
        os.unlink(stats_file)
    return vm, stats_file, accel


# Every VM of a running trial, so that an interrupted run with --jobs can
# stop the VMs of the trials still running in worker threads.
_LIVE = set()
_LIVE_LOCK = threading.Lock()


def kill_live_vms():
    with _LIVE_LOCK:
        vms = list(_LIVE)
    for vm in vms:
        vm.kill()


def _run_together(spec, vms):
    """Start every VM, release them together, wait for all: their Results."""
    results = [None] * len(vms)
    with _LIVE_LOCK:
        _LIVE.update(vms)

    def waiter(i, vm):
        try:
            results[i] = vm.wait(timeout=spec["timeout"])
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            r = vsched_vm.Result()
            r.reason = "harness error: %s" % e
            results[i] = r
        finally:
            vm.kill()

    try:
        for vm in vms:
            vm.start()
        if len(vms) > 1:
            # started paused (-S): let them all go at once, so their workloads overlap
            for vm in vms:
                vm.qmp.execute("cont")
        threads = [threading.Thread(target=waiter, args=(i, vm), daemon=True)
                   for i, vm in enumerate(vms)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for vm in vms:
            vm.kill()
        with _LIVE_LOCK:
            _LIVE.difference_update(vms)
    return results


def _row(spec, trial, ctx, tno, i, made, pool_name, started, res):
    vm, stats_file, accel = made
    w, v = trial.workload, trial.variant
    r = res.result or {}
    lat, key = latency_of(r) if res.ok else (None, None)
    checks = {k: r.get(k) for k in CHECK_KEYS if k in r}
    check = "ok" if all(val == "ok" for val in checks.values()) else "FAIL"
    row = {
        "run_id": ctx["run_id"], "spec": spec["name"], "trial": tno,
        "point": trial.point, "timeout": spec["timeout"],
        "workload": w["name"], "size": w["size"], "args": w["args"], "vms": trial.vms,
        "vm_index": i, "vcpus": vcpus_of(spec, trial.vms), "pcpus": spec["pcpus"],
        "pool_mode": spec["pool"] if trial.vms > 1 else "single", "pool": pool_name,
        "policy": v["policy"], "relaxed_boost": v["relaxed_boost"], "variant": v["label"],
        "rep": trial.rep, "order": trial.order,
        "status": "ok" if res.ok and lat is not None else "failed",
        "reason": None if res.ok and lat is not None else (res.reason or "no latency"),
        "latency_seconds": lat, "latency_key": key,
        "guest_seconds": res.guest_seconds if res.ok else None,
        "boot_seconds": r.get("boot_seconds"),
        "wall_seconds": round(res.wall_seconds, 3) if res.wall_seconds else None,
        "time": spec.get("time", "real"), "icount": vm.icount or "",
        "seed": seed_of(spec, trial.rep),
        # in virtual time the guest's clock is the model's: its latency is exact
        "virtual_seconds": lat if spec.get("time") == "virtual" else None,
        "host_seconds": (round(res.host_workload_seconds, 3)
                         if res.host_workload_seconds is not None else None),
        "cpu_seconds": round(res.cpu_seconds, 2) if res.cpu_seconds is not None else None,
        "boot_cpu_seconds": (round(res.boot_cpu_seconds, 2)
                             if res.boot_cpu_seconds is not None else None),
        "check": check if checks else "", "roundtrip": r.get("roundtrip", ""),
        "size_check": r.get("size_check", ""), "failure_line": res.failure_line,
        "memory_mb": vm.memory, "threads": r.get("threads"), "accel": accel,
        "qemu": ctx["qemu"], "qemu_version": ctx["qemu_version"],
        "git_commit": ctx["git_commit"], "host": ctx["host"], "host_cpus": ctx["host_cpus"],
        "started_at": started, "log": os.path.relpath(vm.log_path, ctx["outdir"]),
        "stats_file": (os.path.relpath(stats_file, ctx["outdir"])
                       if os.path.exists(stats_file) else ""),
        "result_json": json.dumps(r, sort_keys=True) if r else "",
    }
    if res.ok and checks and check != "ok":
        row["status"], row["reason"] = "failed", "guest check failed: %s" % checks
        row["latency_seconds"] = None
    row["counters"] = _counters(stats_file)
    return row


def _counters(stats_file):
    try:
        with open(stats_file) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


@dataclass
class CellStop:
    """Where --until-ci stopped a point."""
    reps: int
    width: float        # widest interval against the baseline, points (None: too few)
    target: float
    reached: bool


def run_points(spec, trial_fn, rows, opts, skip=(), until_ci=None, max_reps=None,
               on_trial=None, jobs=1):
    """Run every point's repetitions, appending trial_fn(trial, tno)'s rows.

    jobs > 1 (virtual time only: there a trial's result does not depend on
    what else the host runs) runs that many trials at once; rows keep plan
    order.

    With until_ci (percentage points): after the spec's repetitions, keep
    adding rounds to a point until its widest interval against the baseline
    is narrower than until_ci, or max_reps rounds ran. Returns, per point run
    that way, its CellStop."""
    if jobs > 1 and until_ci is None:
        _run_parallel(spec, trial_fn, rows, skip, on_trial, jobs)
        return {}
    tno, reached = 0, {}
    for point in points_of(spec):
        if point.id in skip:
            continue
        rep = 0
        while True:
            for trial in round_trials(spec, point, rep):
                tno += 1
                trows = trial_fn(trial, tno)
                rows.extend(trows)
                if on_trial:
                    on_trial(trial, tno, trows)
            rep += 1
            if rep < spec["repetitions"]:
                continue
            if until_ci is None:
                break
            width = summary.cell_width(spec, rows, point.id, opts)
            done = width is not None and width < until_ci
            if done or rep >= max_reps:
                reached[point.id] = CellStop(rep, width, until_ci, done)
                break
    return reached


def _run_parallel(spec, trial_fn, rows, skip, on_trial, jobs):
    """The plan's trials, jobs at a time; rows appended in plan order, each
    trial reported (on_trial) as it ends."""
    todo = [t for t in plan(spec) if t.point not in skip]
    done, lock = {}, threading.Lock()

    def one(tno, trial):
        trows = trial_fn(trial, tno)
        with lock:
            done[tno] = trows
            rows[:] = [r for n in sorted(done) for r in done[n]]
            if on_trial:
                on_trial(trial, tno, trows)
        return trows

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, n, t) for n, t in enumerate(todo, 1)]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            kill_live_vms()
            raise
