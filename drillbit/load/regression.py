"""Is a run significantly slower than its baseline? Per-second p95 latencies of the two runs, compared.

The test: a one-sided Mann-Whitney U test (candidate's per-second p95s stochastically greater than the baseline's;
normal approximation with tie and continuity corrections) at significance ``alpha``, AND an effect-size floor: the
ratio of the medians must reach ``min_ratio``. Both are needed: with thousands of seconds a 1 % difference is
"significant" yet harmless, and a large ratio over a handful of noisy seconds is not evidence. A bootstrap 95 %
confidence interval of the median ratio is reported alongside. Per-second values are autocorrelated, so the p-value
is optimistic; the effect-size floor is what keeps noise from failing a run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from drillbit.load.scenarios import PRIMARY

ALPHA = 0.01
MIN_RATIO = 1.10
MIN_SECONDS = 10


@dataclass(frozen=True)
class Comparison:
    n_baseline: int
    n_candidate: int
    median_baseline: float
    median_candidate: float
    ratio: float  # median candidate / median baseline
    u: float
    p_value: float
    ci_low: float
    ci_high: float
    alpha: float
    min_ratio: float

    @property
    def slowdown(self) -> bool:
        """Statistically significant AND at least ``min_ratio`` slower."""
        return self.p_value < self.alpha and self.ratio >= self.min_ratio

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["slowdown"] = self.slowdown
        return {k: round(v, 6) if isinstance(v, float) and math.isfinite(v) else v for k, v in d.items()}


def describe(alpha: float = ALPHA, min_ratio: float = MIN_RATIO) -> str:
    return f"one-sided Mann-Whitney U on per-second p95s: slower when p < {alpha:g} and median ratio >= {min_ratio:.2f}"


def mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """U statistic of ``x`` and the one-sided p-value for "x is stochastically greater than y" (asymptotic)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    both = np.concatenate([x, y])
    ranks = _rankdata(both)
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    mean = n1 * n2 / 2
    _, counts = np.unique(both, return_counts=True)
    n = n1 + n2
    tie = float((counts**3 - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12 * ((n + 1) - tie)
    if var <= 0:
        return u1, 1.0
    z = (u1 - mean - 0.5) / math.sqrt(var)  # continuity correction towards the null
    return u1, 0.5 * math.erfc(z / math.sqrt(2))


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their ranks."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(len(a), dtype=float)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_a)) + 1]
    ends = np.r_[starts[1:], len(a)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2
    return ranks


def bootstrap_ratio_ci(
    candidate: np.ndarray, baseline: np.ndarray, n_boot: int = 2000, conf: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of median(candidate) / median(baseline)."""
    rng = np.random.default_rng(seed)
    c = rng.choice(candidate, size=(n_boot, len(candidate)), replace=True)
    b = rng.choice(baseline, size=(n_boot, len(baseline)), replace=True)
    mb = np.median(b, axis=1)
    ratios = np.median(c, axis=1) / np.where(mb > 0, mb, np.nan)
    ratios = ratios[~np.isnan(ratios)]
    if not len(ratios):
        return float("nan"), float("nan")
    tail = (1 - conf) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return float(lo), float(hi)


def compare(
    baseline: np.ndarray, candidate: np.ndarray, alpha: float = ALPHA, min_ratio: float = MIN_RATIO
) -> Comparison:
    """Compare the candidate's per-second p95s with the baseline's (NaNs dropped)."""
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    b, c = b[~np.isnan(b)], c[~np.isnan(c)]
    if len(b) < MIN_SECONDS or len(c) < MIN_SECONDS:
        raise ValueError(f"need at least {MIN_SECONDS} seconds in each run (baseline {len(b)}, candidate {len(c)})")
    mb, mc = float(np.median(b)), float(np.median(c))
    u, p = mann_whitney_greater(c, b)
    lo, hi = bootstrap_ratio_ci(c, b)
    ratio = mc / mb if mb > 0 else float("inf")
    return Comparison(len(b), len(c), mb, mc, ratio, u, p, lo, hi, alpha, min_ratio)


# ------------------------------------------------------------------------------------------- stored runs and baselines

LOAD_FLOWS = ("load-smoke", "load", "stress", "soak", "sustained", "burst", "deployments")


def find_run(store: Any, run_id: str) -> Any:
    """A stored run by id or by a unique id prefix (as ``drillbit runs`` shows them)."""
    record = store.get(run_id)
    if record is not None:
        return record
    matches = [r for r in store.list(limit=5000) if r.run_id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    raise LookupError(f"no stored run {run_id!r}" if not matches else f"run id prefix {run_id!r} is ambiguous")


def find_baseline(store: Any, candidate: Any, baseline_id: str | None = None) -> Any | None:
    """The given baseline, else the latest completed, passing load run of the same scenario key (same scenario,
    target and offered load) in the same environment that started before the candidate."""
    if baseline_id:
        return find_run(store, baseline_id)
    for r in store.list(environment=candidate.environment, limit=5000):  # newest first
        if (
            r.run_id != candidate.run_id
            and r.flow in LOAD_FLOWS
            and r.scenario == candidate.scenario
            and r.status == "completed"
            and r.outcome == "pass"
            and r.started_at < candidate.started_at
        ):
            return r
    return None


def steady_p95s(store: Any, record: Any) -> np.ndarray:
    """A stored load run's per-second p95s (s) of its main operation during the steady phase."""
    target = (record.metrics.get("scenario") or {}).get("target")
    probe = PRIMARY.get(target, target)
    df = store.samples(record.environment, probe=f"per-second:{probe}", run_id=record.run_id)
    if df.empty:
        return np.array([])
    steady = df[df["phase"] == "steady"] if (df["phase"] == "steady").any() else df
    return steady["latency"].dropna().to_numpy(float)
