"""A scenario's budgets as criteria over the load Timeline, the metrics of a run, and the breaking-point analysis.

Latency is the coordinated-omission-corrected latency (from the intended start; a failed operation counts with the
time it took, a timeout is slow). A phase's throughput is its successful operations (by intended start) per second of
the phase, so a short ramp is not penalised for the operations still in flight when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from drillbit import criteria, soundness
from drillbit.load import regression
from drillbit.load import results as res
from drillbit.load.scenarios import Scenario
from drillbit.model import Criterion, Outcome, Sample, Timeline, Verdict

MAX_LATE_FRACTION = 0.01  # more operations sent over 1 s late than this: the generator, not the target, is the limit
MIN_OFFERED = 0.99  # fraction of the scheduled operations that must have been recorded
DRIFT_SHARE = 0.2  # soak drift: the first and the last 20 % of the steady seconds
DRIFT_MIN_RATIO = 1.2


def load_criteria(scenario: Scenario, data: res.LoadData) -> list[Criterion]:
    probe = scenario.primary
    b = scenario.budgets
    crits: list[Criterion] = []
    if scenario.target == "deployments":
        crits.append(_renamed(criteria.error_rate("deployment success rate", probe, b.error_rate), b.error_rate))
        crits.append(latency_criterion("provisioning p95", probe, 95, scenario.p95_budget, data))
        crits.append(criteria.all_ok("deployments closed", f"{probe}:close", what="close"))
    else:
        crits.append(criteria.error_rate(f"{probe} error rate", probe, b.error_rate))
        crits.append(latency_criterion(f"{probe} p95 latency", probe, 95, scenario.p95_budget, data))
    if b.p99_s is not None:
        crits.append(latency_criterion(f"{probe} p99 latency", probe, 99, b.p99_s, data))
    if scenario.model == "open" and scenario.steps is None:
        for phase, *_ in scenario.profile():
            expected = scenario.expected_throughput(phase)
            if expected:
                crit = throughput_criterion(probe, phase, expected, b.throughput_tolerance, data)
                crits.append(_timed(crit, data, probe, phase))
    if scenario.drift_check:
        crits.append(_timed(drift_criterion(probe, data), data, probe, "steady"))
    crits.append(generator_criterion(scenario, data))  # grades the harness itself: not judged by soundness
    return crits


def _timed(crit: Criterion, data: res.LoadData, probe: str, phase: str | None = None) -> Criterion:
    """``crit`` judged by ``drillbit.soundness`` over ``phase`` (None: the whole run), with the generator's own send
    lateness of the same operations as the ``generator`` extra figure."""

    def extra(tl: Timeline) -> dict[str, Any]:
        bounds = tl.phase_bounds(phase) if phase else None
        start, end = bounds if bounds else (None, None)
        return {"generator": generator_figures(data, probe, start, end)}

    return soundness.timed(crit, phase, extra=extra)


def generator_figures(
    data: res.LoadData, probe: str, start: float | None = None, end: float | None = None
) -> dict[str, Any]:
    """How late the generator sent the operations intended in [start, end): p95 / max of sent − intended. When the
    target held every in-flight slot (``cap_hits``) some of that wait is the target's, not the generator's: the
    figure is shown but not offered as arrival lateness (the generator criterion says which it was)."""
    df = data.select(probe)
    if start is not None:
        df = df[df["ts"] >= start]
    if end is not None:
        df = df[df["ts"] < end]
    late = (df["sent"] - df["ts"]).to_numpy(float)
    late = late[~np.isnan(late)]
    if not len(late):
        return {"operations": 0, "measured": False}
    p95 = round(float(np.percentile(np.maximum(late, 0.0), 95)), 4)
    out: dict[str, Any] = {"operations": len(late), "send_lateness_p95_s": p95}
    out["send_lateness_max_s"] = round(float(late.max()), 4)
    cap_hits = sum(int(m.get("cap_hits", 0)) for m in data.metas)
    if cap_hits:
        out["cap_hits"] = cap_hits
        out["cap_wait_s"] = round(sum(float(m.get("cap_wait_s", 0.0)) for m in data.metas), 3)
    else:
        out["arrival_lateness_p95_s"] = p95
    return out


def _renamed(c: Criterion, budget: float) -> Criterion:
    c.threshold = f"success rate > {1 - budget:.2%}"
    return c


def latency_criterion(name: str, probe: str, pct: float, limit: float, data: res.LoadData) -> Criterion:
    """pXX corrected latency under ``limit``; evidence adds corrected and uncorrected HDR percentiles. Timed: judged
    over the whole run with the generator's send lateness (``_timed``)."""
    base = soundness.untimed(criteria.latency(name, probe, pct, limit))  # judged once, by ``_timed``

    def check(tl: Timeline) -> Verdict:
        verdict = base.check(tl)
        df = data.select(probe)
        if len(df):
            summary = res.latency_summary(df)
            for kind in ("corrected", "uncorrected"):
                for p in (50, 95, 99):
                    verdict.evidence[f"{kind}_p{p}_s"] = summary[kind].get(f"p{p}_s")
        return verdict

    return _timed(Criterion(name, base.threshold + " (from the intended start)", check), data, probe)


def throughput_criterion(probe: str, phase: str, expected: float, tolerance: float, data: res.LoadData) -> Criterion:
    """Successful operations of the phase per second ≥ the expected rate less the tolerance (and less one operation:
    a short phase schedules a whole number of operations)."""
    name = f"{probe} throughput ({phase})"

    def check(tl: Timeline) -> Verdict:
        bounds = tl.phase_bounds(phase)
        if bounds is None or bounds[1] is None:
            return Verdict(name, Outcome.INCONCLUSIVE, f"no {phase} phase in this run")
        start, end = bounds
        floor = max(expected * (1 - tolerance) - 1 / (end - start), 0.0)
        df = data.select(probe)
        in_phase = df[(df["ts"] >= start) & (df["ts"] < end)]
        got = float(in_phase["ok"].astype(bool).sum() / (end - start))
        ev = {
            "ok_per_s": round(got, 3),
            "target_per_s": round(expected, 3),
            "sent_per_s": round(res.offered(df, start, end), 3),
            "completed_per_s": round(res.throughput(df, start, end), 3),
            "seconds": round(end - start, 2),
            "floor_per_s": round(floor, 3),
        }
        outcome = Outcome.PASS if got >= floor else Outcome.FAIL
        reason = f"{got:.2f} ok/s during {phase} ({got / expected:.1%} of {expected:g}/s)"
        return Verdict(name, outcome, reason, ev)

    return Criterion(name, f"≥ {expected:g}/s − {tolerance:.0%} (− 1 operation)", check)


def generator_criterion(scenario: Scenario, data: res.LoadData) -> Criterion:
    """The generator offered the schedule: every operation recorded, and (nearly) none sent over 1 s late."""
    name = "load generator kept the schedule"
    probe = scenario.primary

    def check(_tl: Timeline) -> Verdict:
        df = data.select(probe)
        late = res.lateness(df)
        ev: dict[str, Any] = {"late_fraction": late["late_fraction"], "lateness_p99_s": late["p99_s"]}
        ev["max_inflight_seen"] = max((m.get("max_inflight_seen", 0) for m in data.metas), default=0)
        cap_hits = sum(m.get("cap_hits", 0) for m in data.metas)
        if cap_hits:
            ev["cap_hits"] = cap_hits
            ev["cap"] = max((m.get("max_inflight", 0) for m in data.metas), default=0)
        if data.aborted:
            ev["aborted"] = data.aborted[0]
            return Verdict(name, Outcome.FAIL, f"the watchdog stopped the schedule: {data.aborted[0]}", ev)
        if scenario.model == "open":
            scheduled = sum(_segment_count(s) for s in scenario.profile())
            ev.update(scheduled=round(scheduled), recorded=len(df))
            if len(df) < MIN_OFFERED * scheduled:
                return Verdict(name, Outcome.INCONCLUSIVE, f"recorded {len(df)} of {scheduled:.0f} scheduled", ev)
        if not len(df):
            return Verdict(name, Outcome.INCONCLUSIVE, "no operations recorded", ev)
        if late["late_fraction"] > MAX_LATE_FRACTION:
            reason = f"{late['late_fraction']:.1%} of operations were sent over {res.LATE_S:g} s late"
            if cap_hits:  # the target held every slot: its slowness, measured from the intended start
                reason += f": the target held all {ev['cap']} in-flight slots ({cap_hits} arrivals waited)"
                return Verdict(name, Outcome.PASS, reason + "; latencies include the wait", ev)
            return Verdict(name, Outcome.INCONCLUSIVE, reason + ": the generator was the bottleneck", ev)
        return Verdict(name, Outcome.PASS, f"{len(df)} operations, p99 send lateness {late['p99_s']:.3f} s", ev)

    return Criterion(name, f"all scheduled sent, < {MAX_LATE_FRACTION:.0%} over {res.LATE_S:g} s late", check)


def _segment_count(segment: list[Any]) -> float:
    _, seconds, r0, r1 = segment
    return float(seconds) * (float(r0) + float(r1)) / 2


def drift_criterion(probe: str, data: res.LoadData) -> Criterion:
    """Soak: the last 20 % of the steady seconds are not significantly slower than the first 20 %."""
    name = f"{probe} latency drift"

    def check(tl: Timeline) -> Verdict:
        p95 = steady_p95s(data, probe)
        k = int(len(p95) * DRIFT_SHARE)
        try:
            cmp = regression.compare(p95[:k], p95[-k:] if k else p95[:0], min_ratio=DRIFT_MIN_RATIO)
        except ValueError as exc:
            return Verdict(name, Outcome.INCONCLUSIVE, str(exc))
        outcome = Outcome.FAIL if cmp.slowdown else Outcome.PASS
        reason = f"late/early median p95 ratio {cmp.ratio:.2f} (p = {cmp.p_value:.3g})"
        return Verdict(name, outcome, reason, cmp.to_dict())

    return Criterion(name, regression.describe(min_ratio=DRIFT_MIN_RATIO), check)


def steady_p95s(data: res.LoadData, probe: str, phase: str = "steady") -> np.ndarray:
    bounds = next(((s, e) for n, s, e in data.phases if n == phase), None)
    if bounds is None:
        return np.array([])
    ps = res.per_second(data.select(probe), data.t0, data.end)
    sec = ps["second"] + data.t0
    return ps.loc[(sec >= bounds[0]) & (sec < bounds[1]), "p95"].dropna().to_numpy(float)


# ------------------------------------------------------------------------------------------------ breaking point


@dataclass
class StepResult:
    phase: str
    rate: float
    operations: int
    error_rate: float
    p95_s: float
    ok_per_s: float
    violations: list[str]


def step_results(scenario: Scenario, data: res.LoadData) -> list[StepResult]:
    """Each step graded against the scenario's error and p95 budgets (steps without samples are left out)."""
    df = data.select(scenario.primary)
    out = []
    for (phase, start, end), (_, _, rate, _) in zip(data.phases, scenario.profile(), strict=False):
        part = df[(df["ts"] >= start) & (df["ts"] < (end or np.inf))]
        if part.empty:
            continue
        err = 1 - float(part["ok"].astype(bool).mean())
        p95 = float(np.percentile(part["latency"].to_numpy(float), 95))
        violations = []
        if err >= scenario.budgets.error_rate:
            violations.append(f"error rate {err:.2%} ≥ {scenario.budgets.error_rate:.2%}")
        if p95 >= scenario.p95_budget:
            violations.append(f"p95 {p95:.2f} s ≥ {scenario.p95_budget:g} s")
        ok_rate = float(part["ok"].astype(bool).sum() / ((end or start) - start or 1))
        out.append(
            StepResult(phase, float(rate), len(part), round(err, 6), round(p95, 4), round(ok_rate, 3), violations)
        )
    return out


def breaking_point(steps: list[StepResult]) -> StepResult | None:
    return next((s for s in steps if s.violations), None)


def breaking_point_criterion(scenario: Scenario, data: res.LoadData, required_rate: float) -> Criterion:
    name = "breaking point"

    def check(_tl: Timeline) -> Verdict:
        steps = step_results(scenario, data)
        if not steps:
            return Verdict(name, Outcome.INCONCLUSIVE, "no step recorded any operation")
        table = [{"rate": s.rate, "error_rate": s.error_rate, "p95_s": s.p95_s, "ok_per_s": s.ok_per_s} for s in steps]
        first = breaking_point(steps)
        ev: dict[str, Any] = {"steps": table, "required_rate": required_rate}
        if first is None:
            top = steps[-1].rate
            ev["breaking_rate"] = None
            outcome = Outcome.PASS if top >= required_rate else Outcome.INCONCLUSIVE
            return Verdict(name, outcome, f"budgets held at every step up to {top:g}/s", ev)
        ev["breaking_rate"] = first.rate
        ev["last_good_rate"] = max((s.rate for s in steps if s.rate < first.rate and not s.violations), default=None)
        if not any(v.startswith("p95") for v in first.violations):
            ev["timed"] = False  # broken by errors alone: not about time, a saturated harness excuses nothing
        outcome = Outcome.PASS if first.rate > required_rate else Outcome.FAIL
        reason = f"budgets first violated at {first.rate:g}/s: " + "; ".join(first.violations)
        return Verdict(name, outcome, reason, ev)

    def window(_tl: Timeline) -> tuple[float | None, float | None]:
        """The step that broke the budgets (the whole run when none did)."""
        first = breaking_point(step_results(scenario, data))
        return next(((s, e) for n, s, e in data.phases if first and n == first.phase), (None, None))

    def extra(tl: Timeline) -> dict[str, Any]:
        return {"generator": generator_figures(data, scenario.primary, *window(tl))}

    crit = Criterion(name, f"budgets hold above {required_rate:g}/s", check)
    return soundness.timed(crit, window=window, extra=extra)


# ---------------------------------------------------------------------------------------------------- metrics


def metrics(scenario: Scenario, data: res.LoadData) -> dict[str, Any]:
    """What a run measured (stored in the run record; small: the time series go to the samples table)."""
    out: dict[str, Any] = {
        "scenario": {**scenario.model_dump(mode="json"), "key": scenario.key, "profile": scenario.profile()},
        "t0": data.t0,
        "processes": len(data.metas),
        "operations": {},
        "locust": res.locust_summary(data.locust_stats),
    }
    for probe in data.frame["probe"].cat.categories if len(data.frame) else []:
        df = data.select(probe)
        if df.empty:
            continue
        ok = df["ok"].astype(bool)
        row: dict[str, Any] = {"count": len(df), "errors": int((~ok).sum()), "error_rate": round(1 - ok.mean(), 6)}
        row.update(res.latency_summary(df))
        row["throughput"] = {
            phase: round(float(df.loc[(df["ts"] >= s) & (df["ts"] < e), "ok"].astype(bool).sum() / (e - s)), 3)
            for phase, s, e in data.phases
            if e and e > s
        }
        row["throughput"]["average"] = round(res.throughput(df, data.t0, data.end), 3)
        errors = df.loc[~ok, "error"].astype(str).value_counts().head(5)
        row["top_errors"] = {str(k): int(v) for k, v in errors.items()}
        out["operations"][str(probe)] = row
    out["generator"] = res.lateness(data.select(scenario.primary))
    out["aborted"] = data.aborted
    return out


def per_second_samples(data: res.LoadData, probes: list[str]) -> list[Sample]:
    """Per-second aggregates to store (probe ``per-second:<op>``): latency = corrected p95 of the operations intended
    in that second, value = ok completions in it, ok = no failure in it."""
    samples = []
    for probe in probes:
        ps = res.per_second(data.select(probe), data.t0, data.end)
        for row in ps.itertuples(index=False):
            if row.sent == 0 and row.ok == 0 and row.failed == 0:
                continue
            p95 = None if pd.isna(row.p95) else float(row.p95)
            err = f"{row.failed} failed" if row.failed else None
            samples.append(Sample(f"per-second:{probe}", data.t0 + row.second, not row.failed, p95, float(row.ok), err))
    return samples
