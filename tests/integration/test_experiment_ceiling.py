"""experiment.py --ceiling on synthetic results (no QEMU, no guest).

An unscheduled run of one VM (L1 seconds, B busy CPU-seconds) bounds every
cell of N VMs on P slots from below: floor = max(L1, N x B / P).  The
headroom of a variant, (median - floor) / median, is the most any policy
could gain over it; the issue-13 bar of a series cell is reachable only
where vanilla's headroom reaches the series' figure + 5 points.
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENT = os.path.join(REPO, "scripts", "experiment.py")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _row(workload, vms, vcpus, pcpus, variant, lat, busy=None, args="-m 32"):
    kv = {"roi_seconds": lat}
    if busy is not None:
        kv["roi_busy_seconds"] = busy
    return {"workload": workload, "vms": vms, "vcpus": vcpus, "pcpus": pcpus, "args": args,
            "variant": variant, "status": "ok", "latency_seconds": lat,
            "result_json": json.dumps(kv)}


def _write(d, rows):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "runs.json"), "w") as f:
        json.dump({"meta": {}, "spec": {}, "refused": {}, "rows": rows}, f)
    return str(d)


def _ceiling(ideal, results):
    return subprocess.run([PY, EXPERIMENT, "--ceiling", ideal, results], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


def _cells(results):
    with open(os.path.join(results, "ceiling.json")) as f:
        return {(c["workload"], c["vms"]): c for c in json.load(f)}


def test_floor_is_the_larger_of_alone_and_shared_work(tmp_path):
    # one VM alone: 1.0 s, 12 busy CPU-seconds (medians) of its 16 vCPUs' 16
    ideal_rows = [_row("dedup", 1, 16, 16, "vanilla", lat, busy)
                  for lat, busy in ((0.9, 11.0), (1.0, 12.0), (1.1, 13.0))]
    ideal_rows.append(_row("vips", 1, 16, 16, "vanilla", 1.0, 4.0, args="-W 1"))
    ideal = _write(tmp_path / "ideal", ideal_rows)
    rows = []
    for lat in (2.0, 2.1, 1.9):   # 2 VMs: floor max(1.0, 2 x 12 / 16) = 1.5
        rows += [_row("dedup", 2, 16, 16, "vanilla", lat),
                 _row("dedup", 2, 16, 16, "ipi-prio", lat - 0.3)]
    rows.append(_row("vips", 2, 16, 16, "vanilla", 1.2, args="-W 1"))
    results = _write(tmp_path / "res", rows)
    r = _ceiling(ideal, results)
    assert r.returncode == 0, r.stderr
    cells = _cells(results)
    d = cells[("dedup", 2)]
    assert d["floor"] == 1.5
    assert abs(d["variants"]["vanilla"]["headroom"] - 25.0) < 1e-9
    assert abs(d["variants"]["ipi-prio"]["headroom"] - 100 * 0.2 / 1.7) < 1e-9
    # the series' dedup 2-VM figure is +8.87 %: bar 13.87 %, 25 % of headroom reaches it
    assert d["bar"]["bar"] == 8.87 + 5 and d["bar"]["reachable"] is True
    # vips: 2 x 4 / 16 = 0.5 < L1 = 1.0, so the floor is L1: 16.7 % of headroom
    v = cells[("vips", 2)]
    assert v["floor"] == 1.0
    assert abs(v["variants"]["vanilla"]["headroom"] - 100 * 0.2 / 1.2) < 1e-9
    assert v["bar"]["reachable"] is True  # the bar: 10.23 + 5 = 15.23 %
    assert "dedup-2vm" in r.stdout and os.path.exists(os.path.join(results, "ceiling.txt"))


def test_a_cell_without_headroom_cannot_reach_the_bar(tmp_path):
    ideal = _write(tmp_path / "ideal", [_row("dedup", 1, 16, 16, "vanilla", 1.0, 14.0)])
    # 4 VMs: floor max(1.0, 4 x 14 / 16) = 3.5; vanilla at 3.8 leaves 7.9 % < 20.6 %
    results = _write(tmp_path / "res", [_row("dedup", 4, 16, 16, "vanilla", 3.8)])
    r = _ceiling(ideal, results)
    assert r.returncode == 0, r.stderr
    c = _cells(results)[("dedup", 4)]
    assert c["floor"] == 3.5 and c["bar"]["reachable"] is False
    assert "no" in r.stdout.splitlines()[2]


def test_refuses_an_ideal_of_other_work(tmp_path):
    results = _write(tmp_path / "res", [dict(_row("dedup", 2, 16, 16, "vanilla", 2.0),
                                             threads=16)])
    cases = {
        "args": [_row("dedup", 1, 16, 16, "vanilla", 1.0, 12.0, args="-m 2")],
        "vcpus": [_row("dedup", 1, 8, 8, "vanilla", 1.0, 12.0)],
        "busy": [_row("dedup", 1, 16, 16, "vanilla", 1.0)],
        "workload": [_row("vips", 1, 16, 16, "vanilla", 1.0, 12.0)],
        "threads": [dict(_row("dedup", 1, 16, 16, "vanilla", 1.0, 12.0), threads=8)],
    }
    words = {"args": "not the same work", "vcpus": "one VM of 16 vCPUs",
             "busy": "roi_busy_seconds", "workload": "no successful dedup run",
             "threads": "8 threads"}
    for name, rows in cases.items():
        r = _ceiling(_write(tmp_path / name, rows), results)
        assert r.returncode == 2, (name, r.stdout)
        assert words[name] in r.stderr, (name, r.stderr)
    r = _ceiling(str(tmp_path / "missing"), results)
    assert r.returncode == 2 and "no readable runs.json" in r.stderr
