"""The command line (scripts/experiment.py) and a run from start to end."""

import argparse
import datetime
import os
import platform
import signal
import socket
import sys
import time
from dataclasses import asdict

import vsched_vm

from vschedexp import ceiling, expected, host, report, stats, trials
from vschedexp.spec import SpecError, load_spec, raw_from, validate_spec, vcpus_of


def parser():
    p = argparse.ArgumentParser(description="Run a vsched experiment spec.")
    p.add_argument("spec", nargs="?", help="spec file (TOML or JSON), e.g. experiments/default.toml")
    p.add_argument("--bench", action="store_true",
                   help="run the benchmark matrix (experiments/bench.toml)")
    p.add_argument("--check", action="store_true", help="validate the spec and exit")
    p.add_argument("--report", metavar="DIR",
                   help="rewrite table.txt, summary.json and plot.png of a results directory "
                        "(for example of an interrupted run) and print the table")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="pool the runs of these results directories (one spec, e.g. two "
                        "runs of it) into --out and report them")
    p.add_argument("--ceiling", nargs=2, metavar=("IDEAL", "DIR"),
                   help="the most any policy could still gain in each cell of results DIR, "
                        "from the unscheduled runs in IDEAL (e.g. of "
                        "experiments/series-ideal-vtime.toml); writes DIR/ceiling.txt")
    p.add_argument("--list", action="store_true", help="print the planned trials and exit")
    p.add_argument("--qemu", help="QEMU binary (env VSCHED_QEMU)")
    p.add_argument("--image", help="guest image directory (env VSCHED_IMAGE)")
    p.add_argument("--out", help="output directory (default build/results/<run-id>)")
    p.add_argument("--run-id", help="run id (default NAME-DATE-PID)")
    p.add_argument("--reps", type=int, help="override 'repetitions'")
    p.add_argument("--pool", choices=("shared", "separate"), help="override 'pool'")
    p.add_argument("--time", choices=("real", "virtual"),
                   help="override 'time' (the same spec on the other time base; --time "
                        "real drops shift, quantum and seed)")
    p.add_argument("--vms", help="override 'vms' (comma-separated VM counts)")
    p.add_argument("--workloads", help="keep only these workloads (comma-separated names)")
    p.add_argument("--no-build", action="store_true", help="do not (re)build the guest image")
    p.add_argument("--qemu-patience", type=float, default=120,
                   help="seconds to wait for a QEMU binary that is being rebuilt")
    p.add_argument("--until-ci", type=float, metavar="WIDTH",
                   help="after the spec's repetitions, add interleaved rounds to each point "
                        "until every variant's 95%% interval against the baseline is "
                        "narrower than WIDTH percentage points (or --max-reps)")
    p.add_argument("--max-reps", type=int, default=20,
                   help="cap on repetitions per point with --until-ci (default %(default)s)")
    p.add_argument("--unit", choices=stats.UNITS, default="trial",
                   help="what the bootstrap and the rank test resample: a trial's VM runs "
                        "together (default) or every VM run on its own")
    p.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                   help="bootstrap resamples per comparison (default %(default)s)")
    p.add_argument("--jobs", type=int, default=1,
                   help="time = \"virtual\" only: run this many trials at once (their "
                        "results do not depend on the host's load; default 1)")
    p.add_argument("--record-expected", action="store_true",
                   help="virtual time, one seed: write the reductions against the baseline "
                        "to SPEC.expected.toml (the CI regression's values)")
    p.add_argument("--expect", action="store_true",
                   help="compare the reductions with SPEC.expected.toml; exit status 4 "
                        "when one moved (the message says how to re-record)")
    return p


def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    if a.resamples < 100:
        p.error("--resamples: at least 100")
    if a.until_ci is not None and not a.until_ci > 0:
        p.error("--until-ci: a width in percentage points > 0")
    opts = stats.Options(a.unit, a.resamples)
    if a.report:
        return report.report(a.report, opts)
    if a.ceiling:
        return ceiling.main(*a.ceiling)
    if a.merge:
        if not a.out:
            p.error("--merge needs --out DIR")
        return report.merge(a.out, a.merge, opts)
    path = a.spec
    if a.bench:
        path = path or os.path.join(host.REPO, "experiments", "bench.toml")
    if not path:
        p.error("a spec file is needed (or --bench)")
    a.spec = path
    qemu = qemu_of(a)
    try:
        spec = spec_of(path, a, qemu)
    except SpecError as e:
        print("experiment: %s" % e, file=sys.stderr)
        return 2
    if (a.record_expected or a.expect) and (spec["time"] != "virtual"
                                            or spec["repetitions"] != 1):
        print("experiment: --record-expected and --expect need time = \"virtual\" and one "
              "seed (repetitions = 1): only then are the reductions exact", file=sys.stderr)
        return 2
    if a.jobs < 1:
        p.error("--jobs: at least 1")
    if a.jobs > 1 and (spec["time"] != "virtual" or a.until_ci):
        print("experiment: --jobs needs time = \"virtual\" and no --until-ci: in real "
              "time concurrent trials slow each other down", file=sys.stderr)
        return 2
    if a.record_expected and a.expect:
        p.error("--record-expected and --expect exclude each other")
    if a.until_ci and a.max_reps < spec["repetitions"]:
        print("experiment: --max-reps %d is below the spec's %d repetitions"
              % (a.max_reps, spec["repetitions"]), file=sys.stderr)
        return 2
    if a.check:
        print("experiment: %s ok: %d trials" % (path, len(trials.plan(spec))))
        return 0
    if a.list:
        for n, t in enumerate(trials.plan(spec), 1):
            print("%4d %s %s rep %d" % (n, t.point, t.variant["label"], t.rep + 1))
        return 0
    return run(spec, a, qemu, opts)


def qemu_of(a):
    return a.qemu or os.environ.get("VSCHED_QEMU") or vsched_vm.DEFAULT_QEMU


def spec_of(path, a, qemu):
    """The spec file with the command line's overrides, checked against the
    policies the QEMU binary names (the built-in list when it is missing)."""
    policies = host.qemu_policies(qemu) if os.path.isfile(qemu) else None
    try:
        spec = load_spec(path, policies)
    except SpecError as e:
        if "'policies'" in str(e) or "'variants'" in str(e):
            raise SpecError(str(e) + (" (the policies of %s)" % qemu if policies else
                                      " (built-in list: %s not found)" % qemu))
        raise
    over = {}
    if a.reps is not None:
        over["repetitions"] = a.reps
    if a.pool:
        over["pool"] = a.pool
    if a.time:
        over["time"] = a.time
        if a.time == "real":
            over.update(shift=None, quantum=None, seed=None)
    if a.vms:
        try:
            over["vms"] = [int(x) for x in a.vms.split(",")]
        except ValueError:
            raise SpecError("--vms: expected comma-separated integers, got %r" % a.vms)
        if isinstance(spec["vcpus"], list):
            # vCPUs per VM count: keep those of the chosen counts
            missing = [n for n in over["vms"] if n not in spec["vms"]]
            if missing:
                raise SpecError("--vms: %s not in the spec's vms %s (its vcpus is a list, "
                                "one per VM count)" % (missing, spec["vms"]))
            over["vcpus"] = [vcpus_of(spec, n) for n in over["vms"]]
    if a.workloads:
        keep = a.workloads.split(",")
        over["workloads"] = [w for w in spec["workloads"] if w["name"] in keep]
        if not over["workloads"]:
            raise SpecError("--workloads: none of %s in the spec" % keep)
    if over:
        raw = {k: v for k, v in dict(raw_from(spec), **over).items() if v is not None}
        spec = validate_spec(raw, policies)
    return spec


def fmt_dur(s):
    s = int(s)
    return "%d:%02d:%02d" % (s // 3600, s % 3600 // 60, s % 60) if s >= 3600 else \
        "%d:%02d" % (s // 60, s % 60)


def run(spec, args, qemu, opts):
    """Run the spec's trials; write and print the report. Exit status: 0 all
    ok, 1 some runs failed, 2 setup, 3 points refused, 130 interrupted."""
    if not host.wait_for_qemu(qemu, args.qemu_patience):
        print("experiment: QEMU %s not found (make, or --qemu / VSCHED_QEMU)" % qemu,
              file=sys.stderr)
        return 2
    image = args.image or spec["image"] or os.environ.get("VSCHED_IMAGE") or \
        vsched_vm.DEFAULT_IMAGE
    if not args.no_build:
        try:
            host.build_image(image)
        except RuntimeError as e:
            print("experiment: %s" % e, file=sys.stderr)
            return 2
    has_pool = host.qemu_has_pool(qemu)
    refused = trials.refused_points(spec, has_pool)
    run_id = args.run_id or "%s-%s-%d" % (spec["name"], time.strftime("%Y%m%d-%H%M%S"),
                                          os.getpid())
    outdir = os.path.abspath(args.out or os.path.join(host.REPO, "build", "results", run_id))
    for d in ("", "logs", "stats"):
        os.makedirs(os.path.join(outdir, d), exist_ok=True)
    meta = {"run_id": run_id, "qemu": qemu, "qemu_version": host.qemu_version(qemu),
            "qemu_has_pool": has_pool, "git_commit": host.git_commit(), "image": image,
            "host": socket.gethostname(), "host_cpus": os.cpu_count() or 0,
            "python": platform.python_version(), "spec_path": os.path.abspath(args.spec),
            "jobs": args.jobs,
            "started_at": datetime.datetime.now().isoformat(timespec="seconds")}
    if args.until_ci:
        meta["until_ci"] = {"target": args.until_ci, "max_reps": args.max_reps, "points": {}}
    planned = [t for t in trials.plan(spec) if t.point not in refused]
    for pid, msg in refused.items():
        print("experiment: %s: %s" % (pid, msg), file=sys.stderr)
    print("experiment %s: %s%d trials (%d VM runs, %s time) -> %s" % (
        spec["name"], "at least " if args.until_ci else "", len(planned),
        sum(t.vms for t in planned), spec["time"], outdir), flush=True)
    rows = []
    status = _run_all(spec, args, qemu, opts, dict(meta, outdir=outdir), meta, rows, refused,
                      None if args.until_ci else len(planned))
    print()
    points = report.write_report(outdir, spec, meta, rows, refused, opts)
    print("results: %s" % os.path.join(outdir, "runs.csv"))
    if status:
        return status
    if args.record_expected or args.expect:
        return _expected(spec, args, meta, points)
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        print("experiment: %d of %d runs failed" % (failed, len(rows)), file=sys.stderr)
        return 1
    return 3 if refused else 0


def _expected(spec, args, meta, points):
    """--record-expected writes SPEC.expected.toml, --expect compares with it
    (exit status 4 when a reduction moved)."""
    path = expected.expected_path(args.spec)
    try:
        if args.record_expected:
            red = expected.write(path, spec, points, meta, args.spec)
            print("expected reductions recorded in %s: %s" % (path, red))
            return 0
        diffs = expected.differences(expected.load(path), spec, points)
    except expected.ExpectedError as e:
        print("experiment: %s" % e, file=sys.stderr)
        return 2
    if diffs:
        print("experiment: the reductions differ from %s:\n  %s\nIf the change is intended, "
              "re-record them: %s" % (path, "\n  ".join(diffs),
                                     expected.record_command(args.spec)), file=sys.stderr)
        return 4
    print("expected reductions: all match %s" % path)
    return 0


def _run_all(spec, args, qemu, opts, ctx, meta, rows, refused, total):
    """The trials, appending to rows: 0, 2 (setup broke off) or 130 (interrupted)."""
    def on_term(*_):
        raise KeyboardInterrupt
    old_term = signal.signal(signal.SIGTERM, on_term)
    t_start = time.monotonic()
    status = 0
    try:
        reached = trials.run_points(
            spec, _trial_runner(spec, ctx, args, qemu), rows, opts, skip=refused,
            until_ci=args.until_ci, max_reps=args.max_reps,
            on_trial=_progress(spec, meta, rows, refused, ctx["outdir"], t_start, total),
            jobs=args.jobs)
        if args.until_ci:
            meta["until_ci"]["points"] = {k: asdict(v) for k, v in reached.items()}
    except SetupBroke as e:
        print("experiment: %s" % e, file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("experiment: interrupted after %d VM runs; summarising what ran" % len(rows),
              file=sys.stderr)
        meta["interrupted"] = True
        status = 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
    meta["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["elapsed_seconds"] = round(time.monotonic() - t_start, 1)
    return status


class SetupBroke(Exception):
    """The run cannot go on (the QEMU binary is gone)."""


def _trial_runner(spec, ctx, args, qemu):
    """run_trial, waiting for and retrying a QEMU binary that is being rebuilt."""
    def run_one(trial, tno):
        if tno == 1 or not os.path.exists(qemu):
            host.wait_for_qemu(qemu, args.qemu_patience)
        for attempt in range(3):
            try:
                return trials.run_trial(spec, trial, ctx, tno)
            except FileNotFoundError as e:
                # the QEMU binary vanishes for a moment while it is rebuilt
                if attempt < 2 and not os.path.exists(qemu) and \
                        host.wait_for_qemu(qemu, args.qemu_patience):
                    print("experiment: QEMU was missing; retrying trial %d" % tno, flush=True)
                    time.sleep(5)
                    continue
                raise SetupBroke(str(e))
    return run_one


def _progress(spec, meta, rows, refused, outdir, t_start, total):
    """One line per trial (elapsed, ETA when the total is known); the rows
    are rewritten after each, so a long run can be inspected (and survives ^C)."""
    last = [t_start]

    def on_trial(trial, n, trows):
        now = time.monotonic()
        el = now - t_start
        # the trial's own host time (with --jobs, trials overlap)
        dt = max([r["wall_seconds"] or 0 for r in trows] or [now - last[0]])
        last[0] = now
        where = "%d/%d %s, eta %s" % (n, total, fmt_dur(el), fmt_dur(el / n * (total - n))) \
            if total else "%d %s" % (n, fmt_dur(el))
        res = " ".join("%.2fs" % r["latency_seconds"] if r["status"] == "ok"
                       else "FAILED(%s)" % r["reason"] for r in trows)
        print("[%s] %s %s rep %d: %s (%.0fs)" % (
            where, trial.point, trial.variant["label"], trial.rep + 1, res, dt), flush=True)
        report.write_outputs(outdir, spec, meta, rows, None, refused)
    return on_trial
