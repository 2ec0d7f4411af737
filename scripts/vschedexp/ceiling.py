"""The ceiling of a cell: how much any scheduler could still cut from a
variant's latency, from an unscheduled run of the same work (--ceiling).

N VMs of V vCPUs share P slots.  One VM of the same work run alone on V
slots (nobody waits: experiments/series-ideal-vtime.toml) takes L1 seconds
and keeps its CPUs busy for B CPU-seconds of its region of interest (the
guest's roi_busy_seconds: user, system and interrupt time of all CPUs).
No VM can be faster than L1, and N VMs that progress together need N x B
CPU-seconds from P slots, so none can finish before

    floor = max(L1, N x B / P)

(lock waits, spinning and per-CPU overheads in B make this floor an
estimate that medians can undercut by a few percent; a scheduler that
finishes VMs one after another could beat it for the median, and none of
ours does).  The headroom of a variant is (median - floor) /
median: the most any policy could gain over it.  For the series' cells the
bar of issue 13 (ipi-prio against vanilla by the series' figure + 5
points) is reachable only where vanilla's headroom is at least the bar."""

import json
import os
import statistics
import sys

from vschedexp.report import read_runs
from vschedexp.summary import SERIES

BAR_MARGIN = 5.0  # issue 13: the series' figure + 5 points
BASE, OURS = "vanilla", "ipi-prio"


class CeilingError(Exception):
    pass


def _load(d):
    data = read_runs(d)
    if data is None:
        raise CeilingError("%s: no readable runs.json" % d)
    return data


def _ok(rows):
    return [r for r in rows if r.get("status") == "ok" and r.get("latency_seconds")]


def _busy(row):
    try:
        busy = json.loads(row.get("result_json") or "{}").get("roi_busy_seconds")
        return float(busy) if busy is not None else None
    except (TypeError, ValueError):
        return None


def ideal_of(ideal_rows, workload, vcpus, args, threads=None):
    """(median L1, median B, runs) of the unscheduled runs of a workload."""
    rows = [r for r in _ok(ideal_rows) if r["workload"] == workload]
    if not rows:
        raise CeilingError("the ideal has no successful %s run" % workload)
    for r in rows:
        if r.get("vms") != 1 or r.get("vcpus") != vcpus or r.get("pcpus", 0) < vcpus:
            raise CeilingError("the ideal's %s runs must be one VM of %d vCPUs on at least as "
                               "many slots (found %s VMs, %s vCPUs, %s slots)"
                               % (workload, vcpus, r.get("vms"), r.get("vcpus"), r.get("pcpus")))
        if (r.get("args") or "") != (args or ""):
            raise CeilingError("the ideal's %s runs have args %r, the results %r: not the same "
                               "work" % (workload, r.get("args"), args))
        if threads and r.get("threads") and r["threads"] != threads:
            raise CeilingError("the ideal's %s runs have %s threads, the results %s: not the "
                               "same work" % (workload, r["threads"], threads))
    busy = [_busy(r) for r in rows]
    if None in busy:
        raise CeilingError("the ideal's %s runs lack roi_busy_seconds (a guest image from "
                           "before session 10?)" % workload)
    return (statistics.median(r["latency_seconds"] for r in rows), statistics.median(busy),
            len(rows))


def cells(ideal, results):
    """One entry per (workload, VM count) of the results."""
    out = []
    rows = _ok(results["rows"])
    keys = sorted({(r["workload"], r["vms"], r.get("args") or "") for r in rows})
    for workload, nvms, args in keys:
        mine = [r for r in rows if r["workload"] == workload and r["vms"] == nvms]
        vcpus, pcpus = mine[0]["vcpus"], mine[0]["pcpus"]
        l1, busy, n_ideal = ideal_of(ideal["rows"], workload, vcpus, args,
                                     mine[0].get("threads"))
        floor = max(l1, nvms * busy / pcpus)
        c = {"workload": workload, "vms": nvms, "vcpus": vcpus, "pcpus": pcpus, "l1": l1,
             "busy": busy, "ideal_runs": n_ideal, "floor": floor, "variants": {}}
        for label in sorted({r["variant"] for r in mine}):
            lat = [r["latency_seconds"] for r in mine if r["variant"] == label]
            med = statistics.median(lat)
            c["variants"][label] = {"median": med, "runs": len(lat),
                                    "headroom": 100.0 * (med - floor) / med}
        published = SERIES.get(workload, {}).get(nvms)
        if published is not None and BASE in c["variants"]:
            bar = published + BAR_MARGIN
            c["bar"] = {"published": published, "bar": bar,
                        "reachable": c["variants"][BASE]["headroom"] >= bar}
        out.append(c)
    return out


def format_table(entries):
    width = max([7] + [len(label) for c in entries for label in c["variants"]])
    head = "%-16s %6s %8s %8s  %-*s %8s  %8s   %s" % (
        "cell", "L1 s", "busy s", "floor s", width, "variant", "median s", "headroom",
        "series    bar  reachable")
    lines = [head, "-" * len(head)]
    for c in entries:
        name = "%s-%dvm" % (c["workload"], c["vms"])
        first = True
        for label, v in c["variants"].items():
            cell = ("%-16s %6.3f %8.2f %8.3f" % (name, c["l1"], c["busy"], c["floor"]) if first
                    else " " * 41)
            bar = ""
            if first and c.get("bar"):
                b = c["bar"]
                bar = "%+7.2f%% %5.1f%%  %s" % (b["published"], b["bar"],
                                                "yes" if b["reachable"] else "no")
            lines.append(("%s  %-*s %8.3f  %+7.1f%%   %s" % (cell, width, label, v["median"],
                                                             v["headroom"], bar)).rstrip())
            first = False
    lines += ["",
              "floor = max(L1, VMs x busy / slots): no VM of the cell can finish sooner (L1 "
              "and busy: medians of",
              "the unscheduled runs; busy counts their lock waits too, so the floor is an "
              "estimate that medians can",
              "undercut by a few percent); headroom = (median - floor) / median, the most any "
              "policy could still gain;",
              "bar = the series' ipi-vs-vanilla figure + %g points (issue 13), reachable only "
              "if vanilla's headroom >= bar" % BAR_MARGIN]
    return "\n".join(lines) + "\n"


def main(ideal_dir, results_dir):
    try:
        entries = cells(_load(ideal_dir), _load(results_dir))
    except CeilingError as e:
        print("experiment: --ceiling: %s" % e, file=sys.stderr)
        return 2
    if not entries:
        print("experiment: --ceiling: %s has no successful runs" % results_dir, file=sys.stderr)
        return 2
    table = format_table(entries)
    with open(os.path.join(results_dir, "ceiling.txt"), "w") as f:
        f.write(table)
    with open(os.path.join(results_dir, "ceiling.json"), "w") as f:
        json.dump(entries, f, indent=1)
    print(table, end="")
    return 0
