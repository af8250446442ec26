"""Chaos: random pod termination. Hypothesis: the system handles pod failures gracefully (seed experiment 1): the
availability SLO holds, the killed pods serve again within the limit, consensus continues, alerts fire and on-call
is paged.

On the sandbox the fault kills the selected component processes; a killed node is back when a client reading its RPC
gets the current chain (its latest block within a few blocks of the other nodes', and advancing), its own health
check being evidence only; other components are back when their health check passes. On Kubernetes a Chaos Mesh
PodChaos (or a plain pod delete) kills pods and a watch of the selector's pods times their replacements
(``kubernetes``). A kill that can take every live replica of a workload down (the only provider daemon, every
validator) is refused unless ``full_outage`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field

from drillbit import chain, criteria, probes
from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient, client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.chaos_mesh import ChaosMeshFault
from drillbit.faults.pod_kill import PodDelete, PodKill
from drillbit.model import Criterion
from drillbit.monitor import Monitor, monitor
from drillbit.params import ExperimentParams
from drillbit.runner import Experiment, Hook, Run
from drillbit.scenarios.chaos import kubernetes, provider_workload, query_monitors


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
    full_outage: bool = Field(
        False, description="Allow killing every live replica of a workload (e.g. the only provider daemon)"
    )
    via: Literal["chaos-mesh", "pod-delete"] = Field(
        "chaos-mesh", description="Kubernetes only: a Chaos Mesh PodChaos, or delete the pod through the API"
    )
    tenant_leases: int = Field(2, ge=0, le=20, description="Target provider: leases running before the kill")
    orders_in_flight: int = Field(2, ge=0, le=20, description="Target provider: orders opened just before the kill")
    resume_within: float = Field(
        30.0, gt=0, description="Target provider: seconds for its leases to run again and open orders to get bids"
    )


BackCriteria = Callable[[dict], list[Criterion]]  # the killed targets → their "back within" criteria
MAX_LAG = 2  # blocks a restarted node may be behind the others and still serve "the current chain"


def served_height(client: VirtEngineClient) -> probes.Check:
    """The height of the latest block the node serves (read through the chain reader, as a client does)."""

    def check() -> float:
        return float(chain.read_block(client).height)

    return check


def on_sandbox(
    env: ResolvedEnvironment, params: PodKillParams
) -> tuple[PodKill, list[Monitor], BackCriteria, list[Callable[[], None]]]:
    """The sandbox's pod kill: the fault, a health monitor per component the selector matches and a served-height
    monitor per node (the nodes the clients read), per killed component a criterion that it serves again in time
    (a node: the current chain, read from its RPC; anything else: its health check), and the closers."""
    ep = sbx.endpoints()
    selector = env.selector(params.target)
    safety = env.spec.safety
    fault = PodKill(
        ep,
        selector,
        params.mode,
        params.value,
        safety.max_targets,
        safety.max_percent,
        params.seed,
        full_outage=params.full_outage,
    )
    labels = {n: c["labels"] for n, c in ep["components"].items()}
    health = []
    for name in [n for n, lb in labels.items() if all(lb.get(k) == v for k, v in selector.items())]:
        url = ep["components"][name]["health"].removeprefix("http:")
        health.append(monitor(f"health:{name}", min(params.interval, 0.5), probes.component_health(url)))
    nodes = {n["name"]: VirtEngineClient(n["rpc"], n["rest"], timeout=2.0) for n in ep.get("nodes", [])}
    for name, node in nodes.items():
        health.append(monitor(f"serving:{name}", min(params.interval, 0.5), served_height(node)))

    def back(killed: dict) -> list[Criterion]:
        # from "injected" (the process is dead), not "inject": health checks between the two still succeed
        out = []
        for name in killed:
            label = f"{name} back within {params.back_within:g} s"
            if name in nodes:
                peers = [f"serving:{n}" for n in nodes if n != name]
                probe, health_probe = f"serving:{name}", f"health:{name}"
                out.append(
                    criteria.serves_current_chain(
                        label, name, probe, peers, params.back_within, max_lag=MAX_LAG, health=health_probe
                    )
                )
            else:
                out.append(criteria.recovered_within(label, f"health:{name}", "injected", params.back_within))
        return out

    return fault, health, back, [c.close for c in nodes.values()]


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
    closers: list[Callable[[], None]] = []
    if env.platform == "kubernetes":
        fault, collect, back = on_kubernetes(env, params, run_id)
    else:
        fault, health, back, closers = on_sandbox(env, params)
    slo = env.slo("SLO-NODE-001")
    iv = params.interval
    client = client_for(env, timeout=5.0)
    work = provider_workload.for_pod_kill(
        env, params.target, params.tenant_leases, params.orders_in_flight, params.resume_within, iv
    )
    if work is not None:  # the provider is killed: tenant work in flight across it, graded on being resumed
        fault = work.around(fault)
        health = [*health, *work.monitors()]
        collect = provider_workload.then(collect, work.collect)
        closers = [*closers, work.close]
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
        return out + (work.criteria() if work is not None else [])

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
        before_inject=work.start if work is not None else None,
        close=[client.close, *closers],
    )
