"""The Kubernetes half of the four chaos scenarios, in one place: from a resolved environment and a scenario's
parameters to the Kubernetes fault (a Chaos Mesh object, a pod delete, or iptables by exec in the database pod), plus
the pod restart watch and the verdicts that are specific to Kubernetes. Each scenario calls one function here when
``env.platform == "kubernetes"`` and shares its monitors, criteria and the experiment runner with the sandbox.

What comes from the configuration (``environments.NAME.kubernetes``): the target namespace, the chaos namespace, the
kubeconfig context and the label selector of each role (``selectors.node`` / ``provider`` / ``database`` ...). A role
without a selector, a selector matching no pod or more pods than ``safety.max_targets`` / ``max_percent`` allow, or a
pod kill (or database port block) that can take every Ready replica of a workload down without ``full_outage``, is a
clear error when the fault is planned, before anything is created. Production environments need ``safety.opt_in``
(checked when the environment is resolved with ``destructive=True``).

Reaching the cluster: the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``) at the configured context; inside a pod
with no kubeconfig, the pod's service account (see ``infra/chaos-mesh/rbac.yaml``). The connection recorded in the
ledger names the kubeconfig file and context only (never a credential), so ``drillbit cleanup`` reverts from it.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from drillbit.config import KubernetesTarget, ResolvedEnvironment
from drillbit.faults.chaos_mesh import ChaosMeshFault
from drillbit.faults.disk import io_chaos
from drillbit.faults.network import network_delay as network_delay_chaos
from drillbit.faults.platform.kubernetes import KubeConnection, ReadyReport, RestartWatch
from drillbit.faults.pod_kill import PodDelete
from drillbit.faults.pod_kill import pod_kill as pod_kill_chaos
from drillbit.faults.port_block import DbPortBlock
from drillbit.model import Criterion, Outcome, Timeline, Verdict

CHAOS_MARGIN_S = 60  # Chaos Mesh ends an experiment by itself this long after the planned fault window


def target(env: ResolvedEnvironment) -> KubernetesTarget:
    return env.spec.kubernetes or KubernetesTarget()


def connection(env: ResolvedEnvironment) -> KubeConnection:
    """How to reach this environment's cluster: kubeconfig + context, else in-cluster (a Kubernetes work pool)."""
    return KubeConnection.for_environment(target(env))


def run_label(run_id: str | None = None) -> str:
    """The id every manifest is labelled with: the given run's (the flow passes its Prefect flow-run id), else a
    fresh one."""
    return run_id or f"drillbit-{uuid.uuid4().hex[:12]}"


def chaos_duration(seconds: float) -> int:
    """Chaos Mesh's own ``duration`` for a fault Drillbit holds ``seconds``: a safety net if the runner dies."""
    return math.ceil(seconds) + CHAOS_MARGIN_S


def _blast(env: ResolvedEnvironment) -> dict[str, Any]:
    safety = env.spec.safety
    return {"max_targets": safety.max_targets, "max_percent": safety.max_percent}


# ------------------------------------------------------------------------------------------------ the four faults


def pod_kill(
    env: ResolvedEnvironment, params: Any, run_id: str | None = None
) -> tuple[ChaosMeshFault | PodDelete, RestartWatch]:
    """PodChaos ``pod-kill`` (``params.via == "chaos-mesh"``) or a plain pod delete, with the restart watch armed."""
    kube, conn = target(env), connection(env)
    selector = env.selector(params.target)
    watch_for = max(params.back_within * 4, params.duration + params.recovery + 10)
    watch = RestartWatch(selector, kube.namespace, conn, timeout=watch_for)
    if params.via == "pod-delete":
        fault = PodDelete(
            selector,
            kube.namespace,
            conn,
            mode=params.mode,
            value=params.value,
            seed=params.seed,
            full_outage=params.full_outage,
            **_blast(env),
        )
        fault.on_applied = watch.start
        return fault, watch
    manifest = pod_kill_chaos(
        namespace=kube.namespace,
        labels=selector,
        run_id=run_label(run_id),
        mode=params.mode,
        value=params.value,
        duration=chaos_duration(params.duration),
        chaos_namespace=kube.chaos_namespace,
    )
    fault = ChaosMeshFault(manifest, conn, on_applied=watch.start, full_outage=params.full_outage, **_blast(env))
    return fault, watch


def network_delay(env: ResolvedEnvironment, params: Any, run_id: str | None = None) -> ChaosMeshFault:
    """NetworkChaos ``delay`` (latency, jitter, correlation) on the target role's link to ``params.peer``."""
    kube = target(env)
    peer = env.selector(params.peer) if params.peer else None
    manifest = network_delay_chaos(
        namespace=kube.namespace,
        labels=env.selector(params.target),
        run_id=run_label(run_id),
        latency=params.latency_ms,
        jitter=params.jitter_ms,
        correlation=params.correlation,
        direction="to",
        target_labels=peer,
        mode=params.mode,
        value=params.value,
        duration=chaos_duration(params.duration),
        chaos_namespace=kube.chaos_namespace,
    )
    return ChaosMeshFault(manifest, connection(env), **_blast(env))


def io_pressure(env: ResolvedEnvironment, params: Any, run_id: str | None = None) -> ChaosMeshFault:
    """IOChaos on the target role's data volume: ``latency`` (slow file operations) or ``fault`` (ENOSPC).

    StressChaos v2 has no disk stressor (the seed's ``ioChaos`` stressor does not exist), so this is the disk fault
    Chaos Mesh offers; it does not fill the volume (see ``drillbit.faults.disk``).
    """
    kube = target(env)
    manifest = io_chaos(
        namespace=kube.namespace,
        labels=env.selector(params.target),
        run_id=run_label(run_id),
        volume_path=params.volume_path,
        action=params.io_action,
        delay=params.io_delay_ms,
        errno=28 if params.io_action == "fault" else None,  # ENOSPC: writes fail as on a full disk
        percent=params.io_percent,
        mode="one",
        duration=chaos_duration(params.duration),
        chaos_namespace=kube.chaos_namespace,
    )
    return ChaosMeshFault(manifest, connection(env), **_blast(env))


def db_port_block(env: ResolvedEnvironment, params: Any) -> DbPortBlock:
    """The seed's database failure: iptables in the database pod (by exec) drops (or resets) its port."""
    kube = target(env)
    port = env.spec.database.port if env.spec.database else 5432
    return DbPortBlock(
        env.selector(params.db_role),
        kube.namespace,
        connection(env),
        port=port,
        pod=params.pod,
        container=params.container,
        action=params.action,
        full_outage=params.full_outage,
    )


# ------------------------------------------------------------------------------------------------ pod restart


def record_restart(watch: RestartWatch, timeline: Timeline, wait: float = 0.0) -> ReadyReport | None:
    """Write the restart watch's report into the timeline (event ``pod_restart``); the criterion grades from it."""
    report = watch.report(wait)
    if report is None:
        return None
    took = "not Ready again" if not report.ready else f"Ready again after {report.seconds:g} s"
    detail = f"{report.ready_pods} of {report.wanted} pods {took}" + (f" ({watch.error})" if watch.error else "")
    timeline.event(
        "pod_restart",
        detail,
        ready=report.ready,
        seconds=report.seconds,
        killed=watch.killed,
        replacements=report.replacements,
        ready_pods=report.ready_pods,
        wanted=report.wanted,
        watch_error=watch.error,
    )
    return report


def back_within(name: str, seconds: float) -> Criterion:
    """The killed pods' workload was Ready again (as many pods as before) within ``seconds``, seen by the watch."""

    def judge(tl: Timeline) -> Verdict:
        e = tl.last_event("pod_restart")
        if e is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "no pod kill was observed (nothing injected?)")
        ev = {k: e.get(k) for k in ("seconds", "killed", "replacements", "ready_pods", "wanted")}
        if e.get("watch_error"):
            return Verdict(name, Outcome.INCONCLUSIVE, f"the pod watch failed: {e['watch_error']}", ev)
        if not e["ready"]:
            return Verdict(name, Outcome.FAIL, f"only {e['ready_pods']} of {e['wanted']} pods Ready again", ev)
        ok = e["seconds"] <= seconds
        why = f"{e['wanted']} pods Ready {e['seconds']:g} s after the kill (replacements: {e['replacements']})"
        return Verdict(name, Outcome.PASS if ok else Outcome.FAIL, why, ev)

    return Criterion(name, f"Ready again within {seconds:g} s (pod watch)", judge)


def not_exercised(name: str, why: str) -> Criterion:
    """A criterion this platform's fault cannot exercise: shown as inconclusive with the reason, never required."""
    return Criterion(name, "not exercised", lambda _tl: Verdict(name, Outcome.INCONCLUSIVE, why), required=False)
