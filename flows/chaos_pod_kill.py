"""Chaos: random pod termination. Hypothesis: the system handles pod failures gracefully (seed experiment 1)."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from pydantic import Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.faults.sandbox import PodKill
from drillbit.model import Timeline
from drillbit.synthetic import Monitor
from flows import chaos_k8s
from flows.experiment import Experiment, ExperimentParams, run_experiment
from tasks.recover import revert_on_crash
from tasks.targets import client_for, resolve_environment


class PodKillParams(ExperimentParams):
    duration: float = Field(60.0, gt=0, le=86_400, description="Seconds observed after the kill")
    target: str = Field("node", description="Role whose selector picks the pods (config: kubernetes.selectors)")
    mode: Literal["one", "all", "fixed", "fixed-percent"] = Field("one", description="Chaos Mesh selection mode")
    value: float | None = Field(None, description="Count (fixed) or percent (fixed-percent)")
    back_within: float = Field(30.0, gt=0, description="Seconds for a killed pod to serve again (seed: 30 s)")
    expected_alerts: list[str] = Field(default_factory=lambda: ["PodRestarted", "NodeDown"])
    page_within: float = Field(300.0, gt=0, description="Seconds for on-call to be paged")
    ack_within: float | None = Field(None, gt=0, description="Seconds for on-call to acknowledge (None: not graded)")
    budget_share: float = Field(0.02, gt=0, le=1, description="Most of the 28-day error budget the run may spend")
    seed: int | None = Field(None, description="Random seed for target selection")
    via: Literal["chaos-mesh", "pod-delete"] = Field(
        "chaos-mesh", description="Kubernetes only: a Chaos Mesh PodChaos, or delete the pod through the API"
    )


@flow(name="chaos-pod-kill", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def chaos_pod_kill(params: PodKillParams = PodKillParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    iv = params.interval
    health: list[Monitor] = []
    after_revert = None
    if env.platform == "kubernetes":
        # back within N s: the replacement pods' readiness, seen by watching the selector's pods
        fault, watch = chaos_k8s.pod_kill(env, params)

        def after_revert(tl: Timeline) -> None:
            chaos_k8s.record_restart(watch, tl)

        def back(_killed: dict) -> list:
            return [
                chaos_k8s.back_within(f"{params.target} pods back within {params.back_within:g} s", params.back_within)
            ]

    else:
        ep = sbx.endpoints()
        selector = env.selector(params.target)
        safety = env.spec.safety
        fault = PodKill(ep, selector, params.mode, params.value, safety.max_targets, safety.max_percent, params.seed)
        labels = {n: c["labels"] for n, c in ep["components"].items()}
        for name in [n for n, lb in labels.items() if all(lb.get(k) == v for k, v in selector.items())]:
            url = ep["components"][name]["health"].removeprefix("http:")
            check = probes.as_probe(f"health:{name}", probes.component_health(url))
            health.append(Monitor(f"health:{name}", min(iv, 0.5), check))

        def back(killed: dict) -> list:
            # from "injected" (the process is dead), not "inject": health checks between the two still succeed
            return [
                criteria.recovered_within(
                    f"{name} back within {params.back_within:g} s", f"health:{name}", "injected", params.back_within
                )
                for name in killed
            ]

    client = client_for(env, timeout=5.0)
    monitors = [Monitor("chain-query", iv, probes.as_probe("chain-query", probes.chain_query(client)))]
    if env.endpoints.api:
        monitors.append(Monitor("market-query", iv, probes.as_probe("market-query", probes.market_query(client))))
    surfaces = [m.name for m in monitors]
    monitors += health
    slo = env.slo("SLO-NODE-001")

    def grade_with(detail: dict) -> list:
        killed = detail.get("killed") or {t: None for t in detail.get("targets", [])}
        out = [criteria.budget_share("availability SLO held", surfaces, slo.target, iv, params.budget_share)]
        out += back(killed)
        out += [
            criteria.value_increase("consensus continues", "chain-query", "injection", max(1.0, params.duration / 10)),
            criteria.alerts_fired("alerts fired", params.expected_alerts),
            criteria.paged("on-call paged", params.expected_alerts, params.page_within),
            criteria.acknowledged("on-call acknowledged", params.ack_within),
        ]
        return out

    exp = Experiment(
        "chaos-pod-kill",
        env,
        params,
        fault,
        monitors,
        grade_with,
        guarded_probes=["chain-query"],
        after_revert=after_revert,
        scenario=f"{params.target}/{params.mode}",
    )
    try:
        return run_experiment(exp)
    finally:
        client.close()
