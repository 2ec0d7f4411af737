"""The runner's statistics on synthetic results (no QEMU, no guest).

A results directory in the format real runs write (runs.json: meta, spec,
rows with every field) is filled with latencies drawn from known
distributions, then reported with ``experiment.py --report`` as a user would:

* a known effect (ipi 20 % faster, 3 % noise) must read ``faster`` with an
  interval that contains 20 %, a known null (identical distributions)
  ``inside noise``, a known slowdown ``slower``;
* the series' cells count as reproduced only when faster;
* the interval's coverage and the null's false-positive rate over many
  simulated cells are near their nominal 95 %;
* counters the runner does not know, or that a binary lacks, do not break
  the table; policy names are read from the binary's help text.
"""
import json
import os
import random
import subprocess
import sys
from dataclasses import asdict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENT = os.path.join(REPO, "scripts", "experiment.py")
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vschedexp import host, report as vreport, stats, summary, trials  # noqa: E402
from vschedexp.spec import validate_spec  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

VARIANTS = ["none", "vanilla", "ipi"]
# ipi's latency factor against vanilla per (workload, VMs): the truth to find.
EFFECT = {("dedup", 2): 0.8, ("dedup", 3): 0.8, ("dedup", 4): 0.8,
          ("vips", 2): 1.0, ("vips", 3): 1.2, ("vips", 4): 0.8}


def synthetic_run(outdir, reps=20, noise=0.03, seed=1, run_id="synthetic"):
    """Write outdir/runs.json as experiment.py writes it; return the spec."""
    rng = random.Random(seed)
    spec = validate_spec({
        "name": "synthetic", "workloads": ["dedup", "vips"], "vms": [2, 3, 4], "vcpus": 4,
        "pcpus": 2, "variants": VARIANTS, "repetitions": reps})
    rows, tno = [], 0
    for w in spec["workloads"]:
        for nvms in spec["vms"]:
            point = "%s-small-%dvm" % (w["name"], nvms)
            for rep in range(reps):
                for order in range(len(VARIANTS)):
                    v = spec["variants"][(order + rep) % len(VARIANTS)]
                    tno += 1
                    factor = EFFECT[(w["name"], nvms)] if v["label"] == "ipi" else 1.0
                    for i in range(nvms):
                        lat = 5.0 * factor * rng.lognormvariate(0, noise)
                        rows.append(_row(spec, run_id, tno, point, w, nvms, i, v, rep, order,
                                         lat))
    meta = {"run_id": run_id, "qemu": "qemu-system-x86_64", "qemu_version": "QEMU emulator "
            "version 10.0.0", "qemu_has_pool": True, "git_commit": "0" * 40, "image": "guest",
            "host": "synthetic", "host_cpus": 2, "python": "3", "started_at": "2026-11-29"}
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "runs.json"), "w") as f:
        json.dump({"meta": meta, "spec": spec, "refused": {}, "rows": rows}, f)
    return spec


def _row(spec, run_id, tno, point, w, nvms, i, v, rep, order, lat):
    row = {k: "" for k in trials.ROW_FIELDS}
    row.update({
        "run_id": run_id, "spec": spec["name"], "trial": tno, "point": point,
        "workload": w["name"], "size": w["size"], "vms": nvms, "vm_index": i,
        "vcpus": spec["vcpus"], "pcpus": spec["pcpus"], "pool_mode": "shared",
        "pool": "p%d" % tno, "policy": v["policy"], "relaxed_boost": v["relaxed_boost"],
        "variant": v["label"], "rep": rep, "order": order, "status": "ok", "reason": None,
        "latency_seconds": lat, "latency_key": "roi_seconds", "timeout": 60})
    # a counter the runner does not know, a renamed one, and no yield_strict
    row["counters"] = {"spins_detected": 100 + i, "yield_receiver_hit_series": 7,
                       "yield_receiver_hit_any": 9, "future_counter": 1, "preemptions": 50}
    return row


def report(outdir, *extra):
    r = subprocess.run([PY, EXPERIMENT, "--report", outdir] + list(extra),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(outdir, "summary.json")) as f:
        return r.stdout, json.load(f)


def cell(summary, point, variant, ref="vanilla"):
    p = next(p for p in summary["points"] if p["point"] == point)
    return next(e for e in p["variants"] if e["variant"] == variant)["stats"][ref]


def test_known_effect_null_and_slowdown(tmp_path):
    out = str(tmp_path / "run")
    synthetic_run(out)
    stdout, summary = report(out)
    for nvms in (2, 3, 4):
        c = cell(summary, "dedup-small-%dvm" % nvms, "ipi")
        assert c["verdict"] == "faster", c
        assert c["ci_low"] <= 20.0 <= c["ci_high"], c
        assert c["ci_low"] > 0 and c["p"] < 0.001 and c["n"] == c["n_ref"] == 20
    null = cell(summary, "vips-small-2vm", "ipi")
    assert null["verdict"] == "inside noise", null
    assert null["ci_low"] < 0 < null["ci_high"] and null["p"] > 0.05
    slow = cell(summary, "vips-small-3vm", "ipi")
    assert slow["verdict"] == "slower" and slow["ci_high"] < 0
    assert slow["ci_low"] <= -20.0 <= slow["ci_high"], slow     # 1 - 1.2 = -20 %
    # none and vanilla are the same distribution everywhere
    for p in summary["points"]:
        assert cell(summary, p["point"], "none")["verdict"] == "inside noise"
    # the series: faster at dedup 2/3/4 and vips 4; vips 2 null, vips 3 slower
    assert "series cells reproduced: 4 of 6" in stdout
    repro = {p["point"]: p["series"]["reproduced"] for p in summary["points"]}
    assert repro == {"dedup-small-2vm": True, "dedup-small-3vm": True,
                     "dedup-small-4vm": True, "vips-small-2vm": False,
                     "vips-small-3vm": False, "vips-small-4vm": True}
    assert "inside noise" in stdout and "faster" in stdout and "slower" in stdout
    assert "95% interval" in stdout
    with open(os.path.join(out, "plot.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_is_reproducible(tmp_path):
    out = str(tmp_path / "run")
    synthetic_run(out)
    _, first = report(out)
    _, second = report(out)
    assert first["points"] == second["points"]


def test_unknown_and_missing_counters(tmp_path):
    out = str(tmp_path / "run")
    synthetic_run(out, reps=3)
    stdout, _ = report(out)
    header = next(x for x in stdout.splitlines() if x.startswith("point ") and "ok" in x)
    assert "spins_dete" in header and "y_rhit_ser" in header and "y_rhit_any" in header
    assert "preemption" in header
    assert "y_strict" not in header and "future" not in header


def test_too_few_units_give_no_verdict(tmp_path):
    out = str(tmp_path / "run")
    synthetic_run(out, reps=2)
    stdout, summary = report(out)
    c = cell(summary, "dedup-small-4vm", "ipi")
    assert c["verdict"] == "too few" and c["ci_low"] is None
    assert abs(c["reduction"] - 20.0) < 5
    assert "series cells reproduced: 0 of 6" in stdout


def test_merge_pools_synthetic_runs(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    synthetic_run(a, reps=4, seed=1, run_id="a")
    synthetic_run(b, reps=4, seed=2, run_id="b")
    out = str(tmp_path / "ab")
    r = subprocess.run([PY, EXPERIMENT, "--merge", a, b, "--out", out], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "summary.json")) as f:
        c = cell(json.load(f), "dedup-small-3vm", "ipi")
    assert c["n"] == c["n_ref"] == 8 and c["verdict"] == "faster"


def test_trial_unit_is_wider_when_vms_of_a_trial_move_together():
    """Latencies of one trial's VMs share the trial's noise: resampling runs
    as if independent would overstate the precision."""
    rng = random.Random(5)
    def trials(factor):
        out = []
        for _ in range(6):
            t = factor * rng.lognormvariate(0, 0.10)
            out.append([t * rng.lognormvariate(0, 0.005) for _ in range(4)])
        return out
    x, ref = trials(0.95), trials(1.0)
    by_trial = stats.compare("ipi", "vanilla", x, ref, "k")
    by_run = stats.compare("ipi", "vanilla", [[v] for g in x for v in g],
                           [[v] for g in ref for v in g], "k")
    assert by_trial.n == 6 and by_run.n == 24
    assert by_trial.ci_width > 1.25 * by_run.ci_width


def test_coverage_and_false_positives():
    """Over many simulated cells of 12 units, the 95 % interval covers the
    true reduction and a null reads 'inside noise' about 95 % of the time
    (the percentile bootstrap of a median runs a little narrow at n=12)."""
    rng = random.Random(11)
    cover = null_ok = 0
    sims = 120
    for k in range(sims):
        ref = [[rng.lognormvariate(0, 0.1)] for _ in range(12)]
        x = [[0.9 * rng.lognormvariate(0, 0.1)] for _ in range(12)]
        c = stats.compare("ipi", "vanilla", x, ref, "cov%d" % k, opts=stats.Options(resamples=2000))
        cover += c.ci_low <= 10.0 <= c.ci_high
        same = [[rng.lognormvariate(0, 0.1)] for _ in range(12)]
        null_ok += stats.compare("ipi", "vanilla", same, ref, "null%d" % k,
                                 opts=stats.Options(resamples=2000)).verdict == "inside noise"
    assert cover / sims >= 0.85, cover
    assert null_ok / sims >= 0.85, null_ok


def test_verdict_rule():
    assert stats.verdict_of(0.1, 5.0) == "faster"
    assert stats.verdict_of(-5.0, -0.1) == "slower"
    assert stats.verdict_of(-0.1, 5.0) == "inside noise"
    assert stats.verdict_of(0.0, 5.0) == "inside noise"
    assert stats.verdict_of(None, None) == "too few"
    # The interval alone is not enough: the rank test must agree.
    assert stats.verdict_of(0.1, 5.0, p=0.01) == "faster"
    assert stats.verdict_of(0.1, 5.0, p=0.1) == "inside noise"
    assert stats.verdict_of(-5.0, -0.1, p=0.2) == "inside noise"


def test_policies_from_help_text():
    help_text = ("tcg options:\n"
                 "  directed-yield=<string> - vsched: yield policy on a PAUSE spin: none, "
                 "vanilla, ipi, ipi-prio, ipi-v2, random\n"
                 "  pcpus=<uint32>         - vsched: number of pCPU slots\n")
    names = host.parse_policies(help_text)
    assert names == ("none", "vanilla", "ipi", "ipi-prio", "ipi-v2", "random")
    spec = validate_spec(dict(
        name="t", workloads=["dedup"], vms=[2], vcpus=2, pcpus=2,
        policies=["vanilla", "ipi-v2", "random"], relaxed_boost=[True, False]), names)
    # relaxed-boost applies to the ipi* policies only
    assert [v["label"] for v in spec["variants"]] == ["vanilla", "ipi-v2", "ipi-v2/strict",
                                                      "random"]
    assert host.parse_policies("tcg options:\n  pcpus=<uint32> - slots\n") is None


class FakeTrials:
    """A trial function for run_points: latencies drawn per variant, no QEMU."""

    def __init__(self, spec, noise, seed=3):
        self.spec, self.noise, self.rng, self.calls = spec, noise, random.Random(seed), []

    def __call__(self, trial, tno):
        self.calls.append((trial.point, trial.rep, trial.variant["label"]))
        factor = 0.8 if trial.variant["label"] == "ipi" else 1.0
        return [_row(self.spec, "fake", tno, trial.point, trial.workload, trial.vms,
                     i, trial.variant, trial.rep, trial.order,
                     5.0 * factor * self.rng.lognormvariate(0, self.noise[trial.point]))
                for i in range(trial.vms)]


def test_until_ci_adds_interleaved_rounds_until_narrow():
    spec = validate_spec({
        "name": "u", "workloads": ["dedup"], "vms": [1, 2], "vcpus": 2, "pcpus": 1,
        "variants": VARIANTS, "repetitions": 2})
    # 1 VM: quiet, narrows fast; 2 VMs: so noisy the cap comes first
    fake = FakeTrials(spec, {"dedup-small-1vm": 0.02, "dedup-small-2vm": 0.6})
    rows = []
    reached = trials.run_points(spec, fake, rows, stats.Options(), until_ci=10.0, max_reps=12)
    quiet, noisy = reached["dedup-small-1vm"], reached["dedup-small-2vm"]
    assert quiet.reached and quiet.width < 10.0
    assert stats.MIN_UNITS <= quiet.reps < 12
    assert not noisy.reached and noisy.reps == 12 and noisy.width >= 10.0
    # every round ran every variant, the order rotated by the round
    for pid, r in reached.items():
        calls = [c for c in fake.calls if c[0] == pid]
        assert len(calls) == r.reps * len(VARIANTS)
        for rep in range(r.reps):
            labels = [c[2] for c in calls[rep * 3:rep * 3 + 3]]
            assert labels == [VARIANTS[(k + rep) % 3] for k in range(3)]
    assert len(rows) == 3 * (quiet.reps * 1 + noisy.reps * 2)
    # the width reported is the widest interval against the baseline then
    assert summary.cell_width(spec, rows, "dedup-small-1vm", stats.Options()) == quiet.width


def test_until_ci_in_the_report(tmp_path):
    spec = validate_spec({
        "name": "u", "workloads": ["dedup"], "vms": [1], "vcpus": 2, "pcpus": 1,
        "variants": VARIANTS, "repetitions": 3})
    rows = []
    reached = trials.run_points(spec, FakeTrials(spec, {"dedup-small-1vm": 0.02}), rows,
                                    stats.Options(), until_ci=8.0, max_reps=20)
    meta = {"run_id": "u", "qemu_version": "QEMU", "git_commit": "x", "host": "h",
            "host_cpus": 2, "until_ci": {"target": 8.0, "max_reps": 20, "points": {
                k: asdict(v) for k, v in reached.items()}}}
    out = str(tmp_path / "u")
    os.makedirs(out)
    vreport.write_outputs(out, spec, meta, rows, None, {})
    stdout, _ = report(out)
    r = reached["dedup-small-1vm"]
    assert "3..20 repetitions (--until-ci 8)" in stdout
    assert "dedup-small-1vm          %d reps  width %.1f points" % (r.reps, r.width) in stdout
    assert "reached" in stdout


def test_until_ci_without_until_ci_runs_the_spec_repetitions():
    spec = validate_spec({
        "name": "u", "workloads": ["dedup"], "vms": [2], "vcpus": 2, "pcpus": 1,
        "variants": VARIANTS, "repetitions": 4})
    fake = FakeTrials(spec, {"dedup-small-2vm": 0.02})
    rows = []
    assert trials.run_points(spec, fake, rows, stats.Options()) == {}
    assert [(c[1], c[2]) for c in fake.calls] == [
        (t.rep, t.variant["label"]) for t in trials.plan(spec)]


def test_winner_named_only_where_the_interval_supports_it(tmp_path):
    out = str(tmp_path / "run")
    synthetic_run(out)
    stdout, summary = report(out)
    winners = {p["point"]: p["winner"] for p in summary["points"]}
    # dedup: ipi is 20 % faster than none and vanilla (which tie): a winner
    for nvms in (2, 3, 4):
        w = winners["dedup-small-%dvm" % nvms]
        assert w["fastest"] == "ipi" and w["declared"], w
        assert w["comparison"]["verdict"] == "faster"
        assert w["comparison"]["ci_low"] > 0
    # vips 2: all three are one distribution; vips 3: ipi slower, none and
    # vanilla tie: no winner named in either
    for point in ("vips-small-2vm", "vips-small-3vm"):
        w = winners[point]
        assert not w["declared"], w
        assert w["comparison"]["verdict"] == "inside noise"
    assert winners["vips-small-3vm"]["fastest"] in ("none", "vanilla")
    assert "winner per cell" in stdout
    line = next(ln for ln in stdout.splitlines() if ln.startswith("vips-small-2vm")
                and "~" in ln)
    assert line.split()[1] == "-"     # the winner column: no winner (not the variant none)


def _split(whole, outdir, keep_workload, keep_vms):
    """A part of a results directory as a --workloads/--vms run writes it."""
    with open(os.path.join(whole, "runs.json")) as f:
        data = json.load(f)
    spec = data["spec"]
    spec["workloads"] = [w for w in spec["workloads"] if w["name"] == keep_workload]
    spec["vms"] = keep_vms
    data["rows"] = [r for r in data["rows"] if r["workload"] == keep_workload
                    and r["vms"] in keep_vms]
    os.makedirs(outdir)
    with open(os.path.join(outdir, "runs.json"), "w") as f:
        json.dump(data, f)


def merge(out, *dirs):
    return subprocess.run([PY, EXPERIMENT, "--merge"] + list(dirs) + ["--out", out],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=300)


def test_merge_joins_a_split_spec_side_by_side(tmp_path):
    whole = str(tmp_path / "whole")
    synthetic_run(whole, reps=5)
    _, full = report(whole)
    parts = [str(tmp_path / n) for n in ("dedup23", "dedup4", "vips")]
    _split(whole, parts[0], "dedup", [2, 3])
    _split(whole, parts[1], "dedup", [4])
    _split(whole, parts[2], "vips", [2, 3, 4])
    out = str(tmp_path / "joined")
    r = merge(out, *parts)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "summary.json")) as f:
        joined = json.load(f)
    # the same points, each with its own repetitions: the same statistics
    assert [p["point"] for p in joined["points"]] == [p["point"] for p in full["points"]]
    for pj, pf in zip(joined["points"], full["points"]):
        assert pj["variants"] == pf["variants"], pj["point"]
    assert "series cells reproduced: 4 of 6" in r.stdout
    # two parts that leave a cell out: it shows as not run
    out2 = str(tmp_path / "holes")
    r = merge(out2, parts[1], parts[2])
    assert r.returncode == 0, r.stderr
    assert "not run" in next(ln for ln in r.stdout.splitlines()
                             if ln.startswith("dedup-small-2vm"))


def test_merge_refuses_parts_that_overlap_in_part(tmp_path):
    whole = str(tmp_path / "whole")
    synthetic_run(whole, reps=3)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _split(whole, a, "dedup", [2, 3])
    _split(whole, b, "dedup", [3, 4])
    r = merge(str(tmp_path / "ab"), a, b)
    assert r.returncode == 2
    assert "share some cells (point and variant) but not all" in r.stderr


def test_merge_adds_a_variant_run_later(tmp_path):
    """A variant run later on the same points joins the earlier run's cells."""
    whole = str(tmp_path / "whole")
    synthetic_run(whole, reps=5)
    _, full = report(whole)
    with open(os.path.join(whole, "runs.json")) as f:
        data = json.load(f)
    parts = []
    for name, keep in (("old", ("none", "vanilla")), ("new", ("ipi",))):
        part = dict(data, rows=[r for r in data["rows"] if r["variant"] in keep],
                    spec=dict(data["spec"], variants=[v for v in data["spec"]["variants"]
                                                      if v["label"] in keep]))
        os.makedirs(str(tmp_path / name))
        with open(str(tmp_path / name / "runs.json"), "w") as f:
            json.dump(part, f)
        parts.append(str(tmp_path / name))
    out = str(tmp_path / "joined")
    r = merge(out, *parts)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "summary.json")) as f:
        joined = json.load(f)
    for pj, pf in zip(joined["points"], full["points"]):
        assert pj["variants"] == pf["variants"], pj["point"]


def test_merge_seeds_in_virtual_time():
    """Pooled parts continue each other's seeds; joined parts share the first."""
    def part(seed, reps, variant="ipi"):
        return {"spec": {"time": "virtual", "seed": seed, "repetitions": reps},
                "rows": [{"point": "p", "variant": variant, "rep": r} for r in range(reps)]}
    assert vreport._seed_clash([part(1, 3), part(4, 2)], False) is None
    assert "continue" in vreport._seed_clash([part(1, 3), part(1, 3)], False)
    assert "continue" in vreport._seed_clash([part(1, 3), part(5, 1)], False)
    assert vreport._seed_clash([part(1, 3), part(1, 4, "vanilla")], True) is None
    assert "share the first seed" in vreport._seed_clash([part(1, 3), part(4, 2, "x")], True)
