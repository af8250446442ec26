"""Failure mode: cascading failure. Hypothesis: overloading the provider's bid engine trips its circuit breaker,
rejected requests fail fast, the API and the nodes stay healthy, and the breaker closes once the overload ends.

The overload is an open-loop load generator (``drillbit.faults.overload.Overload``) against the engine's evaluate
endpoint; the breaker is read from the provider's ``/api/v1/status`` and from Prometheus."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd
from pydantic import Field

from drillbit import criteria, probes, runner, soundness
from drillbit import sandbox as sbx
from drillbit.client import ClientError, VirtEngineClient, client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.overload import Overload, read_results
from drillbit.model import Criterion, Outcome, Sample, Timeline, Verdict
from drillbit.monitor import monitor
from drillbit.params import ExperimentParams
from drillbit.paths import drillbit_home
from drillbit.runner import Experiment, Run

CIRCUIT = {"closed": 0.0, "open": 1.0, "half-open": 2.0, "disabled": -1.0}
EVALUATE = "/api/v1/bid-engine/evaluate"
BREAKER_METRIC = 'provider_bid_engine_circuit_state{job="provider"}'
ENGINE_DURATION = "provider_bid_engine_duration_seconds"  # the engine's own time per evaluation (server side)
ENGINE_REQUESTS = "provider_bid_engine_requests_total"  # by outcome
OWNER = "drillbit-overload"
REJECTED = 503


class CascadingFailureParams(ExperimentParams):
    duration: float = Field(60.0, gt=0, le=3600, description="Seconds of overload")
    baseline: float = Field(10.0, ge=0, le=3600)
    recovery: float = Field(30.0, ge=0, le=3600, description="Seconds observed after the overload")
    rate: float = Field(1000.0, gt=0, le=50_000, description="Requests per second offered (seed: 1000)")
    max_requests: int | None = Field(None, ge=1, description="Most requests sent (default: rate × duration)")
    connections: int = Field(256, ge=1, le=4096, description="Most connections the generator opens")
    request_timeout: float = Field(5.0, gt=0, le=60, description="Seconds a generated request may take")
    target: Literal["service", "direct"] = Field(
        "service", description="service: through the provider's Service (the fault proxy); direct: the daemon"
    )
    fail_fast_p95: float = Field(0.1, gt=0, description="p95 latency (s) of rejected requests once the breaker opened")
    settle: float = Field(2.0, ge=0, description="Seconds after the first rejection before fail-fast is graded")
    min_availability: float = Field(0.95, ge=0, le=1, description="API and nodes during the overload")
    close_within: float = Field(30.0, gt=0, description="Seconds after the overload for the breaker to close")
    min_offered: float = Field(0.9, gt=0, le=1, description="Share of the rate the generator must really offer")


# ------------------------------------------------------------------------------------------------ probes


def breaker_state(status_url: str, timeout: float = 3.0) -> probes.Check:
    """The provider's breaker from ``/api/v1/status``; value 0 closed, 1 open, 2 half-open, -1 disabled."""
    http = httpx.Client(timeout=timeout)

    def check() -> float:
        r = http.get(status_url)
        if r.status_code != 200:
            raise probes.CheckFailed(f"HTTP {r.status_code}")
        return CIRCUIT.get(r.json()["bid_engine"]["circuit"], float("nan"))

    return check


def bid_evaluation(url: str, order_id: dict[str, Any], timeout: float = 5.0) -> probes.Check:
    """One evaluation as a user sends it: ok when the engine answered (200/404), value = HTTP status."""
    http = httpx.Client(timeout=timeout)

    def check() -> float:
        r = http.post(url, json={"order_id": order_id})
        if r.status_code not in (200, 404):
            raise probes.CheckFailed(f"HTTP {r.status_code}: {r.text[:80]}")
        return float(r.status_code)

    return check


def find_or_create_order(client: VirtEngineClient) -> tuple[dict[str, Any], int | None]:
    """An order id the bid engine can price (any existing order); creates a deployment when there is none.

    Returns (order id, dseq of the deployment created here or None).
    """
    orders = client.orders()
    if orders:
        return dict(orders[0]["id"]), None
    dseq = probes.next_dseq()
    client.create_deployment(OWNER, dseq)
    return {"owner": OWNER, "dseq": str(dseq), "gseq": 1, "oseq": 1}, dseq


# ------------------------------------------------------------------------------------------------ analysis


def _p(values: np.ndarray, pct: float) -> float | None:
    return round(float(np.percentile(values, pct)), 4) if len(values) else None


def overload_summary(df: pd.DataFrame, meta: dict[str, Any], rate: float, settle: float) -> dict[str, Any]:
    """What the generator saw: counts by status, offered rate, latency of rejected (503) and served requests."""
    status, lat = df["status"].to_numpy(), df["latency"].to_numpy(dtype=float)
    rejected = status == REJECTED
    summary: dict[str, Any] = {
        "requests": len(df),
        "rate": rate,
        "offered_rate": meta.get("offered_rate"),
        "generator_lateness_s": meta.get("max_lateness_s"),
        "arrival_lateness": meta.get("arrival_lateness"),
        "send_wait": meta.get("send_wait"),
        "statuses": {str(k): int(v) for k, v in zip(*np.unique(status, return_counts=True), strict=True)},
        "rejected": int(rejected.sum()),
        "rejected_p95_s": _p(lat[rejected], 95),
        "served_p95_s": _p(lat[(status == 200) | (status == 404)], 95),
        "first_rejection_at": None,
        "rejected_after_open_p95_s": None,
        "rejected_after_open": 0,
    }
    if rejected.any():
        done = df["ts"].to_numpy(dtype=float) + lat
        first = float(done[rejected].min())  # the first moment a client was refused: the breaker was open
        steady = rejected & (df["ts"].to_numpy(dtype=float) >= first + settle)
        summary |= {"first_rejection_at": first, "rejected_after_open": int(steady.sum())}
        summary["rejected_after_open_p95_s"] = _p(lat[steady], 95)
    return summary


def per_second(df: pd.DataFrame) -> list[Sample]:
    """One sample per second of generated load (for the timeline plot): p95 latency, value = requests."""
    if df.empty:
        return []
    sec = np.floor(df["ts"].to_numpy(dtype=float))
    out = []
    for s in np.unique(sec):
        part = df[sec == s]
        bad = int((part["status"] <= 0).sum())
        p95 = float(np.percentile(part["latency"], 95))
        out.append(Sample("overload", float(s), bad == 0, p95, float(len(part)), None if not bad else f"{bad} errors"))
    return out


def prometheus_breaker(prometheus: str | None, start: float, end: float) -> dict[str, Any]:
    """The breaker state Prometheus recorded between start and end (1 s steps)."""
    if not prometheus:
        return {"available": False, "reason": "no Prometheus endpoint"}
    params = {"query": BREAKER_METRIC, "start": start, "end": end, "step": 1}
    try:
        body = httpx.get(f"{prometheus}/api/v1/query_range", params=params, timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"available": False, "reason": f"{exc.__class__.__name__}: {exc}"}
    values = [float(v) for series in body.get("data", {}).get("result", []) for _, v in series["values"]]
    return {
        "available": True,
        "points": len(values),
        "open_points": sum(1 for v in values if v == 1),
        "values_seen": sorted(set(values)),
    }


def engine_snapshot(metrics_url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The bid engine's own counters from the daemon's /metrics: duration histogram (cumulative, by ``le``) and
    requests by outcome; None when it does not answer."""
    try:
        r = httpx.get(metrics_url, timeout=timeout)
    except httpx.HTTPError:
        return None
    return parse_engine_metrics(r.text) if r.status_code == 200 else None


def parse_engine_metrics(text: str) -> dict[str, Any] | None:
    """The engine's duration histogram (cumulative, by ``le``) and requests by outcome from Prometheus text."""
    buckets: dict[float, float] = {}
    outcomes: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{ENGINE_DURATION}_bucket{{"):
            labels, _, value = line.rpartition(" ")
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(value)
        elif line.startswith(f"{ENGINE_REQUESTS}{{"):
            labels, _, value = line.rpartition(" ")
            if 'outcome="' in labels:
                outcomes[labels.split('outcome="', 1)[1].split('"', 1)[0]] = float(value)
    return {"buckets": buckets, "outcomes": outcomes} if buckets else None


def engine_timing(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """What the engine itself measured between two snapshots: evaluations, outcomes and its p95 (the upper edge of
    its histogram bucket: an upper bound, so "the server was fast" is never overstated)."""
    if not before or not after:
        return {"available": False, "reason": "the provider's /metrics did not answer"}
    edges = sorted(after["buckets"])
    cumulative = [after["buckets"][e] - before["buckets"].get(e, 0.0) for e in edges]
    counts = [round(c - p) for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)]
    outcomes = {k: int(v - before["outcomes"].get(k, 0.0)) for k, v in after["outcomes"].items()}
    return {
        "available": True,
        "evaluations": int(sum(counts)),
        "outcomes": {k: v for k, v in sorted(outcomes.items()) if v},
        "server_p95_s": soundness.histogram_quantile(edges, counts, 0.95),
        "server_p50_s": soundness.histogram_quantile(edges, counts, 0.5),
    }


def fail_fast_figures(limit: float) -> soundness.Extra:
    """The figures that tell the harness's share of the rejections' latency: the generator's arrival lateness and
    waits, and the client-side p95 of rejections against the engine's own p95 over the same overload."""

    def extra(tl: Timeline) -> dict[str, Any]:
        e = tl.last_event("overload_result") or {}
        arrival, wait = e.get("arrival_lateness") or {}, e.get("send_wait") or {}
        out: dict[str, Any] = {
            "generator": {
                "arrival_lateness_p95_s": arrival.get("p95_s"),
                "arrival_lateness_max_s": e.get("generator_lateness_s"),
                "arrival_late_share": arrival.get("share_over_10ms"),
                "send_wait_p95_s": wait.get("p95_s"),
                "send_wait_late_share": wait.get("share_over_10ms"),
            }
        }
        server = tl.last_event("engine_timing") or {"available": False}
        client = e.get("rejected_after_open_p95_s") or e.get("rejected_p95_s")
        out["server_vs_client"] = {
            "client_p95_s": client,
            "server_p95_s": server.get("server_p95_s"),
            "server_evaluations": server.get("evaluations"),
            "server_outcomes": server.get("outcomes"),
            "limit_s": limit,
        }
        if not server.get("available"):
            out["server_vs_client"]["server_reason"] = server.get("reason")
        return out

    return extra


# ------------------------------------------------------------------------------------------------ criteria


def load_offered(name: str, min_share: float) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        e = tl.last_event("overload_result")
        if e is None or not e["requests"]:
            return Verdict(name, Outcome.INCONCLUSIVE, "the load generator recorded nothing")
        offered, rate = e.get("offered_rate") or 0.0, e["rate"]
        ev = {"offered_rate": offered, "rate": rate, "requests": e["requests"], "lateness_s": e["generator_lateness_s"]}
        if offered < min_share * rate:
            why = f"the generator offered only {offered:.0f}/s of {rate:g}/s: the test did not apply its load"
            return Verdict(name, Outcome.INCONCLUSIVE, why, ev)
        return Verdict(name, Outcome.PASS, f"{offered:.0f} requests/s offered ({e['requests']} requests)", ev)

    return Criterion(name, f"≥ {min_share:.0%} of the target rate", check)


def breaker_opens(name: str, min_offered: float = 0.0) -> Criterion:
    """Open in the provider's own status AND in Prometheus (provider_bid_engine_circuit_state == 1).

    A breaker that never opened while the generator offered less than ``min_offered`` of its rate is inconclusive
    (the harness did not apply the overload), unless the provider reported it disabled: that needs no load."""

    def check(tl: Timeline) -> Verdict:
        states = tl.readings("breaker", "injection")
        status_open = bool((states == CIRCUIT["open"]).any())
        prom = tl.last_event("prometheus_breaker") or {"available": False}
        prom_open = bool(prom.get("open_points"))
        names = {v: k for k, v in CIRCUIT.items()}
        ev = {
            "status_readings": len(states),
            "status_open_readings": int((states == CIRCUIT["open"]).sum()),
            "status_states": sorted({names.get(float(v), str(v)) for v in states}),
            "prometheus_open_points": prom.get("open_points"),
            "prometheus_values": prom.get("values_seen"),
            "alerts": sorted({a.get("alertname") for a in tl.events if a["kind"] == "alert_firing"} - {None}),
        }
        if states.empty:  # the system never answered: a failure, not a missing measurement
            ev["status_checks"] = len(tl.select(probe="breaker", phase="injection"))
            return Verdict(name, Outcome.FAIL, "the provider's status never answered during the overload", ev)
        if status_open and prom_open:
            return Verdict(name, Outcome.PASS, "open in /api/v1/status and in Prometheus", ev)
        if status_open and not prom.get("available"):
            return Verdict(name, Outcome.INCONCLUSIVE, f"open in /api/v1/status; Prometheus: {prom.get('reason')}", ev)
        where = [w for w, ok in (("/api/v1/status", status_open), ("Prometheus", prom_open)) if not ok]
        why = f"the breaker never showed open in {' nor '.join(where)}"
        load = tl.last_event("overload_result") or {}
        offered, rate = load.get("offered_rate") or 0.0, load.get("rate") or 0.0
        if "disabled" not in ev["status_states"] and offered < min_offered * rate:
            ev["offered_rate"], ev["rate"] = offered, rate
            why += f", but the generator offered only {offered:.0f}/s of {rate:g}/s: the overload was not applied"
            return Verdict(name, Outcome.INCONCLUSIVE, why, ev)
        return Verdict(name, Outcome.FAIL, why, ev)

    return Criterion(name, "circuit open (status and provider_bid_engine_circuit_state == 1)", check)


def fails_fast(name: str, limit: float, settle: float) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        e = tl.last_event("overload_result")
        if e is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "no load generator results")
        ev = {k: e[k] for k in ("rejected", "rejected_p95_s", "rejected_after_open", "rejected_after_open_p95_s")}
        ev["served_p95_s"] = e["served_p95_s"]
        if not e["rejected"]:
            ev["timed"] = False  # not about time: nothing was refused at all
            return Verdict(name, Outcome.FAIL, "no request was rejected: the engine never shed load", ev)
        p95 = e["rejected_after_open_p95_s"]
        scope = f"{e['rejected_after_open']} rejections sent ≥ {settle:g} s after the first"
        if p95 is None:
            p95, scope = e["rejected_p95_s"], f"all {e['rejected']} rejections"
        outcome = Outcome.PASS if p95 < limit else Outcome.FAIL
        why = f"p95 {p95 * 1000:.0f} ms over {scope} (all rejections: p95 {e['rejected_p95_s'] * 1000:.0f} ms)"
        return Verdict(name, outcome, why, ev)

    criterion = Criterion(name, f"p95 of 503s < {limit * 1000:g} ms", check)
    return soundness.timed(criterion, "injection", extra=fail_fast_figures(limit))


def breaker_closes(name: str, within: float) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        revert = tl.last_event("revert")
        if revert is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "no revert event")
        df = tl.select(probe="breaker")
        after = df[(df["ts"] >= revert["ts"]) & df["ok"].astype(bool)]
        closed = after[after["value"] == CIRCUIT["closed"]]
        if after.empty:
            why = "the provider's status did not answer after the overload"
            return Verdict(name, Outcome.FAIL, why, {"timed": False})
        if closed.empty:
            last = after["value"].iloc[-1]
            state = {v: k for k, v in CIRCUIT.items()}.get(last, "unknown")
            span = float(after["ts"].max() - revert["ts"])
            ev = {"last": state, "timed": False}
            return Verdict(name, Outcome.FAIL, f"still {state} {span:.0f} s after the overload", ev)
        took = float(closed["ts"].iloc[0] - revert["ts"])
        outcome = Outcome.PASS if took <= within else Outcome.FAIL
        return Verdict(name, outcome, f"closed {took:.1f} s after the overload", {"closed_after_s": round(took, 2)})

    criterion = Criterion(name, f"closed within {within:g} s", check)
    return soundness.timed(criterion, window=soundness.after_event("revert"))


# ------------------------------------------------------------------------------------------------ the experiment


def build(env: ResolvedEnvironment, params: CascadingFailureParams, ep: dict[str, Any] | None = None) -> Experiment:
    """The cascading-failure experiment on the sandbox (``ep``: its endpoints.json, default: the running sandbox's).

    Unless dry running, it prices an existing order, or a deployment created for it (closed after the run)."""
    if env.platform != "sandbox":
        raise NotImplementedError("cascading failure runs against the sandbox (the generator must reach loopback)")
    ep = ep or sbx.endpoints()
    daemon = ep["components"]["provider"]["endpoint"]
    provider = env.endpoints.provider if params.target == "service" else daemon
    client = client_for(env, timeout=10.0)
    created: list[int] = []

    def close() -> None:
        for dseq in created:
            with contextlib.suppress(ClientError):
                client.close_deployment(OWNER, dseq)
        client.close()

    def make() -> Experiment:
        if params.dry_run:
            order = {"owner": OWNER, "dseq": "0", "gseq": 1, "oseq": 1}
        else:
            order, dseq = find_or_create_order(client)
            if dseq is not None:
                created.append(dseq)
        return _experiment(env, params, ep, client, provider, daemon, order)

    return runner.closing(make, close)


def _experiment(
    env: ResolvedEnvironment,
    params: CascadingFailureParams,
    ep: dict[str, Any],
    client: VirtEngineClient,
    provider: str,
    daemon: str,
    order: dict[str, Any],
) -> Experiment:
    stamp = f"load-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    out_dir = drillbit_home() / "artifacts" / "cascading-failure" / stamp
    fault = Overload(
        f"{provider}{EVALUATE}",
        params.rate,
        params.duration,
        out_dir,
        body={"order_id": order},
        max_requests=params.max_requests,
        connections=params.connections,
        timeout=params.request_timeout,
        label="provider bid engine",
    )
    iv = params.interval
    monitors = [
        monitor("breaker", min(iv, 0.5), breaker_state(f"{daemon}/api/v1/status")),
        monitor("bid-evaluate", iv, bid_evaluation(f"{provider}{EVALUATE}", order)),
        monitor("api-read", iv, probes.api_read(client)),
        monitor("chain-query", iv, probes.chain_query(client)),
    ]
    nodes = [f"health:{n['name']}" for n in ep["nodes"]]
    for n, name in zip(ep["nodes"], nodes, strict=True):
        monitors.append(monitor(name, iv, probes.component_health(f"{n['rpc']}/health")))

    engine: dict[str, Any] = {}

    def snapshot(_run: Run) -> None:
        """After the baseline, before the overload: the engine's own counters, to compare with what clients saw."""
        engine["before"] = engine_snapshot(f"{daemon}/metrics")

    def analyse(run: Run) -> None:
        """The observation is over: the generator's results, per second, and the breaker as Prometheus saw it."""
        tl = run.timeline
        timing = engine_timing(engine.get("before"), engine_snapshot(f"{daemon}/metrics"))
        tl.event("engine_timing", f"engine p95 ≤ {timing.get('server_p95_s')} s", **timing)
        df, meta = read_results(fault.results)
        summary = overload_summary(df, meta, params.rate, params.settle)
        tl.event("overload_result", f"{summary['requests']} requests, {summary['rejected']} rejected", **summary)
        tl.extend(per_second(df))
        inject, revert = tl.last_event("inject"), tl.last_event("revert")
        if inject and revert:
            prom = prometheus_breaker(env.endpoints.prometheus, inject["ts"], revert["ts"] + 2)
            tl.event("prometheus_breaker", f"{prom.get('open_points', 0)} points open", **prom)

    def grade_with(_detail: dict) -> list[Criterion]:
        return [
            load_offered("load offered", params.min_offered),
            breaker_opens("breaker opens", params.min_offered),
            fails_fast("rejected requests fail fast", params.fail_fast_p95, params.settle),
            criteria.min_availability("API stays healthy", ["api-read"], params.min_availability, "injection"),
            criteria.min_availability(
                "nodes stay healthy", ["chain-query", *nodes], params.min_availability, "injection"
            ),
            breaker_closes("breaker closes after the overload", params.close_within),
        ]

    return Experiment(
        "cascading-failure",
        env,
        params,
        fault,
        monitors,
        grade_with,
        guarded_probes=["api-read", "chain-query"],
        scenario=f"{params.rate:g}/s {params.target}",
        before_inject=snapshot,
        collect=analyse,
    )
