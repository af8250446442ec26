"""Reusable criteria over a Timeline. Each returns a Criterion; grading yields a Verdict with its evidence.

Too few samples to judge is "inconclusive" with the reason, never a pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from drillbit.model import Criterion, Outcome, Timeline, Verdict


def _scope(probe: str, phase: str | None) -> str:
    return f"{probe}" + (f" during {phase}" if phase else "")


def _samples(tl: Timeline, probe: str, phase: str | None) -> pd.DataFrame:
    return tl.select(probe=probe, phase=phase)


def percentile(values: np.ndarray, pct: float) -> float:
    """Nearest-rank-free linear percentile (numpy default); NaN for no values."""
    return float(np.percentile(values, pct)) if len(values) else float("nan")


def percentiles_by_phase(df: pd.DataFrame, pcts: tuple[float, ...] = (50, 95, 99)) -> pd.DataFrame:
    """Latency percentiles per phase (one row per phase) — the grading hot path for big timelines."""
    phase = df["phase"].astype("category")
    codes = phase.cat.codes.to_numpy()
    lat = df["latency"].to_numpy(dtype=float)
    rows = {}
    for code, name in enumerate(phase.cat.categories):
        part = lat[codes == code]
        part = part[~np.isnan(part)]
        if len(part):
            rows[name] = np.percentile(part, pcts)
    return pd.DataFrame.from_dict(rows, orient="index", columns=[f"p{int(p)}" for p in pcts])


def availability(name: str, probe: str, minimum: float, phase: str | None = None, min_samples: int = 1) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        df = _samples(tl, probe, phase)
        n = len(df)
        if n < min_samples:
            return Verdict(name, Outcome.INCONCLUSIVE, f"only {n} samples of {_scope(probe, phase)}", {"samples": n})
        ratio = float(df["ok"].mean())
        ev = {"availability": round(ratio, 6), "samples": n, "failures": int((~df["ok"].astype(bool)).sum())}
        outcome = Outcome.PASS if ratio >= minimum else Outcome.FAIL
        return Verdict(name, outcome, f"{ratio:.2%} of {n} checks of {_scope(probe, phase)} succeeded", ev)

    return Criterion(name, f"availability ≥ {minimum:.2%}", check)


def error_rate(name: str, probe: str, maximum: float, phase: str | None = None, min_samples: int = 1) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        df = _samples(tl, probe, phase)
        n = len(df)
        if n < min_samples:
            return Verdict(name, Outcome.INCONCLUSIVE, f"only {n} samples of {_scope(probe, phase)}", {"samples": n})
        rate = 1.0 - float(df["ok"].mean())
        ev = {"error_rate": round(rate, 6), "samples": n, "errors": int((~df["ok"].astype(bool)).sum())}
        first = df.loc[~df["ok"].astype(bool), "error"].dropna()
        if len(first):
            ev["example_error"] = str(first.iloc[0])[:200]
        outcome = Outcome.PASS if rate < maximum else Outcome.FAIL
        return Verdict(name, outcome, f"error rate {rate:.2%} over {n} requests of {_scope(probe, phase)}", ev)

    return Criterion(name, f"error rate < {maximum:.2%}", check)


def latency(
    name: str,
    probe: str,
    pct: float,
    maximum: float,
    phase: str | None = None,
    ok_only: bool = False,
    min_samples: int = 1,
) -> Criterion:
    """pXX latency (seconds) of a probe under a limit; failed samples count unless ok_only (a timeout is slow)."""

    def check(tl: Timeline) -> Verdict:
        df = _samples(tl, probe, phase)
        if ok_only:
            df = df[df["ok"].astype(bool)]
        lat = df["latency"].dropna().to_numpy(dtype=float)
        if len(lat) < min_samples:
            return Verdict(name, Outcome.INCONCLUSIVE, f"only {len(lat)} timed samples of {_scope(probe, phase)}")
        value = percentile(lat, pct)
        ev = {f"p{pct:g}_s": round(value, 4), "max_s": round(float(lat.max()), 4), "samples": len(lat)}
        outcome = Outcome.PASS if value < maximum else Outcome.FAIL
        return Verdict(name, outcome, f"p{pct:g} {value:.3f} s over {len(lat)} samples of {_scope(probe, phase)}", ev)

    return Criterion(name, f"p{pct:g} < {maximum:g} s", check)


def all_ok(name: str, probe: str, phase: str | None = None, what: str = "") -> Criterion:
    def check(tl: Timeline) -> Verdict:
        df = _samples(tl, probe, phase)
        if df.empty:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no samples of {_scope(probe, phase)}")
        bad = df[~df["ok"].astype(bool)]
        ev = {"samples": len(df), "failures": len(bad)}
        if len(bad):
            ev["errors"] = [str(e)[:200] for e in bad["error"].dropna().head(3)]
            return Verdict(name, Outcome.FAIL, f"{len(bad)} of {len(df)} {what or probe} checks failed", ev)
        return Verdict(name, Outcome.PASS, f"all {len(df)} {what or probe} checks succeeded", ev)

    return Criterion(name, "every check succeeds", check)


def recovered_within(name: str, probe: str, after_event: str, seconds: float) -> Criterion:
    """The first successful sample at or after the last ``after_event`` event came within ``seconds``."""

    def check(tl: Timeline) -> Verdict:
        marks = [e["ts"] for e in tl.events if e["kind"] == after_event]
        if not marks:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {after_event!r} event recorded")
        t0 = marks[-1]
        df = _samples(tl, probe, None)
        after = df[(df["ts"] >= t0) & df["ok"].astype(bool)]
        if after.empty:
            last = float(df["ts"].max() - t0) if len(df) else 0.0
            ev = {"observed_for_s": round(last, 2)}
            return Verdict(name, Outcome.FAIL, f"{probe} did not recover in {last:.1f} s after {after_event}", ev)
        took = float(after["ts"].iloc[0] - t0)
        outcome = Outcome.PASS if took <= seconds else Outcome.FAIL
        return Verdict(name, outcome, f"{probe} ok {took:.1f} s after {after_event}", {"recovery_s": round(took, 2)})

    return Criterion(name, f"recovered within {seconds:g} s", check)
