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


def all_ok(
    name: str,
    probe: str | list[str],
    phase: str | None = None,
    what: str = "",
    missing: tuple[Outcome, str] | None = None,
) -> Criterion:
    """Every check of ``probe`` (one name or several) in ``phase`` succeeded. No samples is inconclusive unless
    ``missing`` gives the outcome and reason (e.g. FAIL: "the service was not restored")."""
    names = [probe] if isinstance(probe, str) else list(probe)
    label = what or ", ".join(names)

    def check(tl: Timeline) -> Verdict:
        df = tl.select(phase=phase)
        df = df[df["probe"].isin(names)]
        if df.empty:
            if missing:
                return Verdict(name, missing[0], missing[1])
            return Verdict(name, Outcome.INCONCLUSIVE, f"no samples of {_scope(', '.join(names), phase)}")
        bad = df[~df["ok"].astype(bool)]
        ev = {"samples": len(df), "failures": len(bad)}
        if len(bad):
            ev["errors"] = [str(e)[:200] for e in bad["error"].dropna().head(3)]
            return Verdict(name, Outcome.FAIL, f"{len(bad)} of {len(df)} {label} checks failed", ev)
        return Verdict(name, Outcome.PASS, f"all {len(df)} {label} checks succeeded", ev)

    return Criterion(name, "every check succeeds", check)


def recovered_within(name: str, probe: str, after_event: str, seconds: float) -> Criterion:
    """The first successful sample at or after the last ``after_event`` event came within ``seconds``."""

    def check(tl: Timeline) -> Verdict:
        t0 = tl.last_event_ts(after_event)
        if t0 is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {after_event!r} event recorded")
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


# ------------------------------------------------------------------------------------------- chaos experiment criteria


def budget_share(
    name: str, probes: list[str], target: float, interval: float, max_share: float, phase: str | None = None
) -> Criterion:
    """The experiment spent at most ``max_share`` of the SLO's 28-day error budget.

    Each failed check stands for ``interval`` seconds of unavailability of that surface (time-based SLI); the
    budget is (1 - target) × 28 days. "SLO held" then means the experiment alone cannot threaten the month.
    """
    budget_s = (1.0 - target) * 28 * 86400

    def check(tl: Timeline) -> Verdict:
        df = tl.frame
        df = df[df["probe"].isin(probes)]
        if phase:
            df = df[df["phase"] == phase]
        if df.empty:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no samples of {', '.join(probes)}")
        failures = int((~df["ok"].astype(bool)).sum())
        bad_s = failures * interval
        share = bad_s / budget_s
        ev = {"failed_checks": failures, "checks": len(df), "bad_seconds": bad_s, "budget_share": round(share, 5)}
        outcome = Outcome.PASS if share <= max_share else Outcome.FAIL
        reason = f"{failures} failed checks ≈ {bad_s:g} s unavailable = {share:.2%} of the 28-day error budget"
        return Verdict(name, outcome, reason, ev)

    return Criterion(name, f"≤ {max_share:.0%} of the {target:.2%} SLO's 28-day budget", check)


def value_increase(name: str, probe: str, phase: str, minimum: float, what: str = "blocks") -> Criterion:
    """max(value) - min(value) of a probe's successful samples during a phase is at least ``minimum``."""

    def check(tl: Timeline) -> Verdict:
        vals = tl.readings(probe, phase)
        if len(vals) < 2:
            return Verdict(
                name,
                Outcome.FAIL,
                f"fewer than 2 successful readings of {probe} during {phase}",
                {"readings": len(vals)},
            )
        grew = float(vals.max() - vals.min())
        outcome = Outcome.PASS if grew >= minimum else Outcome.FAIL
        ev = {"increase": grew, "from": float(vals.min()), "to": float(vals.max())}
        return Verdict(name, outcome, f"{grew:g} {what} during {phase}", ev)

    return Criterion(name, f"≥ {minimum:g} {what} during {phase}", check)


def alerts_fired(name: str, expected: list[str], after_event: str = "inject", within: float | None = None) -> Criterion:
    """One of the expected alerts started firing in Alertmanager after the fault (within ``within`` seconds)."""

    def check(tl: Timeline) -> Verdict:
        t0 = tl.last_event_ts(after_event)
        if t0 is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {after_event!r} event")
        fired = [e for e in tl.events if e["kind"] == "alert_firing" and e["ts"] >= t0 - 1]
        hits = [e for e in fired if e.get("alertname") in expected]
        ev = {"fired": sorted({e.get("alertname") for e in fired}), "expected_any_of": expected}
        if not hits:
            return Verdict(name, Outcome.FAIL, f"none of {', '.join(expected)} fired", ev)
        took = hits[0]["ts"] - t0
        ev["first"] = hits[0].get("alertname")
        ev["seconds_after_fault"] = round(took, 1)
        if within is not None and took > within:
            return Verdict(name, Outcome.FAIL, f"{hits[0]['alertname']} fired after {took:.0f} s", ev)
        return Verdict(name, Outcome.PASS, f"{hits[0]['alertname']} fired {took:.0f} s after the fault", ev)

    return Criterion(name, f"any of {', '.join(expected)}" + (f" within {within:g} s" if within else ""), check)


def paged(name: str, expected: list[str], within: float, after_event: str = "inject") -> Criterion:
    """The on-call pager received a page for one of the expected alerts within ``within`` seconds of the fault."""

    def check(tl: Timeline) -> Verdict:
        t0 = tl.last_event_ts(after_event)
        if t0 is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {after_event!r} event")
        pages = [e for e in tl.events if e["kind"] == "page" and e["ts"] >= t0 - 1 and e.get("alertname") in expected]
        if not pages:
            return Verdict(name, Outcome.FAIL, "no page for " + ", ".join(expected), {"pages": 0})
        took = pages[0]["ts"] - t0
        ev = {"alertname": pages[0].get("alertname"), "seconds_after_fault": round(took, 1), "pages": len(pages)}
        outcome = Outcome.PASS if took <= within else Outcome.FAIL
        return Verdict(name, outcome, f"paged for {pages[0].get('alertname')} {took:.0f} s after the fault", ev)

    return Criterion(name, f"page within {within:g} s", check)


def acknowledged(name: str, within: float | None, after_event: str = "inject") -> Criterion:
    """On-call acknowledged the page within ``within`` s; optional (inconclusive) when no ack source is configured."""

    def check(tl: Timeline) -> Verdict:
        if within is None:
            return Verdict(
                name,
                Outcome.INCONCLUSIVE,
                "no acknowledgement source configured: set ack_within to grade on-call response",
            )
        t0 = tl.last_event_ts(after_event)
        acks = [e for e in tl.events if e["kind"] == "page_ack" and t0 is not None and e["ts"] >= t0]
        if not acks:
            return Verdict(name, Outcome.FAIL, f"no acknowledgement within {within:g} s", {"acks": 0})
        took = acks[0]["ts"] - (t0 or acks[0]["ts"])
        outcome = Outcome.PASS if took <= within else Outcome.FAIL
        return Verdict(
            name, outcome, f"acknowledged by {acks[0].get('by')} after {took:.0f} s", {"ack_s": round(took, 1)}
        )

    return Criterion(
        name, f"ack within {within:g} s" if within else "ack (not configured)", check, required=within is not None
    )


def event_check(name: str, kind: str, threshold: str, judge) -> Criterion:
    """Grade from a machine event recorded in the timeline (e.g. a write-canary verification)."""

    def check(tl: Timeline) -> Verdict:
        e = tl.last_event(kind)
        if e is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {kind!r} recorded")
        return judge(e)

    return Criterion(name, threshold, check)


def value_above(name: str, probe: str, threshold: float, phase: str) -> Criterion:
    """Some successful reading of the probe during the phase exceeded the threshold (e.g. a metric saw the fault)."""

    def check(tl: Timeline) -> Verdict:
        vals = tl.readings(probe, phase)
        if vals.empty:
            return Verdict(name, Outcome.FAIL, f"no reading of {probe} during {phase}")
        peak = float(vals.max())
        outcome = Outcome.PASS if peak > threshold else Outcome.FAIL
        return Verdict(name, outcome, f"{probe} peaked at {peak:.3g} during {phase}", {"peak": round(peak, 4)})

    return Criterion(name, f"> {threshold:g}", check)


def value_below(name: str, probe: str, threshold: float, phase: str) -> Criterion:
    """The last successful reading of the probe in the phase is below the threshold (e.g. the volume was freed)."""

    def check(tl: Timeline) -> Verdict:
        vals = tl.readings(probe, phase)
        if vals.empty:
            return Verdict(name, Outcome.FAIL, f"no reading of {probe} during {phase}")
        last = float(vals.iloc[-1])
        outcome = Outcome.PASS if last < threshold else Outcome.FAIL
        return Verdict(name, outcome, f"{probe} ended {phase} at {last:.3g}", {"last": round(last, 4)})

    return Criterion(name, f"< {threshold:g}", check)


def min_availability(name: str, probe_names: list[str], minimum: float, phase: str) -> Criterion:
    """Every listed probe's availability during the phase is at least ``minimum``."""

    def check(tl: Timeline) -> Verdict:
        shares = {}
        for p in probe_names:
            df = tl.select(probe=p, phase=phase)
            if len(df):
                shares[p] = round(float(df["ok"].astype(bool).mean()), 4)
        if not shares:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no samples of {', '.join(probe_names)} during {phase}")
        worst = min(shares, key=shares.get)
        outcome = Outcome.PASS if shares[worst] >= minimum else Outcome.FAIL
        return Verdict(name, outcome, f"lowest: {worst} {shares[worst]:.1%} during {phase}", {"availability": shares})

    return Criterion(name, f"availability ≥ {minimum:.0%}", check)


def error_budget(name: str, probe_names: list[str], maximum: float, phase: str) -> Criterion:
    """The listed probes' failures together, as a share of all their checks during the phase, at most ``maximum``
    (the client requests of a degraded service)."""

    def check(tl: Timeline) -> Verdict:
        df = tl.frame
        df = df[df["probe"].isin(probe_names) & (df["phase"] == phase)]
        if df.empty:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no client request during {phase}")
        bad = int((~df["ok"].astype(bool)).sum())
        rate = bad / len(df)
        ev = {"requests": len(df), "errors": bad, "error_rate": round(rate, 4)}
        errors = df.loc[~df["ok"].astype(bool), "error"].dropna()
        if len(errors):
            ev["example_error"] = str(errors.iloc[0])[:200]
        outcome = Outcome.PASS if rate <= maximum else Outcome.FAIL
        return Verdict(name, outcome, f"{bad} of {len(df)} client requests failed during {phase}", ev)

    return Criterion(name, f"error rate ≤ {maximum:.0%}", check)
