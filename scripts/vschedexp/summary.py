"""Summary of results: per cell and variant the median, spread and counter
medians, and against each reference the reduction with its bootstrap
interval, rank-test p-value and verdict; the series' cells."""

import statistics

from vschedexp import stats
from vschedexp.spec import points_of

# Counters shown in the table (medians per VM), in this order, when the
# results carry them (older and newer binaries name the receiver hits
# differently), see docs/experiment.rst.
TABLE_COUNTERS = ("spins_detected", "yield_strict", "yield_relaxed", "yield_receiver_hit",
                  "yield_receiver_hit_series", "yield_receiver_hit_any", "no_target",
                  "handoffs", "preemptions", "slot_wait_ns")
# The v3 cover letter's table: ipi vs vanilla, latency reduction in percent
# by VM count (16 pCPUs, 16 vCPUs per VM, 120 runs per point).
SERIES = {"dedup": {2: 8.87, 3: 10.29, 4: 15.60}, "vips": {2: 10.23, 3: 6.63, 4: 4.50}}
SERIES_VARIANT, SERIES_REF = "ipi", "vanilla"


def _cell_rows(rows, pid, label):
    return [r for r in rows if r["point"] == pid and r["variant"] == label]


def summarize(spec, rows, refused, opts=None):
    """Per point and variant: median, spread, counter medians, and against
    each reference the reduction with its interval, p-value and verdict."""
    opts = opts or stats.Options()
    points = []
    for point in points_of(spec):
        pid, w = point.id, point.workload
        p = {"point": pid, "workload": w["name"], "size": w["size"], "vms": point.vms,
             "refused": refused.get(pid), "variants": []}
        units = {}
        for v in spec["variants"]:
            rs = _cell_rows(rows, pid, v["label"])
            units[v["label"]] = stats.units_of(rs, opts.unit)
            p["variants"].append(_variant_entry(v["label"], rs))
        exact = is_virtual(spec)
        for e in p["variants"]:
            e["reduction"], e["stats"] = {}, {}
            for ref in [spec["baseline"]] + spec["compare"]:
                c = _compare(pid, e["variant"], ref, units, opts, exact)
                e["reduction"][ref] = c.reduction
                e["stats"][ref] = c.as_dict()
        p["series"] = _series_cell(w["name"], point.vms, pid, units, opts, exact)
        p["winner"] = _winner(pid, p["variants"], units, opts, exact)
        points.append(p)
    return points


def _variant_entry(label, rs):
    ok = sorted(r["latency_seconds"] for r in rs if r["status"] == "ok")
    e = {"variant": label, "runs": len(rs), "ok": len(ok), "failed": len(rs) - len(ok),
         "reasons": sorted({r["reason"] for r in rs if r["status"] != "ok"}),
         "median": statistics.median(ok) if ok else None,
         "min": ok[0] if ok else None, "max": ok[-1] if ok else None,
         "iqr": None, "counters": {}}
    if len(ok) >= 4:
        q = statistics.quantiles(ok, n=4)
        e["iqr"] = q[2] - q[0]
    ctr = [r["counters"] for r in rs if r["status"] == "ok" and r.get("counters")]
    for k in TABLE_COUNTERS:
        vals = [c[k] for c in ctr if isinstance(c.get(k), (int, float))]
        if vals:
            e["counters"][k] = statistics.median(vals)
    return e


def is_virtual(spec):
    """Virtual-time runs are deterministic: one seed a side is exact."""
    return spec.get("time") == "virtual"


def _compare(pid, label, ref, units, opts, exact=False):
    if label == ref:
        return stats.Comparison(label, ref, len(units[label]), len(units[ref]), 0.0 if
                                units[label] else None, None, None, None, "reference")
    return stats.compare(label, ref, units[label], units[ref], "%s|%s|%s" % (pid, label, ref),
                         opts, exact)


def _series_cell(workload, nvms, pid, units, opts, exact=False):
    """The series' cell of this point, or None: reproduced only when the
    interval of ipi vs vanilla excludes 0 with the series' sign and p < 0.05
    (its verdict), or, exact (virtual time, one seed), has the series' sign."""
    published = SERIES.get(workload, {}).get(nvms)
    if published is None or SERIES_VARIANT not in units or SERIES_REF not in units:
        return None
    c = _compare(pid, SERIES_VARIANT, SERIES_REF, units, opts, exact)
    if c.verdict in stats.EXACT:
        want = stats.EXACT_FASTER if published > 0 else stats.EXACT_SLOWER
    else:
        want = stats.FASTER if published > 0 else stats.SLOWER
    inside = c.ci_low is not None and c.ci_low <= published <= c.ci_high
    return {"published": published, "comparison": c.as_dict(),
            "reproduced": c.verdict == want, "published_inside": inside}


WINNING = (stats.FASTER, stats.EXACT_FASTER)


def _winner(pid, entries, units, opts, exact=False):
    """The cell's fastest variant (lowest median) against the runner-up: it
    is named the winner only when that comparison says faster (interval
    excludes 0 and p < 0.05, or exact in virtual time with one seed); else
    the cell has no winner and the two are reported as tied."""
    ranked = sorted((e for e in entries if e["median"] is not None),
                    key=lambda e: (e["median"], e["variant"]))
    if len(ranked) < 2:
        return None
    best, second = ranked[0]["variant"], ranked[1]["variant"]
    c = _compare(pid, best, second, units, opts, exact)
    return {"fastest": best, "runner_up": second, "comparison": c.as_dict(),
            "declared": c.verdict in WINNING}


def series_count(points):
    """(reproduced, cells) over the series' cells present in the results."""
    cells = [p["series"] for p in points if p.get("series") and not p["refused"]]
    return sum(c["reproduced"] for c in cells), len(cells)


def cell_width(spec, rows, pid, opts):
    """Widest 95 % interval (points) of a cell's variants against the
    baseline; None while one of them has none (too few units)."""
    units = {v["label"]: stats.units_of(_cell_rows(rows, pid, v["label"]), opts.unit)
             for v in spec["variants"]}
    widths = [_compare(pid, lab, spec["baseline"], units, opts, is_virtual(spec)).ci_width
              for lab in units if lab != spec["baseline"]]
    if not widths or None in widths:
        return None
    return max(widths)
