"""Was the measurement sound? The one rule that tells "the system was slow" from "the harness was slow".

The load generator, the probes, the sandbox's fault proxy and the target share one host. A timed criterion that
fails while the harness itself was the bottleneck blames the system for the harness's queueing, so every timed
criterion is wrapped by ``timed``: its verdict carries a ``measurement`` entry (the figures below, ``sound`` and
the reasons), and a FAIL graded on an unsound measurement becomes INCONCLUSIVE with the reason and the figures. A
PASS stays a PASS (the goal was met even with a noisy harness); a FAIL that is not about time (the system never
answered, nothing was rejected: the check marks it ``evidence["timed"] = False``, or lists ``unanswered``
checks) stays a FAIL.

The figures, each over the criterion's window, each only when it was measured:
- host CPU: the observer's ``host-cpu`` samples (busy share of all cores per sampling interval, from /proc/stat);
- the harness's own CPU: ``harness-cpu`` samples (the share of all cores the harness's process tree used in the same
  intervals: this process, its load-generator subprocesses and Locust workers, from /proc/<pid>/stat), so a
  saturated host's reason says how much of it was the harness ("host CPU ≥ 90 % busy ..., of which the harness
  61 %"); shown, not a reason by itself (a harness that is busy on an idle host measured soundly);
- the runner's own lateness: the observer's ``harness-lateness`` samples (planned vs actual wake of its sampler,
  a thread of the process that runs the probes);
- extra figures a criterion supplies: the load generator's arrival lateness, the client-side and server-side
  latency of the same requests.

Both the experiment flows (their Observer runs ``drillbit.observe.HostSampler``) and the load flows (the load runner
runs the same sampler beside the generator subprocess and ``drillbit.load.results`` adds its samples to the load
Timeline; the generator's own send lateness is the ``generator`` extra) are judged by this rule.

The thresholds are data (``Thresholds``); the rule is ``assess``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from drillbit.model import Criterion, Outcome, Timeline, Verdict

HOST_CPU = "host-cpu"  # probe: value = busy share of all cores (0..1) over one sampling interval
HARNESS_LATENESS = "harness-lateness"  # probe: value = seconds the observer's sampler woke after it was due
HARNESS_CPU = "harness-cpu"  # probe: value = busy share of all cores used by the harness's own process tree
HARNESS_PROBES = (HOST_CPU, HARNESS_LATENESS, HARNESS_CPU)

Window = Callable[[Timeline], tuple[float | None, float | None]]
Extra = Callable[[Timeline], dict[str, Any]]


@dataclass(frozen=True)
class Thresholds:
    """When the harness, not the system, was the bottleneck."""

    cpu_busy: float = 0.90  # a sampling interval counts as saturated at this busy share of all cores ...
    cpu_saturated_share: float = 0.25  # ... and the window was saturated when this share of its intervals were
    min_cpu_samples: int = 3  # fewer host-cpu samples in the window: not measured
    lateness_p95_s: float = 0.05  # the runner's own wake lateness (p95) above this: the runner was starved
    arrival_lateness_p95_s: float = 0.02  # the load generator's arrivals (p95) late by more than this
    gap_ratio: float = 3.0  # the client saw ≥ this × the server's own time ...
    gap_s: float = 0.05  # ... and ≥ this many seconds more, while the server alone was within the limit


DEFAULT = Thresholds()


def _window_of(tl: Timeline, phase: str | None) -> tuple[float | None, float | None]:
    if phase is None:
        return None, None
    bounds = tl.phase_bounds(phase)
    return bounds if bounds else (None, None)


def _in_window(tl: Timeline, probe: str, start: float | None, end: float | None) -> np.ndarray:
    df = tl.select(probe=probe)
    if df.empty:
        return np.array([], dtype=float)
    ts = df["ts"].to_numpy(dtype=float)
    keep = np.ones(len(df), dtype=bool)
    if start is not None:
        keep &= ts >= start
    if end is not None:
        keep &= ts < end
    vals = df["value"].to_numpy(dtype=float)[keep]
    return vals[~np.isnan(vals)]


def host_figures(tl: Timeline, start: float | None, end: float | None, th: Thresholds = DEFAULT) -> dict[str, Any]:
    """Host CPU and the runner's own lateness over [start, end) from the observer's samples."""
    out: dict[str, Any] = {}
    cpu = _in_window(tl, HOST_CPU, start, end)
    if len(cpu) >= th.min_cpu_samples:
        out["host_cpu"] = {
            "samples": len(cpu),
            "mean_busy": round(float(cpu.mean()), 3),
            "max_busy": round(float(cpu.max()), 3),
            "saturated_share": round(float((cpu >= th.cpu_busy).mean()), 3),
        }
    else:
        out["host_cpu"] = {"samples": len(cpu), "measured": False}
    own = _in_window(tl, HARNESS_CPU, start, end)
    if len(own):
        out["harness_cpu"] = {
            "samples": len(own),
            "mean_busy": round(float(own.mean()), 3),
            "max_busy": round(float(own.max()), 3),
        }
    else:
        out["harness_cpu"] = {"samples": 0, "measured": False}
    late = _in_window(tl, HARNESS_LATENESS, start, end)
    if len(late):
        out["runner_lateness"] = {
            "samples": len(late),
            "p95_s": round(float(np.percentile(late, 95)), 4),
            "max_s": round(float(late.max()), 4),
        }
    else:
        out["runner_lateness"] = {"samples": 0, "measured": False}
    return out


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def assess(figures: dict[str, Any], th: Thresholds = DEFAULT) -> list[str]:
    """The reasons the measurement was not sound (empty: sound, or nothing says otherwise)."""
    reasons = []
    cpu = figures.get("host_cpu") or {}
    share = _num(cpu.get("saturated_share"))
    if share is not None and share >= th.cpu_saturated_share:
        own = _num((figures.get("harness_cpu") or {}).get("mean_busy"))
        of_which = f", of which the harness {own:.0%}" if own is not None else ""
        reasons.append(
            f"host CPU saturated: ≥ {th.cpu_busy:.0%} busy in {share:.0%} of {cpu['samples']} intervals "
            f"(mean {cpu['mean_busy']:.0%}{of_which}; limit {th.cpu_saturated_share:.0%} of the window)"
        )
    late = figures.get("runner_lateness") or {}
    p95 = _num(late.get("p95_s"))
    if p95 is not None and p95 > th.lateness_p95_s:
        reasons.append(f"the runner woke late: p95 {p95 * 1000:.0f} ms (limit {th.lateness_p95_s * 1000:.0f} ms)")
    gen = figures.get("generator") or {}
    arrival = _num(gen.get("arrival_lateness_p95_s"))
    if arrival is not None and arrival > th.arrival_lateness_p95_s:
        reasons.append(
            f"the load generator sent late: arrival lateness p95 {arrival * 1000:.0f} ms "
            f"(limit {th.arrival_lateness_p95_s * 1000:.0f} ms)"
        )
    timing = figures.get("server_vs_client") or {}
    client, server, limit = (_num(timing.get(k)) for k in ("client_p95_s", "server_p95_s", "limit_s"))
    measured = client is not None and server is not None and limit is not None
    if measured and server < limit <= client and client >= th.gap_ratio * server and client - server >= th.gap_s:
        reasons.append(
            f"the server took p95 ≤ {server * 1000:.0f} ms itself, the client saw {client * 1000:.0f} ms: "
            f"the time was spent between them (generator, proxy, host), not in the system"
        )
    return reasons


def judge(verdict: Verdict, figures: dict[str, Any], th: Thresholds = DEFAULT) -> Verdict:
    """Attach ``measurement`` to the verdict's evidence; a timed FAIL on an unsound measurement is INCONCLUSIVE."""
    reasons = assess(figures, th)
    # not about time: the check says so, or checks never answered (``criteria.too_few``): silence is never excused
    timed = verdict.evidence.pop("timed", True) is not False and not verdict.evidence.get("unanswered")
    measurement = {**figures, "sound": not reasons, "reasons": reasons, "thresholds": asdict(th)}
    verdict.evidence["measurement"] = measurement
    if verdict.outcome == Outcome.FAIL and reasons and timed:
        measurement["would_have_been"] = "fail"
        verdict.outcome = Outcome.INCONCLUSIVE
        verdict.reason = f"the harness, not the system, may have been slow: {'; '.join(reasons)} — measured: " + (
            verdict.reason
        )
    return verdict


def timed(
    criterion: Criterion,
    phase: str | None = None,
    *,
    window: Window | None = None,
    extra: Extra | None = None,
    thresholds: Thresholds = DEFAULT,
) -> Criterion:
    """``criterion`` with its measurement judged: over ``window(tl)`` (default: ``phase``'s bounds, or the whole
    timeline), with the ``extra`` figures the criterion knows of (generator, server-side timing)."""
    inner = criterion.check

    def check(tl: Any) -> Verdict:
        verdict = inner(tl)
        if not isinstance(tl, Timeline):
            return verdict
        try:
            start, end = window(tl) if window else _window_of(tl, phase)
            figures = host_figures(tl, start, end, thresholds)
            figures["window"] = {"start": start, "end": end}
            if extra:
                figures |= extra(tl)
        except Exception as exc:  # the measurement of the measurement must never lose the verdict
            figures = {"error": f"{exc.__class__.__name__}: {exc}"}
        return judge(verdict, figures, thresholds)

    check.__wrapped__ = inner  # type: ignore[attr-defined]  # ``untimed`` gets it back
    return Criterion(criterion.name, criterion.threshold, check, criterion.required)


def untimed(criterion: Criterion) -> Criterion:
    """``criterion`` without the judgement ``timed`` added (itself when it was not timed): for a caller that adds
    evidence and judges the result once, with figures of its own (the load flows' generator lateness)."""
    inner = getattr(criterion.check, "__wrapped__", None)
    return Criterion(criterion.name, criterion.threshold, inner, criterion.required) if inner else criterion


def after_event(kind: str) -> Window:
    """A window from the last ``kind`` event to the end of the timeline."""

    def window(tl: Timeline) -> tuple[float | None, float | None]:
        return tl.last_event_ts(kind), None

    return window


# ------------------------------------------------------------------------------------------- histograms


def histogram_quantile(edges: list[float], counts: list[int], q: float) -> float | None:
    """The upper edge of the bucket holding quantile ``q`` (an upper bound: conservative for "the server was
    fast"); None for no counts. ``counts[i]`` counts values ≤ ``edges[i]`` and > ``edges[i-1]`` (not cumulative);
    the last edge may be ``inf``."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for edge, n in zip(edges, counts, strict=True):
        seen += n
        if seen >= rank:
            return float(edge)
    return float(edges[-1])
