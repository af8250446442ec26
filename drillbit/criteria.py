"""Reusable criteria over a Timeline. Each returns a Criterion; grading yields a Verdict with its evidence.

Too few samples to judge is "inconclusive" with the reason, never a pass. Inconclusive means "the harness could not
measure" and carries the figures (the window, the probe's samples elsewhere); it never covers "the system never
answered": a check with a deadline that never answers is a failed sample at its deadline (``drillbit.monitor``), and
a check that had not answered when the observation ended (the Observer's ``check_unanswered`` event) makes a
criterion over its window FAIL, with the check listed (``unanswered``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from drillbit import soundness
from drillbit.model import Criterion, Outcome, Timeline, Verdict


def _scope(probe: str, phase: str | None) -> str:
    return f"{probe}" + (f" during {phase}" if phase else "")


def _samples(tl: Timeline, probe: str, phase: str | None) -> pd.DataFrame:
    return tl.select(probe=probe, phase=phase)


def unanswered(tl: Timeline, probes: list[str], phase: str | None) -> list[dict]:
    """Checks of ``probes`` started in ``phase`` that had not answered when the observation ended (first 10)."""
    out = []
    for e in tl.events:
        if e.get("kind") != "check_unanswered" or e.get("probe") not in probes:
            continue
        if phase is None or tl.phase_of(float(e["started"])) == phase:
            out.append({"probe": e["probe"], "started": e["started"], "running_s": e.get("running_s")})
    return out[:10]


def too_few(
    name: str, tl: Timeline, probes: list[str], phase: str | None, n: int, limit: float | None = None
) -> Verdict:
    """The verdict of a window with too few samples: FAIL when a check started in it never answered (the system
    never answered, for at least ``limit`` seconds when given); else INCONCLUSIVE, the harness took no measurement,
    with the figures: the window's length and the probes' samples over the whole observation."""
    scope = _scope(", ".join(probes), phase)
    stuck = [u for u in unanswered(tl, probes, phase) if limit is None or (u["running_s"] or 0.0) >= limit]
    if stuck:
        longest = max(float(u["running_s"] or 0.0) for u in stuck)
        ev = {"samples": n, "unanswered": stuck}
        reason = f"{len(stuck)} check(s) of {scope} never answered (still running after {longest:.0f} s at the end)"
        return Verdict(name, Outcome.FAIL, reason, ev)
    ev: dict = {"samples": n, "samples_whole_run": int(tl.frame["probe"].isin(probes).sum()) if len(tl) else 0}
    window = ""
    bounds = tl.phase_bounds(phase) if phase else None
    if bounds is not None and bounds[1] is not None:
        ev["window_s"] = round(bounds[1] - bounds[0], 2)
        window = f" in its {ev['window_s']:g} s"
    return Verdict(name, Outcome.INCONCLUSIVE, f"only {n} samples of {scope}{window}: nothing was measured", ev)


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
            return too_few(name, tl, [probe], phase, n)
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
            return too_few(name, tl, [probe], phase, n)
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
    """pXX latency (seconds) of a probe under a limit; failed samples count unless ok_only (a timeout is slow).

    Timed: a FAIL while the harness was the bottleneck is inconclusive (``drillbit.soundness``)."""

    def check(tl: Timeline) -> Verdict:
        df = _samples(tl, probe, phase)
        if ok_only:
            df = df[df["ok"].astype(bool)]
        lat = df["latency"].dropna().to_numpy(dtype=float)
        if len(lat) < min_samples:
            return too_few(name, tl, [probe], phase, len(lat), limit=maximum)
        value = percentile(lat, pct)
        ev = {f"p{pct:g}_s": round(value, 4), "max_s": round(float(lat.max()), 4), "samples": len(lat)}
        failed = int((~df["ok"].astype(bool)).sum()) if not ok_only else 0
        if failed and failed >= (1.0 - pct / 100.0) * len(lat):
            ev["timed"] = False  # the percentile is made of checks that never succeeded: the system did not answer
        outcome = Outcome.PASS if value < maximum else Outcome.FAIL
        return Verdict(name, outcome, f"p{pct:g} {value:.3f} s over {len(lat)} samples of {_scope(probe, phase)}", ev)

    return soundness.timed(Criterion(name, f"p{pct:g} < {maximum:g} s", check), phase)


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
            return too_few(name, tl, names, phase, 0)
        bad = df[~df["ok"].astype(bool)]
        stuck = unanswered(tl, names, phase)  # a check that never answered failed too
        ev = {"samples": len(df), "failures": len(bad) + len(stuck)}
        if stuck:
            ev["unanswered"] = stuck
        if len(bad) or stuck:
            ev["errors"] = [str(e)[:200] for e in bad["error"].dropna().head(3)]
            n_bad, n_all = len(bad) + len(stuck), len(df) + len(stuck)
            return Verdict(name, Outcome.FAIL, f"{n_bad} of {n_all} {label} checks failed", ev)
        return Verdict(name, Outcome.PASS, f"all {len(df)} {label} checks succeeded", ev)

    return Criterion(name, "every check succeeds", check)


def recovered_within(name: str, probe: str, after_event: str, seconds: float) -> Criterion:
    """The first successful sample at or after the last ``after_event`` event came within ``seconds``.

    Timed: recovering late while the harness was the bottleneck is inconclusive; never recovering stays a FAIL."""

    def check(tl: Timeline) -> Verdict:
        t0 = tl.last_event_ts(after_event)
        if t0 is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {after_event!r} event recorded")
        df = _samples(tl, probe, None)
        after = df[(df["ts"] >= t0) & df["ok"].astype(bool)]
        if after.empty:
            last = float(df["ts"].max() - t0) if len(df) else 0.0
            ev = {"observed_for_s": round(last, 2), "timed": False}
            return Verdict(name, Outcome.FAIL, f"{probe} did not recover in {last:.1f} s after {after_event}", ev)
        took = float(after["ts"].iloc[0] - t0)
        outcome = Outcome.PASS if took <= seconds else Outcome.FAIL
        return Verdict(name, outcome, f"{probe} ok {took:.1f} s after {after_event}", {"recovery_s": round(took, 2)})

    criterion = Criterion(name, f"recovered within {seconds:g} s", check)
    return soundness.timed(criterion, window=soundness.after_event(after_event))


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
            return too_few(name, tl, probes, phase, 0)
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
            return _not_paged(name, tl, expected, t0)
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
            return too_few(name, tl, probe_names, phase, 0)
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
            return too_few(name, tl, probe_names, phase, 0)
        bad = int((~df["ok"].astype(bool)).sum())
        rate = bad / len(df)
        ev = {"requests": len(df), "errors": bad, "error_rate": round(rate, 4)}
        errors = df.loc[~df["ok"].astype(bool), "error"].dropna()
        if len(errors):
            ev["example_error"] = str(errors.iloc[0])[:200]
        outcome = Outcome.PASS if rate <= maximum else Outcome.FAIL
        return Verdict(name, outcome, f"{bad} of {len(df)} client requests failed during {phase}", ev)

    return Criterion(name, f"error rate ≤ {maximum:.0%}", check)


# ------------------------------------------------------------------------------- graded from the client's side (E2)


def _not_paged(name: str, tl: Timeline, expected: list[str], t0: float) -> Verdict:
    """No page reached the pager: say where the alerting path broke (an alert Alertmanager held that never reached
    the pager, or no alert at all). The pager is the end of the path: only a page there counts."""
    fired = [
        e for e in tl.events if e["kind"] == "alert_firing" and e["ts"] >= t0 - 1 and e.get("alertname") in expected
    ]
    ev: dict = {"pages": 0}
    if not fired:
        return Verdict(name, Outcome.FAIL, f"no page for {', '.join(expected)}, and none of them fired", ev)
    first = fired[0]
    at = datetime.fromtimestamp(first["ts"], UTC).strftime("%H:%M:%S")
    took = first["ts"] - t0
    ev.update(
        fired_in_alertmanager=sorted({str(e.get("alertname")) for e in fired}),
        first_fired=first.get("alertname"),
        fired_at=datetime.fromtimestamp(first["ts"], UTC).isoformat(timespec="seconds"),
        fired_s_after_fault=round(took, 1),
    )
    reason = (
        f"{first.get('alertname')} fired in Alertmanager at {at} UTC ({took:.0f} s after the fault) "
        "but never reached the pager"
    )
    return Verdict(name, Outcome.FAIL, reason, ev)


def serves_current_chain(
    name: str,
    node: str,
    probe: str,
    peers: list[str],
    seconds: float,
    after_event: str = "injected",
    max_lag: int = 2,
    health: str | None = None,
    stale: float = 5.0,
) -> Criterion:
    """A restarted node is back when a client reading it gets the current chain, not when it says it is healthy.

    ``probe`` reads the latest block ``node`` serves (value: its height); ``peers`` read the other nodes the same way.
    The node is caught up at its first answer at most ``max_lag`` blocks below the highest height the peers served
    in the ``stale`` seconds before it, provided it then advances (a later answer is higher); graded from the last
    ``after_event``. ``health`` (the node's own health check) is evidence only."""

    def check(tl: Timeline) -> Verdict:
        t0 = tl.last_event_ts(after_event)
        if t0 is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {after_event!r} event recorded")
        df = tl.frame
        if df.empty:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no samples of {probe}")
        good = df["ok"].astype(bool) & df["value"].notna()
        ev: dict = {"node": node}
        before = df[(df["probe"] == probe) & good & (df["ts"] < t0)]
        if len(before):
            ev["height_before_kill"] = int(before["value"].iloc[-1])
        if health:
            h = df[(df["probe"] == health) & df["ok"].astype(bool) & (df["ts"] >= t0)]
            ev["health_ok_after_s"] = round(float(h["ts"].iloc[0] - t0), 2) if len(h) else None
        own = df[(df["probe"] == probe) & (df["ts"] >= t0)]
        if own.empty:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no reading of {node}'s RPC after {after_event}", ev)
        observed = float(own["ts"].max() - t0)
        ev["observed_for_s"] = round(observed, 2)
        answered = own[good.loc[own.index]]
        if answered.empty:
            errors = own["error"].dropna()
            if len(errors):
                ev["last_error"] = str(errors.iloc[-1])[:200]
            return Verdict(name, Outcome.FAIL, f"{node}'s RPC served no block in {observed:.1f} s after the kill", ev)
        ref = df[df["probe"].isin(peers) & good]
        ref_ts, ref_h = ref["ts"].to_numpy(dtype=float), ref["value"].to_numpy(dtype=float)
        rows = []  # (ts, served height, chain height or None)
        own_ts, own_h = answered["ts"].to_numpy(dtype=float), answered["value"].to_numpy(dtype=float)
        for ts, height in zip(own_ts, own_h, strict=True):
            near = ref_h[(ref_ts <= ts) & (ref_ts >= ts - stale)]
            rows.append((ts, height, float(near.max()) if len(near) else None))
        ev["answered_after_s"] = round(rows[0][0] - t0, 2)
        judged = [r for r in rows if r[2] is not None]
        if not judged:
            reason = f"no reading of the other nodes ({', '.join(peers)}) within {stale:g} s of {node}'s answers"
            return Verdict(name, Outcome.INCONCLUSIVE, reason + ": the chain's height is unknown", ev)
        caught = None
        for ts, height, chain_h in judged:
            later = [r[1] for r in rows if r[0] > ts]
            if chain_h - height <= max_lag and (not later or max(later) > height):
                caught = (ts, height, chain_h, bool(later))
                break
        _, last_h, last_c = judged[-1]
        ev.update(served_height=int(last_h), chain_height=int(last_c), lag_blocks=int(last_c - last_h))
        served = [r[1] for r in rows]
        if caught is None:
            reason = (
                f"{node} answered {ev['answered_after_s']:.1f} s after the kill but never caught up: it served height "
                f"{int(last_h)} while the chain was at {int(last_c)} ({int(last_c - last_h)} blocks behind) after "
                f"{observed:.1f} s"
            )
            if min(served) == max(served):
                reason += f"; its height stayed at {int(last_h)}"
            return Verdict(name, Outcome.FAIL, reason, ev)
        took = caught[0] - t0
        ev.update(recovery_s=round(took, 2), caught_up_at_height=int(caught[1]), chain_height_then=int(caught[2]))
        ev["advancing"] = caught[3] or None  # None: the observation ended at the catch-up
        outcome = Outcome.PASS if took <= seconds else Outcome.FAIL
        reason = (
            f"{node} served the current chain {took:.1f} s after {after_event}: height {int(caught[1])}, chain at "
            f"{int(caught[2])}"
        )
        return Verdict(name, outcome, reason, ev)

    return Criterion(name, f"serves the chain (≤ {max_lag} blocks behind, advancing) within {seconds:g} s", check)
