"""Chaos: random pod termination. Hypothesis: the system handles pod failures gracefully (seed experiment 1): the
availability SLO holds, the killed pods serve again within the limit, consensus continues, alerts fire and on-call
is paged.

On the sandbox the fault kills the selected component processes and their health checks tell when they are back; on
Kubernetes a Chaos Mesh PodChaos (or a plain pod delete) kills pods and a watch of the selector's pods times their
replacements (``kubernetes``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.client import client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.chaos_mesh import ChaosMeshFault
from drillbit.faults.pod_kill import PodDelete, PodKill
from drillbit.model import Criterion
from drillbit.monitor import Monitor, monitor
from drillbit.params import ExperimentParams
from drillbit.runner import Experiment, Hook, Run
from drillbit.scenarios.chaos import kubernetes, query_monitors


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


BackCriteria = Callable[[dict], list[Criterion]]  # the killed targets → their "back within" criteria


def on_sandbox(env: ResolvedEnvironment, params: PodKillParams) -> tuple[PodKill, list[Monitor], BackCriteria]:
    """The sandbox's pod kill: the fault, a health monitor per component the selector matches, and per killed
    component a criterion that its health check passes again in time."""
    ep = sbx.endpoints()
    selector = env.selector(params.target)
    safety = env.spec.safety
    fault = PodKill(ep, selector, params.mode, params.value, safety.max_targets, safety.max_percent, params.seed)
    labels = {n: c["labels"] for n, c in ep["components"].items()}
    health = []
    for name in [n for n, lb in labels.items() if all(lb.get(k) == v for k, v in selector.items())]:
        url = ep["components"][name]["health"].removeprefix("http:")
        health.append(monitor(f"health:{name}", min(params.interval, 0.5), probes.component_health(url)))

    def back(killed: dict) -> list[Criterion]:
        # from "injected" (the process is dead), not "inject": health checks between the two still succeed
        return [
            criteria.recovered_within(
                f"{name} back within {params.back_within:g} s", f"health:{name}", "injected", params.back_within
            )
            for name in killed
        ]

    return fault, health, back


def on_kubernetes(
    env: ResolvedEnvironment, params: PodKillParams, run_id: str | None
) -> tuple[ChaosMeshFault | PodDelete, Hook, BackCriteria]:
    """Kubernetes: the fault, the hook writing the restart watch's report once the observation is over, and the
    criterion that the replacement pods were Ready in time (seen by watching the selector's pods)."""
    fault, watch = kubernetes.pod_kill(env, params, run_id)

    def collect(run: Run) -> None:
        kubernetes.record_restart(watch, run.timeline)

    def back(_killed: dict) -> list[Criterion]:
        name = f"{params.target} pods back within {params.back_within:g} s"
        return [kubernetes.back_within(name, params.back_within)]

    return fault, collect, back


def build(env: ResolvedEnvironment, params: PodKillParams, run_id: str | None = None) -> Experiment:
    """The pod-kill experiment; ``run_id`` labels the Kubernetes objects (default: a fresh id)."""
    health: list[Monitor] = []
    collect = None
    if env.platform == "kubernetes":
        fault, collect, back = on_kubernetes(env, params, run_id)
    else:
        fault, health, back = on_sandbox(env, params)
    slo = env.slo("SLO-NODE-001")
    iv = params.interval
    client = client_for(env, timeout=5.0)
    monitors = query_monitors(env, client, iv)
    surfaces = [m.name for m in monitors]

    def criteria_for(detail: dict) -> list[Criterion]:
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

    return Experiment(
        "chaos-pod-kill",
        env,
        params,
        fault,
        monitors + health,
        criteria_for,
        guarded_probes=["chain-query"],
        scenario=f"{params.target}/{params.mode}",
        collect=collect,
        close=[client.close],
    )
