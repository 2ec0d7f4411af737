"""Reports: the text table, the files of a results directory, ``--report``
and ``--merge``."""

import csv
import json
import os
import sys
from dataclasses import asdict

from vschedexp import stats, summary
from vschedexp.plot import plot
from vschedexp.spec import vcpus_of, vcpus_text
from vschedexp.trials import LATENCY_KEYS, ROW_FIELDS


def _vw(points, least=15):
    """Width of a variant column: the longest label (variants may carry
    properties, e.g. ipi-prio+ipi-lift=on)."""
    return max([least] + [len(e["variant"]) for p in points for e in p["variants"]])


def fmt_pct(x):
    return "%+.2f%%" % x if x is not None else "-"


def fmt_ci(c):
    if c["ci_low"] is None:
        return "-"
    return "[%+.1f, %+.1f]" % (c["ci_low"], c["ci_high"])


def fmt_p(p):
    if p is None:
        return "-"
    return "%.3f" % p if p >= 0.001 else "<0.001"


def shown_counters(points):
    """TABLE_COUNTERS that any cell carries, in that order (names this runner
    does not know are skipped, names the binary lacks are not shown)."""
    have = {k for p in points for e in p["variants"] for k in e["counters"]}
    return [k for k in summary.TABLE_COUNTERS if k in have]


def format_table(spec, points, meta, opts=None):
    opts = opts or stats.Options()
    refs = [spec["baseline"]] + spec["compare"]
    counters = shown_counters(points)
    lines = ["vsched experiment %s  (run %s)" % (spec["name"], meta["run_id"]),
             "%s; commit %s; %s, %d host CPUs" % (meta["qemu_version"], meta["git_commit"],
                                                  meta["host"], meta["host_cpus"]),
             time_text(spec, meta),
             "%s vCPUs per VM, %d pool slots (%s), %s; latency = guest %s; "
             "reduction = (ref - x) / ref of the medians, positive is faster"
             % (vcpus_text(spec), spec["pcpus"], spec["pool"], _reps_text(spec, meta),
                "/".join(LATENCY_KEYS)), ""]
    vw = _vw(points)
    hdr = "%-22s %-*s %5s %9s %19s" % ("point", vw, "variant", "ok", "median s", "min..max")
    hdr += "".join(" %11s" % ("vs " + r)[:11] for r in refs)
    hdr += "".join(" %10s" % k.replace("yield_", "y_").replace("receiver_hit", "rhit")[:10]
                   for k in counters)
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for p in points:
        if p["refused"]:
            lines.append("%-22s %s" % (p["point"], p["refused"]))
            continue
        for e in p["variants"]:
            lines.append(_table_line(p, e, refs, counters, vw))
    lines += format_comparisons(spec, points, opts)
    lines += format_until_ci(meta)
    lines += format_winners(points)
    lines += format_series(points)
    return "\n".join(lines) + "\n"


def time_text(spec, meta):
    """The time base: in virtual time the seeds (the repetitions) and what
    exactness means for the comparisons."""
    if spec.get("time") != "virtual":
        return "real time (host clock): repetitions are retries on a noisy host"
    n = _seeds(spec, meta)
    text = ("virtual time: %d seed%s (-seed %d..%d, -icount shift=%d, quantum %s): "
            "latencies are the guest's virtual seconds, the same for the same seed on "
            "any host" % (n, "" if n == 1 else "s", spec["seed"], spec["seed"] + n - 1,
                          spec["shift"], spec["quantum"] or "default"))
    if n == 1:
        text += "; one seed: every comparison is exact (no interval)"
    return text


def _seeds(spec, meta):
    u = meta.get("until_ci")
    return max(spec["repetitions"], max((r["reps"] for r in (u or {}).get("points", {})
                                         .values()), default=0))


def _reps_text(spec, meta):
    u = meta.get("until_ci")
    if spec.get("time") == "virtual" and not u:
        return "%d seed%s" % (spec["repetitions"], "" if spec["repetitions"] == 1 else "s")
    if not u:
        return "%d repetitions" % spec["repetitions"]
    return "%d..%d repetitions (--until-ci %g)" % (spec["repetitions"], u["max_reps"],
                                                     u["target"])


def format_until_ci(meta):
    """Per point run with --until-ci: the repetitions it took and the width reached."""
    u = meta.get("until_ci")
    if not u or not u.get("points"):
        return []
    lines = ["", "--until-ci %g: repetitions run and the widest interval against the "
             "baseline when the point stopped (cap %d)" % (u["target"], u["max_reps"])]
    for pid, r in u["points"].items():
        width = "-" if r["width"] is None else "%.1f points" % r["width"]
        lines.append("%-22s %3d reps  width %-13s %s" % (
            pid, r["reps"], width, "reached" if r["reached"] else "NOT reached (cap)"))
    return lines


def _table_line(p, e, refs, counters, vw=15):
    s = "%-22s %-*s %2d/%-2d" % (p["point"], vw, e["variant"], e["ok"], e["runs"])
    if e["median"] is None:
        s += " %9s %19s" % ("FAILED" if e["runs"] else "not run", "")
    else:
        s += " %9.3f %8.3f..%-9.3f" % (e["median"], e["min"], e["max"])
    s += "".join(" %11s" % fmt_pct(e["reduction"].get(r)) for r in refs)
    for k in counters:
        c = e["counters"].get(k)
        if c is None:
            s += " %10s" % "-"
        elif k.endswith("_ns"):
            s += " %9.2fs" % (c / 1e9)
        else:
            s += " %10d" % c
    if e["failed"]:
        s += "  failed: %s" % "; ".join(e["reasons"])
    return s


def format_comparisons(spec, points, opts):
    """Every variant against every reference: reduction, interval, p, verdict."""
    refs = [spec["baseline"]] + spec["compare"]
    lines = ["", "comparisons: reduction of the median latency with its %g %% bootstrap "
             "interval (%d resamples, unit %s, seeded), Mann-Whitney U two-sided p; "
             "faster/slower only when the interval excludes 0 and p < 0.05"
             % (opts.level, opts.resamples, opts.unit)]
    if spec.get("time") == "virtual":
        lines.append("virtual time: with one seed a side the reduction is exact (the "
                     "model's value, no interval, verdict 'faster/slower (exact)'); "
                     "with 3 or more seeds the seeds are the samples")
    vw = _vw(points)
    hdr = "%-22s %-*s %-*s %7s %10s %18s %7s  %s" % (
        "point", vw, "variant", vw, "vs", "n", "reduction", "95% interval", "p", "verdict")
    lines += [hdr, "-" * len(hdr)]
    for p in points:
        if p["refused"]:
            continue
        for e in p["variants"]:
            for ref in (r for r in refs if r != e["variant"]):
                c = e["stats"][ref]
                lines.append("%-22s %-*s %-*s %3d/%-3d %10s %18s %7s  %s" % (
                    p["point"], vw, e["variant"], vw, ref, c["n"], c["n_ref"], fmt_pct(c["reduction"]),
                    fmt_ci(c), fmt_p(c["p"]), c["verdict"]))
    return lines


def format_winners(points):
    """Per cell the winner, named only where the statistics support it: the
    fastest variant against the runner-up must say faster."""
    cells = [p for p in points if p.get("winner") and not p["refused"]]
    if not cells:
        return []
    lines = ["", "winner per cell: the fastest variant (lowest median), named only when "
             "its comparison with the runner-up says faster (interval excludes 0 and "
             "p < 0.05, or exact); otherwise '-' (no winner: 'none' is a variant) and the tie"]
    vw = _vw(points)
    hdr = "%-22s %-*s %-*s %10s %18s %7s  %s" % (
        "point", vw, "winner", 2 * vw + 3, "runner-up", "reduction", "95% interval", "p", "verdict")
    lines += [hdr, "-" * len(hdr)]
    for p in cells:
        w, c = p["winner"], p["winner"]["comparison"]
        name = w["fastest"] if w["declared"] else "-"
        lines.append("%-22s %-*s %-*s %10s %18s %7s  %s" % (
            p["point"], vw, name, 2 * vw + 3, w["runner_up"] if w["declared"] else
            "%s ~ %s" % (w["fastest"], w["runner_up"]), fmt_pct(c["reduction"]),
            fmt_ci(c), fmt_p(c["p"]), c["verdict"]))
    return lines


def format_series(points):
    cells = [p for p in points if p.get("series") and not p["refused"]]
    if not cells:
        return []
    lines = ["", "series v3 (16 pCPU, 16 vCPU/VM, 2/3/4 VMs, %s vs %s; published medians "
             "without intervals): a cell is reproduced when our interval excludes 0 with "
             "the series' sign and p < 0.05, or, exact (virtual time, one seed), has its sign"
             % (summary.SERIES_VARIANT, summary.SERIES_REF)]
    hdr = "%-22s %10s %10s %18s %7s  %-12s %s" % (
        "point", "published", "ours", "95% interval", "p", "verdict", "reproduced")
    lines += [hdr, "-" * len(hdr)]
    for p in cells:
        s, c = p["series"], p["series"]["comparison"]
        lines.append("%-22s %10s %10s %18s %7s  %-12s %s%s" % (
            p["point"], fmt_pct(s["published"]), fmt_pct(c["reduction"]), fmt_ci(c),
            fmt_p(c["p"]), c["verdict"], "yes" if s["reproduced"] else "no",
            " (published value inside our interval)" if s["published_inside"] else ""))
    k, n = summary.series_count(points)
    lines += ["", "series cells reproduced: %d of %d (the series has 6: dedup and vips at "
              "2/3/4 VMs)" % (k, n)]
    return lines



def write_outputs(outdir, spec, meta, rows, points, refused, opts=None):
    """runs.json (what --report and --merge read back), runs.csv, and
    summary.json unless points is None."""
    with open(os.path.join(outdir, "runs.json"), "w") as f:
        json.dump({"meta": meta, "spec": spec, "refused": refused, "rows": rows}, f, indent=1)
    ckeys = sorted({k for r in rows for k in r["counters"]})
    with open(os.path.join(outdir, "runs.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(ROW_FIELDS + ["c_" + k for k in ckeys])
        for r in rows:
            wr.writerow([("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS] +
                        [r["counters"].get(k, "") for k in ckeys])
    if points is None:   # during a run: the rows only (--report summarises them)
        return
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump({"meta": meta, "stats": asdict(opts or stats.Options()), "points": points},
                  f, indent=1)


def write_report(outdir, spec, meta, rows, refused, opts):
    """Summarise rows into outdir (runs.*, summary.json, table.txt, plot.png)
    and print the table."""
    points = summary.summarize(spec, rows, refused, opts)
    write_outputs(outdir, spec, meta, rows, points, refused, opts)
    table = format_table(spec, points, meta, opts)
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(table)
    png = os.path.join(outdir, "plot.png")
    try:
        plot(spec, points, png)
    except ImportError:
        print("experiment: matplotlib missing (apt-get install python3-matplotlib); no plot",
              file=sys.stderr)
        png = "(none)"
    print(table, end="")
    print("\ntable: %s\nplot: %s" % (os.path.join(outdir, "table.txt"), png))
    return points


def report(outdir, opts=None):
    """--report: re-summarise a results directory from its runs.json."""
    data = read_runs(outdir)
    if data is None:
        print("experiment: %s: no readable runs.json" % outdir, file=sys.stderr)
        return 2
    write_report(outdir, data["spec"], data["meta"], data["rows"], data.get("refused") or {},
                 opts or stats.Options())
    return 0


def read_runs(d):
    """DIR/runs.json, or None if it is missing or has no rows."""
    try:
        with open(os.path.join(d, "runs.json")) as f:
            data = json.load(f)
        return data if isinstance(data.get("rows"), list) else None
    except (OSError, ValueError, AttributeError):
        return None


# Spec fields two results directories must share to be one experiment.
# (The baseline may differ between disjoint parts: the first part's counts.)
# (Seeds: see _seed_clash.)
SAME_EXPERIMENT = ("name", "pcpus", "pool", "time", "shift", "quantum")


def merge(outdir, dirs, opts=None):
    """Pool the runs of several results directories of one spec into outdir,
    then report. Runs of the same cells (point x variant) are repetitions of
    each other (renumbered after each other); runs of disjoint cells (a spec
    split with --vms / --workloads, e.g. the series' table over several
    sittings, or a variant added later) are joined side by side, each cell
    keeping its own repetitions (seeds)."""
    runs = []
    for d in dirs:
        data = read_runs(d)
        if data is None:
            print("experiment: %s: no readable runs.json" % d, file=sys.stderr)
            return 2
        runs.append(data)
    first = runs[0]["spec"]
    for d, data in zip(dirs[1:], runs[1:]):
        for k in SAME_EXPERIMENT:
            if data["spec"].get(k) != first.get(k):
                print("experiment: %s: spec field %r differs (%r, not %r): not the same "
                      "experiment" % (d, k, data["spec"].get(k), first.get(k)), file=sys.stderr)
                return 2
    clash = _vcpus_clash(runs)
    if clash:
        print("experiment: %s: not the same experiment" % clash, file=sys.stderr)
        return 2
    clash = _seed_clash(runs, _disjoint(runs))
    if clash:
        print("experiment: %s" % clash, file=sys.stderr)
        return 2
    if _disjoint(runs):
        spec, rows = _joined_spec(runs), [r for data in runs for r in data["rows"]]
    else:
        spec, rows = _pooled(runs)
        if spec is None:
            print("experiment: the runs share some cells (point and variant) but not all: "
                  "merge runs of the same cells (repetitions) or of disjoint cells (a "
                  "split spec)",
                  file=sys.stderr)
            return 2
    meta = dict(runs[0]["meta"], run_id="+".join(str(d["meta"].get("run_id")) for d in runs),
                merged_from=[os.path.abspath(d) for d in dirs], until_ci=None,
                elapsed_seconds=sum(d["meta"].get("elapsed_seconds") or 0 for d in runs))
    refused = {}
    for data in runs:
        refused.update(data.get("refused") or {})
    os.makedirs(outdir, exist_ok=True)
    write_report(outdir, spec, meta, rows, refused, opts or stats.Options())
    return 0


def _cell_set(data):
    return {(r["point"], r["variant"]) for r in data["rows"]}


def _disjoint(runs):
    seen = set()
    for data in runs:
        cells = _cell_set(data)
        if seen & cells:
            return False
        seen |= cells
    return True


def _joined_spec(runs):
    """The union of split specs: every workload, VM count and variant of any
    part (a combination no part ran shows as not run)."""
    spec = dict(runs[0]["spec"])
    names = [w["name"] for w in spec["workloads"]]
    labels = [v["label"] for v in spec["variants"]]
    vms = list(spec["vms"])
    vcpus = dict(zip(spec["vms"], _vcpu_list(spec)))
    for data in runs[1:]:
        s = data["spec"]
        for w in s["workloads"]:
            if w["name"] not in names:
                spec["workloads"] = spec["workloads"] + [w]
                names.append(w["name"])
        vcpus.update(zip(s["vms"], _vcpu_list(s)))
        for v in s["variants"]:
            if v["label"] not in labels:
                spec["variants"] = spec["variants"] + [v]
                labels.append(v["label"])
        vms += [n for n in s["vms"] if n not in vms]
    spec["vms"] = sorted(vms)
    per_vm = [vcpus[n] for n in spec["vms"]]
    spec["vcpus"] = per_vm[0] if len(set(per_vm)) == 1 else per_vm
    spec["repetitions"] = max(d["spec"]["repetitions"] for d in runs)
    return spec


def _seed_clash(runs, disjoint):
    """Virtual time: a repetition is a seed (first seed + rep). Joined parts
    must share the first seed; pooled parts must continue each other's seeds
    (1..3 then 4..5), or the pool would count one exact run twice."""
    if runs[0]["spec"].get("time") != "virtual":
        return None
    want = runs[0]["spec"]["seed"]
    for data in runs[1:] if disjoint else runs:
        got = data["spec"]["seed"]
        if got != want:
            return ("seeds: a part starts at -seed %d where %d was expected (%s)"
                    % (got, want, "joined parts share the first seed" if disjoint else
                       "pooled parts continue each other's seeds"))
        if not disjoint:
            want = got + _reps_of(data)
    return None


def _vcpus_clash(runs):
    """A VM count the parts run with different vCPUs per VM, described."""
    seen = {}
    for data in runs:
        for n, v in zip(data["spec"]["vms"], _vcpu_list(data["spec"])):
            if seen.setdefault(n, v) != v:
                return "spec field 'vcpus' differs at %d VMs (%d and %d)" % (n, seen[n], v)
    return None


def _vcpu_list(spec):
    return [vcpus_of(spec, n) for n in spec["vms"]]


def _reps_of(data):
    """Repetitions a part ran (--until-ci runs more than the spec names)."""
    return max([data["spec"]["repetitions"]] + [r["rep"] + 1 for r in data["rows"]])


def _pooled(runs):
    """Repetitions of the same points: reps renumbered after each other."""
    if any(_cell_set(d) != _cell_set(runs[0]) or d["spec"]["baseline"] !=
           runs[0]["spec"]["baseline"] for d in runs[1:]):
        return None, None
    rows, reps = [], 0
    for data in runs:
        for r in data["rows"]:
            rows.append(dict(r, rep=r["rep"] + reps))
        reps += _reps_of(data)
    return dict(runs[0]["spec"], repetitions=reps), rows
