"""Statistics of a comparison: variant against a reference variant in one cell.

The effect is the *median latency reduction* ``100 * (1 - med(x) / med(ref))``
(positive: the variant is faster). Its 95 % interval is a percentile
bootstrap: both groups are resampled with replacement, independently, and
the reduction recomputed, RESAMPLES times; the interval is the 2.5th..97.5th
percentile of those. The resampling unit is the *trial* by default: the VMs
of one trial run at the same time on one pool and their latencies are not
independent, so a trial's rows are drawn together (a cluster bootstrap);
``unit="run"`` draws rows one by one. The rank test is Mann-Whitney U,
two-sided, on the same units (a trial counts with its median latency).

Seeded per comparison (a hash of cell, variant and reference), so a report
is reproducible and does not depend on the order cells are computed in.
See docs/experiment.rst, "Statistics".
"""

import zlib
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from scipy import stats as sps

RESAMPLES = 10000
SEED = 20261129
LEVEL = 95.0
# Fewer units than this in either group: no interval, no verdict.
MIN_UNITS = 3
UNITS = ("trial", "run")

FASTER, SLOWER, NOISE, TOO_FEW = "faster", "slower", "inside noise", "too few"
# Virtual time, one seed a side: the run is deterministic, so the reduction
# is the model's value, not a sample: no interval, no test, a sign.
EXACT_FASTER, EXACT_SLOWER, EXACT_EQUAL = "faster (exact)", "slower (exact)", "equal (exact)"
EXACT = (EXACT_FASTER, EXACT_SLOWER, EXACT_EQUAL)


@dataclass(frozen=True)
class Options:
    """How comparisons are computed (stored with every summary)."""
    unit: str = "trial"
    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = SEED
    min_units: int = MIN_UNITS

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError("unit %r is not one of %s" % (self.unit, "|".join(UNITS)))


@dataclass
class Comparison:
    """One variant against one reference in one cell."""
    variant: str
    ref: str
    n: int              # units (trials or runs) of the variant
    n_ref: int
    reduction: Optional[float]      # percent, positive is faster
    ci_low: Optional[float]
    ci_high: Optional[float]
    p: Optional[float]
    verdict: str

    @property
    def ci_width(self):
        if self.ci_low is None:
            return None
        return self.ci_high - self.ci_low

    def as_dict(self):
        return dict(asdict(self), ci_width=self.ci_width)


def reduction(x_median, ref_median):
    return 100.0 * (1.0 - x_median / ref_median)


# A verdict also needs the rank test: at 3-5 units a side the percentile
# bootstrap runs narrow and can exclude 0 where the ranks cannot separate.
ALPHA = 0.05


def verdict_of(lo, hi, p=0.0, alpha=ALPHA):
    """faster/slower only when the interval excludes 0 and p < alpha."""
    if lo is None:
        return TOO_FEW
    if p is None or p >= alpha:
        return NOISE
    if lo > 0:
        return FASTER
    if hi < 0:
        return SLOWER
    return NOISE


def _padded(groups):
    """Clusters of unequal size as one NaN-padded (clusters, width) matrix."""
    width = max(len(g) for g in groups)
    m = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        m[i, :len(g)] = g
    return m


def _boot_medians(groups, rng, resamples):
    """Median of the pooled rows of len(groups) clusters drawn with replacement."""
    m = _padded(groups)
    idx = rng.integers(0, len(groups), size=(resamples, len(groups)))
    draws = m[idx].reshape(resamples, -1)
    if np.isnan(m).any():
        return np.nanmedian(draws, axis=1)
    return np.median(draws, axis=1)


def exact_verdict(red):
    if red > 0:
        return EXACT_FASTER
    return EXACT_SLOWER if red < 0 else EXACT_EQUAL


def compare(variant, ref, groups_x, groups_ref, key, opts=None, exact=False):
    """Compare two cells' latencies. groups_*: a list of units, each a list of
    latencies (one trial's VM runs, or a single run). key seeds the bootstrap.
    exact: the runs are deterministic (virtual time), so one trial a side is
    the answer (an exact verdict); more trials a side (seeds) are samples."""
    opts = opts or Options()
    groups_x = [list(g) for g in groups_x if len(g)]
    groups_ref = [list(g) for g in groups_ref if len(g)]
    n, n_ref = len(groups_x), len(groups_ref)
    if not n or not n_ref:
        return Comparison(variant, ref, n, n_ref, None, None, None, None, TOO_FEW)
    med_x = float(np.median(np.concatenate(groups_x)))
    med_ref = float(np.median(np.concatenate(groups_ref)))
    red = reduction(med_x, med_ref)
    if exact and n == 1 and n_ref == 1 and opts.unit == "trial":
        return Comparison(variant, ref, n, n_ref, red, None, None, None, exact_verdict(red))
    if n < opts.min_units or n_ref < opts.min_units:
        return Comparison(variant, ref, n, n_ref, red, None, None, None, TOO_FEW)
    rng = np.random.default_rng([opts.seed, zlib.crc32(key.encode())])
    boot = 100.0 * (1.0 - _boot_medians(groups_x, rng, opts.resamples)
                    / _boot_medians(groups_ref, rng, opts.resamples))
    tail = (100.0 - opts.level) / 2
    lo, hi = (float(v) for v in np.percentile(boot, [tail, 100.0 - tail]))
    p = rank_p([np.median(g) for g in groups_x], [np.median(g) for g in groups_ref])
    return Comparison(variant, ref, n, n_ref, red, lo, hi, p, verdict_of(lo, hi, p))


def rank_p(x, y):
    """Two-sided Mann-Whitney U p-value (1.0 when every value is equal)."""
    if len(set(x) | set(y)) == 1:
        return 1.0
    return float(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def units_of(rows, unit):
    """Latencies of ok rows grouped by unit: one list per trial, or per run.
    A trial is (run_id, rep, trial): trial numbers restart in a merged run."""
    if unit not in UNITS:
        raise ValueError("unit %r is not one of %s" % (unit, "|".join(UNITS)))
    ok = [r for r in rows if r["status"] == "ok" and r["latency_seconds"] is not None]
    if unit == "run":
        return [[r["latency_seconds"]] for r in ok]
    groups = {}
    for r in ok:
        groups.setdefault((r.get("run_id"), r.get("rep"), r.get("trial")),
                          []).append(r["latency_seconds"])
    return [groups[k] for k in sorted(groups, key=str)]
