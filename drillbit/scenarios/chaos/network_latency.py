"""Chaos: network latency on the provider's link to the chain. Hypothesis: the system tolerates increased network
latency (seed experiment 2: 100 ms, 10 ms jitter, 25 % correlation, 10 min): deployments are still provisioned and
bids placed within their limits, the other components do not fail with it, and the metrics show the latency.

On the sandbox the fault proxy delays the target's RPC and REST links to the node (``LINKS``); on Kubernetes a Chaos
Mesh NetworkChaos delays the target pods' traffic to the peer role (``kubernetes``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.client import client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.network import NetworkLatency
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.monitor import monitor
from drillbit.params import ExperimentParams
from drillbit.runner import Experiment
from drillbit.scenarios.chaos import kubernetes, query_monitors

LINKS = {"provider": ["provider-node-rpc", "provider-node-rest"], "api": ["api-node-rpc", "api-node-rest"]}
MEAN_EVAL = (
    "sum(rate(provider_bid_engine_duration_seconds_sum[{w}s]))"
    " / sum(rate(provider_bid_engine_duration_seconds_count[{w}s]))"
)


class NetworkLatencyParams(ExperimentParams):
    duration: float = Field(600.0, gt=0, le=86_400, description="Seconds of latency (seed: 10 min)")
    baseline: float = Field(30.0, ge=0, le=3600)
    target: str = Field("provider", description="Whose link to the chain is slowed: provider or api")
    latency_ms: float = Field(100.0, ge=0, le=60_000)
    jitter_ms: float = Field(10.0, ge=0, le=60_000)
    correlation: float = Field(25.0, ge=0, le=100, description="Percent, as Chaos Mesh's delay correlation")
    provisioning_within: float = Field(350.0, gt=0, description="Seconds (seed: 300 s + 50 s tolerance)")
    bid_within: float = Field(10.0, gt=0, description="Seconds for a bid to be placed (seed: < 10 s)")
    min_availability: float = Field(0.99, ge=0, le=1, description="Other components during the fault")
    metrics_window: float = Field(10.0, ge=2, le=600, description="Seconds of the PromQL rate window")
    probe_interval: float = Field(2.0, gt=0, le=600, description="Seconds between lifecycle probes")
    peer: str = Field("node", description="Kubernetes: role at the other end of the slowed link ('': all traffic)")
    mode: Literal["one", "all", "fixed", "fixed-percent"] = Field("one", description="Kubernetes: which target pods")
    value: float | None = Field(None, description="Kubernetes: count (fixed) or percent (fixed-percent)")


def latency_visible(name: str, probe: str, expected_increase_s: float) -> Criterion:
    """The median of ``probe``'s readings rose by at least ``expected_increase_s`` from the baseline to the
    injection phase (the latency shows in the metrics)."""

    def check(tl: Timeline) -> Verdict:
        b = tl.readings(probe, "baseline")
        i = tl.readings(probe, "injection")
        if b.empty or i.empty:
            looks = {ph: len(tl.select(probe=probe, phase=ph)) for ph in ("baseline", "injection")}
            ev = {"baseline_readings": len(b), "injection_readings": len(i), "queries": looks}
            if not b.empty and looks["injection"]:  # asked during the fault, the metrics gave no number: not seen
                errors = tl.select(probe=probe, phase="injection")["error"].dropna()
                if len(errors):
                    ev["example_error"] = str(errors.iloc[0])[:200]
                return Verdict(name, Outcome.FAIL, "the metrics gave no bid engine latency during the fault", ev)
            # no reference to compare with (no reading in the baseline) or no query made: the harness could not measure
            missing = "baseline" if b.empty else "injection phase"
            return Verdict(name, Outcome.INCONCLUSIVE, f"no metric reading in the {missing} to compare", ev)
        rise = float(i.median() - b.median())
        ev = {
            "baseline_s": round(float(b.median()), 4),
            "injection_s": round(float(i.median()), 4),
            "increase_s": round(rise, 4),
        }
        ok = rise >= expected_increase_s
        return Verdict(
            name,
            Outcome.PASS if ok else Outcome.FAIL,
            f"bid engine latency in Prometheus rose by {rise * 1000:.0f} ms",
            ev,
        )

    return Criterion(name, f"rise ≥ {expected_increase_s * 1000:.0f} ms", check)


def on_sandbox(params: NetworkLatencyParams) -> tuple[NetworkLatency, str]:
    """The sandbox's fault proxy slows the target's links to the node; returns the fault and the provider's URL."""
    if params.target not in LINKS:
        raise ValueError(f"target must be one of {', '.join(LINKS)}, got {params.target!r}")
    ep = sbx.endpoints()
    fault = NetworkLatency(
        ep["faultproxy"], LINKS[params.target], params.latency_ms, params.jitter_ms, params.correlation
    )
    return fault, ep["provider"]


def build(env: ResolvedEnvironment, params: NetworkLatencyParams, run_id: str | None = None) -> Experiment:
    """The network-latency experiment; ``run_id`` labels the Kubernetes objects (default: a fresh id)."""
    if env.platform == "kubernetes":
        fault = kubernetes.network_delay(env, params, run_id)  # NetworkChaos delay on the target's link to the peer
        provider = env.endpoints.provider
    else:
        fault, provider = on_sandbox(params)
    client = client_for(env, timeout=10.0)
    iv, piv = params.interval, params.probe_interval
    # a check that has not answered within its criterion's limit is a failed sample at that limit (drillbit.monitor):
    # a provisioning outage is a failure of both provisioning criteria, never an empty window
    monitors = [
        monitor(
            "deployment-provisioning",
            piv,
            probes.deployment_provisioning(client, timeout=600),
            deadline=params.provisioning_within,
        ),
        # a bid slower than twice the limit has failed already: give up then, so the fault window holds several samples
        monitor(
            "bid-placement",
            piv,
            probes.bid_placement(client, timeout=max(5.0, 2 * params.bid_within)),
            deadline=params.bid_within,
        ),
        *query_monitors(env, client, iv),
    ]
    if provider:
        monitors.append(monitor("provider-health", iv, probes.http_ok(f"{provider}/health")))
    others = [m.name for m in monitors if m.name in ("chain-query", "market-query", "provider-health")]
    prom = env.endpoints.prometheus
    if prom:
        query = MEAN_EVAL.format(w=int(params.metrics_window))
        monitors.append(monitor("bid-engine-latency-metric", iv, probes.prometheus_value(prom, query)))

    def criteria_for(_detail: dict) -> list[Criterion]:
        out = [
            criteria.latency(
                "provisioning within limit",
                "deployment-provisioning",
                100,
                params.provisioning_within,
                phase="injection",
            ),
            criteria.all_ok("provisioning succeeds", "deployment-provisioning", phase="injection"),
            criteria.latency("bid placement latency", "bid-placement", 100, params.bid_within, phase="injection"),
        ]
        out += [
            criteria.availability(f"no cascading failure: {p}", p, params.min_availability, phase="injection")
            for p in others
        ]
        if prom:
            rise = 0.5 * params.latency_ms / 1000
            out.append(latency_visible("metrics show the latency increase", "bid-engine-latency-metric", rise))
        return out

    return Experiment(
        "chaos-network-latency",
        env,
        params,
        fault,
        monitors,
        criteria_for,
        guarded_probes=[p for p in others if p != "provider-health"],
        scenario=f"{params.target}-link",
        close=[client.close],
    )
