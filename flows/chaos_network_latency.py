"""Chaos: network latency on the provider's link to the chain. Hypothesis: the system tolerates increased network
latency (seed experiment 2: 100 ms, 10 ms jitter, 25 % correlation, 10 min)."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from pydantic import Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.faults.sandbox import NetworkLatency
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.synthetic import Monitor
from flows import chaos_k8s
from flows.experiment import Experiment, ExperimentParams, run_experiment
from tasks.recover import revert_on_crash
from tasks.targets import client_for, resolve_environment

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
    def check(tl: Timeline) -> Verdict:
        base = tl.select(probe=probe, phase="baseline")
        inj = tl.select(probe=probe, phase="injection")
        b = base.loc[base["ok"].astype(bool), "value"].dropna()
        i = inj.loc[inj["ok"].astype(bool), "value"].dropna()
        if b.empty or i.empty:
            return Verdict(
                name,
                Outcome.INCONCLUSIVE,
                "no metric readings in the baseline or the injection phase",
                {"baseline_readings": len(b), "injection_readings": len(i)},
            )
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


@flow(name="chaos-network-latency", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def chaos_network_latency(params: NetworkLatencyParams = NetworkLatencyParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    if env.platform == "kubernetes":
        fault = chaos_k8s.network_delay(env, params)  # NetworkChaos delay on the target's link to the peer
        provider = env.endpoints.provider
    else:
        if params.target not in LINKS:
            raise ValueError(f"target must be one of {', '.join(LINKS)}, got {params.target!r}")
        ep = sbx.endpoints()
        fault = NetworkLatency(
            ep["faultproxy"], LINKS[params.target], params.latency_ms, params.jitter_ms, params.correlation
        )
        provider = ep["provider"]
    client = client_for(env, timeout=10.0)
    iv, piv = params.interval, params.probe_interval
    monitors = [
        Monitor(
            "deployment-provisioning",
            piv,
            probes.as_probe("deployment-provisioning", probes.deployment_provisioning(client, timeout=600)),
        ),
        # a bid slower than twice the limit has failed already: give up then, so the fault window holds several samples
        Monitor(
            "bid-placement",
            piv,
            probes.as_probe("bid-placement", probes.bid_placement(client, timeout=max(5.0, 2 * params.bid_within))),
        ),
        Monitor("chain-query", iv, probes.as_probe("chain-query", probes.chain_query(client))),
    ]
    if env.endpoints.api:
        monitors.append(Monitor("market-query", iv, probes.as_probe("market-query", probes.market_query(client))))
    if provider:
        health = probes.as_probe("provider-health", probes.http_ok(f"{provider}/health"))
        monitors.append(Monitor("provider-health", iv, health))
    others = [m.name for m in monitors if m.name in ("chain-query", "market-query", "provider-health")]
    if env.endpoints.prometheus:
        query = MEAN_EVAL.format(w=int(params.metrics_window))
        monitors.append(
            Monitor(
                "bid-engine-latency-metric",
                iv,
                probes.as_probe("bid-engine-latency-metric", probes.prometheus_value(env.endpoints.prometheus, query)),
            )
        )

    def grade_with(_detail: dict) -> list:
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
        if env.endpoints.prometheus:
            out.append(
                latency_visible(
                    "metrics show the latency increase", "bid-engine-latency-metric", 0.5 * params.latency_ms / 1000
                )
            )
        return out

    exp = Experiment(
        "chaos-network-latency",
        env,
        params,
        fault,
        monitors,
        grade_with,
        guarded_probes=[p for p in others if p != "provider-health"],
        scenario=f"{params.target}-link",
    )
    try:
        return run_experiment(exp)
    finally:
        client.close()
