"""The experiment runner in virtual time (spec key time = "virtual").

* the spec keys time/shift/quantum/seed and their refusals (exit status 2);
* the flags a virtual-time trial passes to QEMU, for one VM and for several
  VMs on one shared pool (no QEMU needed);
* one seed is an exact comparison: no interval, not "inside noise";
* the CI regression of the experiment itself: experiments/ci-vtime.toml
  run once, its ipi and none reductions against vanilla compared with
  experiments/ci-vtime.expected.toml (re-record: the command in that file);
* several VMs in one virtual time (skipped only while QEMU refuses pool=
  with time=virtual, detected by its exact message).

Run: /usr/bin/python3 -m pytest tests/integration/test_experiment_vtime.py
"""
import csv
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENT = os.path.join(REPO, "scripts", "experiment.py")
CI_SPEC = os.path.join(REPO, "experiments", "ci-vtime.toml")
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vschedexp import expected, report, stats, summary, trials  # noqa: E402
from vschedexp import spec as experiment_spec  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

VALID = {
    "name": "t", "workloads": [{"name": "dedup", "size": "small"}], "vms": [1, 2],
    "vcpus": 4, "pcpus": 2, "policies": ["none", "vanilla", "ipi"], "time": "virtual",
}


def experiment(args, timeout=60, **env):
    return subprocess.run([PY, EXPERIMENT] + args, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **env))


def write_json(tmp_path, spec):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


# ------------------------------------------------------------ spec keys

@pytest.mark.parametrize("change,message", [
    ({"time": "sometimes"}, "field 'time': 'sometimes' is not one of real|virtual"),
    ({"time": True}, "field 'time'"),
    ({"shift": -1}, "field 'shift': -1 out of range 0..10"),
    ({"shift": 11}, "field 'shift': 11 out of range 0..10"),
    ({"shift": "auto"}, "field 'shift': expected an integer"),
    ({"quantum": 999}, "field 'quantum': 999 out of range 1000..10000000"),
    ({"quantum": 10000001}, "field 'quantum'"),
    ({"quantum": 1.5}, "field 'quantum': expected an integer"),
    ({"seed": -1}, "field 'seed'"),
    ({"time": "real", "shift": 0}, "field 'shift': only with time = \"virtual\""),
    ({"time": "real", "quantum": 5000}, "field 'quantum': only with time = \"virtual\""),
    ({"time": "real", "seed": 3}, "field 'seed': only with time = \"virtual\""),
    ({"accel_extra": "quantum=5000"}, "field 'accel_extra': 'quantum' is set by the runner"),
    ({"accel_extra": "time=real"}, "field 'accel_extra': 'time' is set by the runner"),
    ({"vcpus": [8]}, "field 'vcpus': a list needs one entry per entry of vms (2), got 1"),
    ({"vcpus": [8, 0]}, "field 'vcpus': 0 out of range"),
    ({"pool": "separate"}, "field 'pool': \"separate\" with time = \"virtual\""),
])
def test_bad_time_keys_refused(tmp_path, change, message):
    r = experiment(["--check", write_json(tmp_path, dict(VALID, **change))])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr


def test_time_defaults():
    real = experiment_spec.validate_spec(dict(VALID, time="real"))
    assert (real["time"], real["shift"], real["quantum"], real["seed"]) == (
        "real", None, None, None)
    virt = experiment_spec.validate_spec(VALID)
    assert (virt["time"], virt["shift"], virt["quantum"], virt["seed"]) == (
        "virtual", 0, None, 1)
    # a spec without the key is real time, as before
    old = experiment_spec.validate_spec({k: v for k, v in VALID.items() if k != "time"})
    assert old["time"] == "real"


@pytest.mark.parametrize("args,message", [
    (["--jobs", "2"], "--jobs needs time = \"virtual\""),
    (["--record-expected"], "--record-expected and --expect need time = \"virtual\""),
    (["--expect"], "need time = \"virtual\" and one seed"),
])
def test_options_refused_in_real_time(tmp_path, args, message):
    r = experiment([write_json(tmp_path, dict(VALID, time="real")), "--check"] + args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr


def test_expected_needs_one_seed(tmp_path):
    r = experiment([write_json(tmp_path, dict(VALID, repetitions=3)), "--check", "--expect"])
    assert r.returncode == 2 and "one seed (repetitions = 1)" in r.stderr, r.stderr


# ------------------------------------------------------------ what QEMU gets

def test_flags_of_a_virtual_time_trial(tmp_path):
    spec = experiment_spec.validate_spec(dict(VALID, shift=2, quantum=20000, seed=7,
                                              repetitions=3))
    variant = spec["variants"][2]
    one = trials.accel_of(spec, variant, "/s.json", "")
    assert one.startswith("tcg,thread=single,vcpu-sched=on,pcpus=2,directed-yield=ipi,")
    assert ",time=virtual,quantum=20000" in one and "pool=" not in one
    # several VMs on one shared pool: the same, plus the pool
    two = trials.accel_of(spec, variant, "/s.json", "vsched-x-t1", 2)
    assert two == one + ",pool=vsched-x-t1,pool-members=2"
    assert trials.icount_of(spec) == "shift=2,sleep=off"
    # a repetition is another seed, not a retry
    assert [experiment_spec.seed_of(spec, r) for r in range(3)] == [7, 8, 9]
    ctx = {"outdir": str(tmp_path), "qemu": "/bin/true", "image": str(tmp_path)}
    for d in ("stats", "logs"):
        (tmp_path / d).mkdir()
    for nvms in (1, 2):
        trial = trials.Trial("p", spec["workloads"][0], nvms, 2, 0, variant)
        vm, _, accel = trials._make_vm(spec, trial, ctx, "tag", 0,
                                       "vsched-x-t1" if nvms > 1 else "")
        cmd = " ".join(vm.command())
        assert "-icount shift=2,sleep=off" in cmd and "-seed 9" in cmd
        assert "-rtc base=2020-01-01T00:00:00,clock=vm" in cmd and "idle=halt" in cmd
        assert ("pool=vsched-x-t1" in accel) == (nvms > 1)
        assert ("-S" in vm.command()) == (nvms > 1)
    real = experiment_spec.validate_spec(dict(VALID, time="real"))
    assert trials.accel_of(real, variant, "/s.json", "").startswith("tcg,thread=multi,")
    assert "time=" not in trials.accel_of(real, variant, "/s.json", "")
    assert trials.icount_of(real) is None and experiment_spec.seed_of(real, 0) is None


def test_vcpus_per_vm_count():
    spec = experiment_spec.load_spec(CI_SPEC)
    assert spec["time"] == "virtual" and spec["repetitions"] == 1
    assert [experiment_spec.vcpus_of(spec, n) for n in spec["vms"]] == [8, 4]
    assert spec["pcpus"] == 2
    assert [v["label"] for v in spec["variants"]] == ["none", "vanilla", "ipi"]


# ------------------------------------------------------------ exact comparisons

def fake_rows(spec, latencies):
    """One ok row per (point, variant, rep) with the given latency."""
    rows = []
    for n, ((pid, label, rep), lat) in enumerate(latencies.items()):
        rows.append({"run_id": "r", "trial": n, "rep": rep, "point": pid, "variant": label,
                     "status": "ok", "latency_seconds": lat, "counters": {}})
    return rows


def test_one_seed_is_exact_and_says_so():
    spec = experiment_spec.validate_spec(dict(VALID, vms=[2], workloads=["dedup"]))
    pid = "dedup-small-2vm"
    rows = fake_rows(spec, {(pid, "none", 0): 1.2, (pid, "vanilla", 0): 1.0,
                            (pid, "ipi", 0): 0.9})
    points = summary.summarize(spec, rows, {})
    by = {e["variant"]: e for e in points[0]["variants"]}
    ipi, none = by["ipi"]["stats"]["vanilla"], by["none"]["stats"]["vanilla"]
    assert ipi["verdict"] == stats.EXACT_FASTER and ipi["ci_low"] is None
    assert abs(ipi["reduction"] - 10.0) < 1e-9
    assert none["verdict"] == stats.EXACT_SLOWER and abs(none["reduction"] + 20.0) < 1e-9
    # the series' cell: reproduced by an exact reduction of the series' sign
    assert points[0]["series"]["reproduced"] and points[0]["series"]["published"] == 8.87
    meta = {"run_id": "r", "qemu_version": "QEMU", "git_commit": "c", "host": "h",
            "host_cpus": 2}
    table = report.format_table(spec, points, meta)
    assert "virtual time: 1 seed (-seed 1..1, -icount shift=0" in table
    assert "every comparison is exact (no interval)" in table
    assert "faster (exact)" in table and "slower (exact)" in table
    assert "inside noise" not in table and "too few" not in table
    assert "+8.87%" in table and "+10.00%" in table      # published beside ours
    # the same single trial in real time is a sample: too few for a verdict
    real = dict(spec, time="real", shift=None, quantum=None, seed=None)
    rp = summary.summarize(real, rows, {})
    assert rp[0]["variants"][2]["stats"]["vanilla"]["verdict"] == stats.TOO_FEW
    real_table = report.format_table(real, rp, meta)
    assert "real time (host clock)" in real_table and "1 seed" not in real_table


def test_seeds_are_samples():
    spec = experiment_spec.validate_spec(dict(VALID, vms=[1], repetitions=5))
    pid = "dedup-small-1vm"
    lat = {}
    for rep in range(5):
        lat[(pid, "none", rep)] = 1.2 + 0.01 * rep
        lat[(pid, "vanilla", rep)] = 1.0 + 0.01 * rep
        lat[(pid, "ipi", rep)] = 0.9 + 0.01 * rep
    points = summary.summarize(spec, fake_rows(spec, lat), {})
    ipi = points[0]["variants"][2]["stats"]["vanilla"]
    assert ipi["verdict"] == stats.FASTER and ipi["ci_low"] is not None
    table = report.format_table(spec, points, {"run_id": "r", "qemu_version": "Q",
                                               "git_commit": "c", "host": "h",
                                               "host_cpus": 2})
    assert "virtual time: 5 seeds (-seed 1..5" in table


def test_expected_differences_name_the_move():
    spec = experiment_spec.validate_spec(dict(VALID, vms=[1], workloads=["dedup"]))
    pid = "dedup-small-1vm"
    points = summary.summarize(spec, fake_rows(spec, {
        (pid, "none", 0): 1.2, (pid, "vanilla", 0): 1.0, (pid, "ipi", 0): 0.9}), {})
    same = {"baseline": "vanilla", "tolerance": 0.01,
            "reductions": {pid: {"ipi": 10.0, "none": -20.0}}}
    assert expected.differences(same, spec, points) == []
    moved = dict(same, reductions={pid: {"ipi": 12.0, "none": -20.0},
                                   "vips-small-1vm": {"ipi": 1.0}})
    diffs = expected.differences(moved, spec, points)
    assert diffs == ["dedup-small-1vm ipi vs vanilla: expected +12.00 %, got +10.00 % "
                     "(moved -2.00 points)",
                     "vips-small-1vm: expected, but it did not run (refused or not in the "
                     "spec)"]
    assert expected.record_command(CI_SPEC) == \
        "scripts/experiment.py experiments/ci-vtime.toml --record-expected"


# ------------------------------------------------------------ the CI regression

@pytest.fixture(scope="module")
def ci_vtime(qemu, image_dir, tmp_path_factory):
    """experiments/ci-vtime.toml, two trials at once, compared with its
    expected file (--expect)."""
    out = str(tmp_path_factory.mktemp("ci-vtime") / "out")
    r = experiment([CI_SPEC, "--no-build", "--out", out, "--jobs", "2", "--expect"],
                   timeout=1800, VSCHED_QEMU=qemu, VSCHED_IMAGE=image_dir)
    with open(os.path.join(out, "runs.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return {"result": r, "out": out, "rows": rows}


def test_ci_vtime_reductions_are_the_expected_ones(ci_vtime):
    """A policy change that moves ipi or none against vanilla fails here;
    the message names the points and the command that re-records them."""
    r = ci_vtime["result"]
    assert r.returncode != 4, r.stderr
    assert r.returncode == 0, (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    assert "expected reductions: all match" in r.stdout


def test_ci_vtime_rows_carry_virtual_and_host_seconds(ci_vtime):
    rows = [x for x in ci_vtime["rows"] if x["vms"] == "1"]
    assert len(rows) == 6
    for row in rows:
        assert row["status"] == "ok", row
        assert row["time"] == "virtual" and row["seed"] == "1"
        assert row["icount"] == "shift=0,sleep=off"
        assert "thread=single" in row["accel"] and ",time=virtual" in row["accel"]
        assert row["vcpus"] == "8" and row["pcpus"] == "2"
        assert float(row["virtual_seconds"]) == float(row["latency_seconds"]) > 0
        assert float(row["host_seconds"]) > 0
        assert float(row["wall_seconds"]) >= float(row["host_seconds"])
    with open(os.path.join(ci_vtime["out"], "table.txt")) as f:
        table = f.read()
    assert "virtual time: 1 seed" in table and "(exact)" in table
    assert "inside noise" not in table


def test_two_vms_share_one_virtual_time(ci_vtime):
    """The 2 VMs x 4 vCPUs points of ci-vtime.toml: both VMs of a trial on
    one pool, with the same seed and the virtual-time flags."""
    rows = [x for x in ci_vtime["rows"] if x["vms"] == "2"]
    assert len(rows) == 12
    by_trial = {}
    for row in rows:
        assert row["status"] == "ok", row
        assert row["vcpus"] == "4" and row["seed"] == "1"
        assert ",time=virtual" in row["accel"] and "pool=%s" % row["pool"] in row["accel"]
        assert "pool-members=2" in row["accel"]
        by_trial.setdefault(row["trial"], []).append(row)
    assert all(len(v) == 2 and len({x["pool"] for x in v}) == 1 for v in by_trial.values())


def test_jobs_run_trials_at_once_rows_in_plan_order():
    """--jobs: trials overlap, rows stay in plan order, each trial once."""
    import threading
    import time as _time
    spec = experiment_spec.validate_spec(dict(VALID, vms=[1], repetitions=2,
                                              workloads=["dedup", "vips"]))
    running, peak, lock, seen = [0], [0], threading.Lock(), []

    def fake(trial, tno):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        _time.sleep(0.05 * (tno % 3))   # finish out of order
        with lock:
            running[0] -= 1
        return [{"trial": tno, "point": trial.point, "variant": trial.variant["label"],
                 "rep": trial.rep}]

    rows = []
    reached = trials.run_points(spec, fake, rows, stats.Options(), jobs=2,
                                on_trial=lambda t, n, r: seen.append(n))
    plan = trials.plan(spec)
    assert reached == {} and peak[0] == 2
    assert [r["trial"] for r in rows] == list(range(1, len(plan) + 1))
    assert [(r["point"], r["variant"], r["rep"]) for r in rows] == [
        (t.point, t.variant["label"], t.rep) for t in plan]
    assert sorted(seen) == list(range(1, len(plan) + 1))
