"""Integration tests of the experiment runner (scripts/experiment.py).

* the CI-sized spec (experiments/ci.toml: 2 VMs, small inputs, 2 policies,
  1 repetition) end to end: a row per VM run with every field, table and PNG;
  the guest-side checks (dedup round trip, vips output size) in the rows;
* a panicking and a hanging guest are failed rows, within the timeout;
* malformed specs are refused, naming the field (table-driven).

The two-VM points need QEMU's pool= property (several QEMUs on one pool of
slots). Without it the runner must refuse them with a clear message: the test
checks that, then runs the same spec with pool = "separate" so the end-to-end
path is still covered. Once pool= exists the shared-pool run is the one checked
(and the rows of a trial must share one pool name, unique to the trial).
"""
import csv
import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENT = os.path.join(REPO, "scripts", "experiment.py")
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vschedexp import host, spec as experiment_spec, trials  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def run_experiment(args, qemu, image_dir, timeout=900):
    env = dict(os.environ, VSCHED_QEMU=qemu, VSCHED_IMAGE=image_dir)
    t0 = time.monotonic()
    r = subprocess.run([PY, EXPERIMENT] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=env, timeout=timeout)
    r.elapsed = time.monotonic() - t0
    return r


def write_spec(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def read_rows(outdir):
    with open(os.path.join(outdir, "runs.csv"), newline="") as f:
        return list(csv.DictReader(f))


# Fields every row must carry a value in (failed rows may lack latency etc.).
REQUIRED = ["run_id", "spec", "timeout", "trial", "point", "workload", "size", "vms", "vm_index", "vcpus",
            "pcpus", "pool_mode", "policy", "relaxed_boost", "variant", "rep", "order",
            "status", "memory_mb", "accel", "qemu", "qemu_version", "git_commit", "host",
            "host_cpus", "started_at", "log"]
REQUIRED_OK = REQUIRED + ["latency_seconds", "latency_key", "guest_seconds", "boot_seconds",
                          "wall_seconds", "threads", "stats_file", "result_json"]


@pytest.fixture(scope="module")
def ci_run(qemu, image_dir, tmp_path_factory):
    """experiments/ci.toml, shared pool when QEMU has pool=, else refused + separate pools."""
    tmp = tmp_path_factory.mktemp("exp-ci")
    has_pool = host.qemu_has_pool(qemu)
    out = str(tmp / "shared")
    r = run_experiment([os.path.join(REPO, "experiments", "ci.toml"), "--no-build",
                        "--out", out], qemu, image_dir)
    refused = None
    if not has_pool:
        refused = r
        with open(os.path.join(REPO, "experiments", "ci.toml")) as f:
            text = f.read().replace('pool = "shared"', 'pool = "separate"')
        spec = write_spec(tmp / "ci-separate.toml", text)
        out = str(tmp / "separate")
        r = run_experiment([spec, "--no-build", "--out", out], qemu, image_dir)
    return {"has_pool": has_pool, "refused": refused, "result": r, "out": out}


def test_ci_spec_end_to_end(ci_run):
    r = ci_run["result"]
    assert r.returncode == 0, "experiment failed (%d):\n%s\n%s" % (r.returncode, r.stdout,
                                                                    r.stderr)
    out = ci_run["out"]
    rows = read_rows(out)
    spec = experiment_spec.load_spec(os.path.join(REPO, "experiments", "ci.toml"))
    expected = (len(spec["workloads"]) * len(spec["variants"]) * spec["repetitions"]
                * sum(spec["vms"]))
    assert len(rows) == expected
    for row in rows:
        for k in REQUIRED_OK:
            assert row.get(k) not in (None, ""), "row %s lacks %s" % (row["trial"], k)
        assert row["status"] == "ok", row
        assert float(row["latency_seconds"]) > 0
        assert row["latency_key"] == "roi_seconds"
        assert row["vms"] == "2" and row["vcpus"] == str(spec["vcpus"])
        assert "directed-yield=%s" % row["policy"] in row["accel"]
        assert row["qemu_version"].startswith("QEMU emulator version")
        assert row["git_commit"] != ""
        assert os.path.exists(os.path.join(out, row["log"]))
        assert os.path.exists(os.path.join(out, row["stats_file"]))
        assert any(k.startswith("c_spins_detected") for k in row)
    # every variant of every point ran, A/B interleaved within the point
    assert {(r_["point"], r_["variant"]) for r_ in rows} == {
        ("%s-%s-2vm" % (w["name"], w["size"]), v["label"])
        for w in spec["workloads"] for v in spec["variants"]}
    # the VMs of a trial ran together: on one pool when shared
    by_trial = {}
    for row in rows:
        by_trial.setdefault(row["trial"], []).append(row)
    assert all(len(v) == 2 for v in by_trial.values())
    if ci_run["has_pool"]:
        names = set()
        for trows in by_trial.values():
            pools = {t["pool"] for t in trows}
            assert len(pools) == 1 and "" not in pools
            assert "pool=%s" % pools.pop() in trows[0]["accel"]
            names |= {t["pool"] for t in trows}
        assert len(names) == len(by_trial), "pool names must be unique per trial"
    # outputs
    with open(os.path.join(out, "table.txt")) as f:
        table = f.read()
    assert "median s" in table and "vs vanilla" in table
    for v in spec["variants"]:
        assert v["label"] in table
    with open(os.path.join(out, "plot.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "runs.json")) as f:
        data = json.load(f)
    assert data["meta"]["qemu_version"].startswith("QEMU")
    assert len(data["rows"]) == len(rows)
    assert all(isinstance(x["counters"], dict) and x["counters"] for x in data["rows"])
    assert "plot: " in r.stdout and "plot.png" in r.stdout


def test_shared_pool_refused_without_pool_support(ci_run):
    if ci_run["has_pool"]:
        # pool= exists: the shared-pool run above is the real one
        assert ci_run["refused"] is None
        return
    r = ci_run["refused"]
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "refused" in r.stderr and "pool=" in r.stderr
    assert "dedup-small-2vm" in r.stderr


def test_guest_checks_in_rows(ci_run):
    rows = read_rows(ci_run["out"])
    dedup = [r for r in rows if r["workload"] == "dedup"]
    vips = [r for r in rows if r["workload"] == "vips"]
    assert dedup and vips
    for r in dedup:
        res = json.loads(r["result_json"])
        assert r["roundtrip"] == "ok" and r["check"] == "ok"
        assert res["in_bytes"] == 2 << 20
        assert res["unique"] < res["chunks"] and res["ratio"] > 1.5
        assert res["threads_total"] == 3 * res["stage_threads"] + 2
    for r in vips:
        res = json.loads(r["result_json"])
        assert r["size_check"] == "ok" and r["check"] == "ok"
        assert (res["out_width"], res["out_height"], res["out_bands"]) == (320, 480, 3)
        assert res["vips_threads"] == int(r["vcpus"])


def test_merge_pools_runs_of_one_spec(ci_run, tmp_path):
    """--merge: the rows of two runs in one table, repetitions renumbered."""
    src = ci_run["out"]
    with open(os.path.join(src, "runs.json")) as f:
        one = json.load(f)
    out = str(tmp_path / "merged")
    r = subprocess.run([PY, EXPERIMENT, "--merge", src, src, "--out", out],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "runs.json")) as f:
        merged = json.load(f)
    reps = one["spec"]["repetitions"]
    assert len(merged["rows"]) == 2 * len(one["rows"])
    assert merged["spec"]["repetitions"] == 2 * reps
    assert sorted({x["rep"] for x in merged["rows"]}) == list(range(2 * reps))
    assert len(read_rows(out)) == 2 * len(one["rows"])
    assert os.path.exists(os.path.join(out, "table.txt"))
    assert os.path.exists(os.path.join(out, "plot.png"))
    # another experiment's directory is refused, naming the field
    other = tmp_path / "other"
    other.mkdir()
    with open(other / "runs.json", "w") as f:
        json.dump(dict(one, spec=dict(one["spec"], vcpus=one["spec"]["vcpus"] + 1)), f)
    r = subprocess.run([PY, EXPERIMENT, "--merge", src, str(other), "--out",
                        str(tmp_path / "bad")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    assert r.returncode == 2 and "'vcpus'" in r.stderr, r.stderr


def test_failed_guests_reported_as_failed(qemu, image_dir, tmp_path):
    timeout = 45
    spec = write_spec(tmp_path / "fail.toml", """
name = "fail"
workloads = ["panic", "hang"]
vms = [1]
vcpus = 2
pcpus = 1
policies = ["ipi"]
repetitions = 1
timeout = %d
""" % timeout)
    out = str(tmp_path / "out")
    r = run_experiment([spec, "--no-build", "--out", out], qemu, image_dir)
    assert r.returncode == 1, (r.stdout, r.stderr)
    rows = {row["workload"]: row for row in read_rows(out)}
    assert rows["panic"]["status"] == "failed" and rows["panic"]["reason"] == "panic"
    assert rows["hang"]["status"] == "failed" and rows["hang"]["reason"] == "timeout"
    for row in rows.values():
        assert row["latency_seconds"] == ""        # never a number
        assert float(row["wall_seconds"]) < timeout + 15
    assert float(rows["panic"]["wall_seconds"]) < timeout
    with open(os.path.join(out, "table.txt")) as f:
        table = f.read()
    assert "FAILED" in table and "timeout" in table and "panic" in table
    assert r.elapsed < 2 * timeout + 60


def test_sigterm_summarises_and_stops_qemu(qemu, image_dir, tmp_path):
    spec = write_spec(tmp_path / "hang.toml", """
workloads = ["hang"]
vms = [1]
vcpus = 1
pcpus = 1
policies = ["vanilla", "ipi"]
timeout = 300
""")
    out = str(tmp_path / "out")
    env = dict(os.environ, VSCHED_QEMU=qemu, VSCHED_IMAGE=image_dir)
    p = subprocess.Popen([PY, EXPERIMENT, spec, "--no-build", "--out", out],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Terminate once the runner has started its trials (its start-up, which
    # asks the binary for its policies, can take seconds on a loaded host).
    first = p.stdout.readline()
    assert " trials " in first, first
    time.sleep(3)
    p.terminate()
    stdout, stderr = p.communicate(timeout=60)
    stdout = first + stdout
    assert p.returncode == 130, (stdout, stderr)
    assert "interrupted" in stderr
    assert os.path.exists(os.path.join(out, "table.txt"))
    with open(os.path.join(out, "runs.json")) as f:
        assert json.load(f)["meta"]["interrupted"] is True
    # no QEMU of ours is left (its command line names our output directory)
    time.sleep(1)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmd and out in cmd:
            left.append(pid)
    assert not left, "QEMU processes left running: %s" % left


VALID = {
    "name": "t", "workloads": [{"name": "dedup", "size": "small"}], "vms": [2], "vcpus": 4,
    "pcpus": 2, "policies": ["vanilla", "ipi"], "repetitions": 1, "timeout": 60,
}


@pytest.mark.parametrize("change,field", [
    ({"vms": None}, "vms"),
    ({"vms": [0]}, "vms"),
    ({"vms": "two"}, "vms"),
    ({"vcpus": 0}, "vcpus"),
    ({"vcpus": "4"}, "vcpus"),
    ({"pcpus": None}, "pcpus"),
    ({"policies": ["vanilla", "fast"]}, "policies"),
    ({"policies": []}, "policies"),
    ({"relaxed_boost": ["yes"]}, "relaxed_boost"),
    ({"repetitions": 0}, "repetitions"),
    ({"timeout": 1}, "timeout"),
    ({"workloads": []}, "workloads"),
    ({"workloads": [{"name": "dedup", "size": "huge"}]}, "workloads[0].size"),
    ({"workloads": [{"name": "a b"}]}, "workloads[0].name"),
    ({"workloads": [{"name": "dedup", "colour": 1}]}, "workloads[0].colour"),
    ({"baseline": "ipi-prio"}, "baseline"),
    ({"pool": "global"}, "pool"),
    ({"accel_extra": "pcpus=3"}, "accel_extra"),
    ({"cpu": "max -monitor"}, "cpu"),
    ({"cpu": ""}, "cpu"),
    ({"repetiton": 3}, "repetiton"),
    ({"name": "../x"}, "name"),
    ({"variants": ["vanilla", "ipi/fast"]}, "variants"),
    ({"variants": ["vanilla", "ipi+pcpus=4"]}, "variants"),
    ({"variants": ["vanilla", "ipi+ipi-lift"]}, "variants"),
    ({"variants": ["vanilla", "fast+ipi-lift=on"]}, "variants"),
    ({"variants": ["vanilla"], "policies": None, "relaxed_boost": [True]}, "variants"),
])
def test_malformed_spec_refused(tmp_path, change, field):
    spec = dict(VALID)
    for k, v in change.items():
        if v is None:
            spec.pop(k)
        else:
            spec[k] = v
    path = write_spec(tmp_path / "bad.json", json.dumps(spec))
    r = subprocess.run([PY, EXPERIMENT, "--check", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "field '%s'" % field in r.stderr, r.stderr


def test_malformed_toml_refused(tmp_path):
    path = write_spec(tmp_path / "bad.toml", "vms = [2\n")
    r = subprocess.run([PY, EXPERIMENT, "--check", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 2 and "not valid TOML" in r.stderr


def test_shipped_specs_valid():
    for name in ("default", "ci", "bench", "series", "series-real", "ci-vtime"):
        spec = experiment_spec.load_spec(os.path.join(REPO, "experiments", name + ".toml"))
        assert spec["name"] == name
    # the series' shape in virtual time: 16 slots, 2/3/4 VMs of 16 vCPUs, every variant
    series = experiment_spec.load_spec(os.path.join(REPO, "experiments", "series.toml"))
    assert series["time"] == "virtual" and series["pool"] == "shared"
    assert (series["vms"], series["vcpus"], series["pcpus"]) == ([2, 3, 4], 16, 16)
    assert [w["name"] for w in series["workloads"]] == ["dedup", "vips"]
    assert {v["label"] for v in series["variants"]} == {
        "none", "vanilla", "ipi", "ipi/strict", "ipi-v2", "ipi-prio", "random"}
    bench = experiment_spec.load_spec(os.path.join(REPO, "experiments", "bench.toml"))
    assert bench["vms"] == [2, 3, 4] and bench["vcpus"] == 4 and bench["pcpus"] == 2
    # every VM of a point is a run: at least 5 runs per cell
    assert bench["repetitions"] * min(bench["vms"]) >= 5
    assert {v["label"] for v in bench["variants"]} >= {"none", "vanilla", "ipi", "ipi/strict",
                                                       "ipi-v2", "ipi-prio"}


def test_a_variant_adds_its_own_properties():
    """ipi-prio with and without a mechanism in one run: the label carries the
    properties, each trial's -accel gets them, the other variants do not."""
    raw = {k: v for k, v in VALID.items() if k != "policies"}
    spec = experiment_spec.validate_spec(dict(raw, variants=[
        "vanilla", "ipi-prio", "ipi-prio+ipi-lift=on+slice=2ms"]))
    labels = [v["label"] for v in spec["variants"]]
    assert labels == ["vanilla", "ipi-prio", "ipi-prio+ipi-lift=on+slice=2ms"]
    accel = {v["label"]: trials.accel_of(spec, v, "/tmp/s.json", None)
             for v in spec["variants"]}
    assert accel["ipi-prio+ipi-lift=on+slice=2ms"].endswith(
        "directed-yield=ipi-prio,relaxed-boost=on,stats-file=/tmp/s.json,ipi-lift=on,slice=2ms")
    assert "ipi-lift" not in accel["ipi-prio"] and "ipi-lift" not in accel["vanilla"]
    assert experiment_spec.validate_spec(experiment_spec.raw_from(spec)) == spec


def test_cpu_model_reaches_every_vm(tmp_path):
    """cpu = "max,-monitor" (a KVM guest's view, for pv-tlb-flush) is every
    VM's -cpu; without it the VMs get max."""
    for raw_cpu, want in ((None, "max"), ("max,-monitor", "max,-monitor")):
        raw = dict(VALID) if raw_cpu is None else dict(VALID, cpu=raw_cpu)
        spec = experiment_spec.validate_spec(raw)
        trial = trials.plan(spec)[0]
        ctx = {"outdir": str(tmp_path), "qemu": "/bin/true", "image": None}
        os.makedirs(os.path.join(str(tmp_path), "stats"), exist_ok=True)
        vm, _, _ = trials._make_vm(spec, trial, ctx, "t", 0, None)
        cmd = vm.command()
        assert cmd[cmd.index("-cpu") + 1] == want


def test_off_is_upstream_qemu_in_real_time_only():
    """The 'off' variant runs vcpu-sched=off (the host kernel overcommits):
    no slots, no pool, no policy; virtual time refuses it, naming why."""
    raw = {k: v for k, v in VALID.items() if k != "policies"}
    spec = experiment_spec.validate_spec(dict(raw, variants=["off", "vanilla", "ipi-prio"],
                                              compare=["off"]))
    off = next(v for v in spec["variants"] if v["label"] == "off")
    assert trials.accel_of(spec, off, "/tmp/s.json", "pool1", 2) == \
        "tcg,thread=multi,vcpu-sched=off"
    assert spec["compare"] == ["off"]
    with pytest.raises(experiment_spec.SpecError, match="no virtual-time form"):
        experiment_spec.validate_spec(dict(raw, variants=["off", "vanilla"], time="virtual"))


def test_variants_and_overrides():
    raw = {k: v for k, v in VALID.items() if k != "policies"}
    spec = experiment_spec.validate_spec(dict(raw, variants=["ipi/strict", "none"]))
    assert [(v["policy"], v["relaxed_boost"]) for v in spec["variants"]] == [
        ("ipi", False), ("none", True)]
    assert spec["baseline"] == "ipi/strict"
    r = subprocess.run([PY, EXPERIMENT, "--list", os.path.join(REPO, "experiments", "bench.toml"),
                        "--reps", "1", "--vms", "3", "--workloads", "vips"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 6 and all("vips-small-3vm" in x for x in lines)


def test_policies_come_from_the_binary(qemu, tmp_path):
    names = host.qemu_policies(qemu)
    assert names is not None and {"none", "vanilla", "ipi", "ipi-prio"} <= set(names)
    # the fallback list (no binary to ask) is this tree's registry
    assert set(experiment_spec.POLICIES) == set(names)
    spec = write_spec(tmp_path / "p.json", json.dumps(dict(VALID, policies=["vanilla", "nope"])))
    r = subprocess.run([PY, EXPERIMENT, "--check", spec], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60,
                       env=dict(os.environ, VSCHED_QEMU=qemu))
    assert r.returncode == 2 and "'nope' is not one of" in r.stderr
    assert "the policies of %s" % qemu in r.stderr, r.stderr
