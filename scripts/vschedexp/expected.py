"""Expected reductions of a virtual-time spec: the CI regression of the
experiment itself (experiments/ci-vtime.toml, docs/experiment.rst).

In virtual time a run's result depends only on the guest, the spec and the
policy, so the reductions of each variant against the baseline are values of
the model. ``--record-expected`` writes them next to the spec
(``NAME.expected.toml``); the integration test runs the spec and compares: a
policy change that moves a reduction fails with the command that re-records
it, for when the move is intended."""

import datetime
import os

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11
    tomllib = None

# Percentage points a reduction may move before the test fails: the runs are
# deterministic, so this only absorbs the rounding of the stored value.
DEFAULT_TOLERANCE = 0.01


class ExpectedError(Exception):
    """An expected file that cannot be read or does not fit the spec."""


def expected_path(spec_path):
    """experiments/NAME.toml -> experiments/NAME.expected.toml"""
    base, _ = os.path.splitext(spec_path)
    return base + ".expected.toml"


def record_command(spec_path):
    rel = os.path.relpath(os.path.abspath(spec_path), _repo())
    return "scripts/experiment.py %s --record-expected" % rel


def _repo():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reductions_of(spec, points):
    """{point: {variant: reduction vs the baseline}} of every point that ran,
    rounded to 2 decimals (None: a side failed)."""
    base = spec["baseline"]
    out = {}
    for p in points:
        if p["refused"]:
            continue
        out[p["point"]] = {e["variant"]: (None if e["reduction"].get(base) is None
                                          else round(e["reduction"][base], 2))
                           for e in p["variants"] if e["variant"] != base}
    return out


def medians_of(points):
    return {p["point"]: {e["variant"]: e["median"] for e in p["variants"]}
            for p in points if not p["refused"]}


def write(path, spec, points, meta, spec_path):
    """Write the expected file (TOML, by hand: the standard library reads
    TOML but does not write it)."""
    if spec.get("time") != "virtual":
        raise ExpectedError("--record-expected needs time = \"virtual\": real-time "
                            "reductions are samples of a noisy host, not values")
    if spec["repetitions"] != 1:
        raise ExpectedError("--record-expected needs one seed (repetitions = 1): the "
                            "expected values are exact comparisons")
    red, med = reductions_of(spec, points), medians_of(points)
    failed = [(pid, v) for pid, vs in red.items() for v, x in vs.items() if x is None]
    if failed:
        raise ExpectedError("not recording: no reduction for %s (a run failed)"
                            % ", ".join("%s %s" % f for f in failed))
    lines = [
        "# Expected reductions of %s in virtual time (percent of the median guest" % spec["name"],
        "# latency against %s; positive is faster), one seed: the model's values." % spec["baseline"],
        "# Asserted by tests/integration/test_experiment_vtime.py. Re-record (after a",
        "# change that moves them on purpose) with one command:",
        "#     %s" % record_command(spec_path),
        "# Recorded %s, %s, commit %s." % (
            datetime.date.today().isoformat(), meta.get("qemu_version", "?"),
            meta.get("git_commit", "?")),
        'spec = "%s"' % spec["name"],
        'baseline = "%s"' % spec["baseline"],
        "tolerance = %s" % DEFAULT_TOLERANCE,
        "",
    ]
    for pid in red:
        lines.append('[reductions."%s"]' % pid)
        for v, x in red[pid].items():
            lines.append('"%s" = %.2f' % (v, x))
        lines.append("# median guest seconds: %s" % ", ".join(
            "%s %.6f" % (v, m) for v, m in med[pid].items() if m is not None))
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return red


def load(path):
    try:
        with open(path, "rb") as f:
            data = tomllib.loads(f.read().decode())
    except OSError as e:
        raise ExpectedError("%s: %s" % (path, e.strerror))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ExpectedError("%s: not valid TOML: %s" % (path, e))
    if not isinstance(data.get("reductions"), dict):
        raise ExpectedError("%s: no [reductions.POINT] tables" % path)
    return data


def differences(expected, spec, points):
    """Lines naming every reduction that moved beyond the tolerance, every
    expected point or variant missing from the results and every result
    point not recorded. Empty: the results match."""
    tol = float(expected.get("tolerance", DEFAULT_TOLERANCE))
    got = reductions_of(spec, points)
    want = expected["reductions"]
    out = []
    if expected.get("baseline", spec["baseline"]) != spec["baseline"]:
        out.append("baseline: expected %s, the spec has %s"
                   % (expected["baseline"], spec["baseline"]))
    for pid, variants in want.items():
        if pid not in got:
            out.append("%s: expected, but it did not run (refused or not in the spec)" % pid)
            continue
        for v, x in variants.items():
            y = got[pid].get(v)
            if y is None:
                out.append("%s %s vs %s: expected %+.2f %%, no result"
                           % (pid, v, spec["baseline"], x))
            elif abs(y - x) > tol:
                out.append("%s %s vs %s: expected %+.2f %%, got %+.2f %% (moved %+.2f points)"
                           % (pid, v, spec["baseline"], x, y, y - x))
    for pid in got:
        if pid not in want:
            out.append("%s: ran but has no expected values" % pid)
    return out
