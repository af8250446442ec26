"""Pod kill: a workload's process or pod killed at once; what is tested is the platform bringing it back.

- sandbox: ``PodKill`` SIGKILLs supervised processes picked by label selector (modes one / all / fixed /
  fixed-percent, as Chaos Mesh's PodChaos ``pod-kill``); the supervisor restarting them is what is being tested;
- Kubernetes without Chaos Mesh: ``PodDelete`` deletes pods picked by label selector (same modes, the pod's UID as
  a precondition); ``wait_ready`` (or ``platform.kubernetes.RestartWatch`` in the background) times the comeback;
- Chaos Mesh: ``pod_kill(...)`` builds the PodChaos ``pod-kill`` manifest, run by ``chaos_mesh.ChaosMeshFault``.

Nothing to revert in any of them (a ``noop`` undo step is the record): a killed pod is restarted by its platform.
A kill that can take every live replica of a workload down (the only provider daemon, all three validators) is
refused unless ``full_outage`` is set (``targets.Selecting``); the plan's ``workloads`` detail lists each workload's
replicas and how many go down.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform import sandbox as sbx
from drillbit.faults.platform.kubernetes import (
    REQUEST_TIMEOUT,
    TRANSPORT_ERRORS,
    KubeClient,
    KubeConnection,
    ReadyReport,
    api_error,
    is_ready,
    list_pods,
    pod_workloads,
    selector_string,
    wait_for_ready,
)
from drillbit.faults.targets import Mode, Selecting

# ------------------------------------------------------------------------------------------------ sandbox


class PodKill(Selecting, Fault):
    """SIGKILL the sandbox's supervised processes picked by label selector (only running ones are candidates)."""

    kind = "pod-kill"

    def __init__(
        self,
        endpoints: dict[str, Any],
        selector: dict[str, str],
        mode: Mode = "one",
        value: float | None = None,
        max_targets: int | None = None,
        max_percent: float | None = None,
        seed: int | None = None,
        *,
        full_outage: bool = False,
    ) -> None:
        self.endpoints, self.selector, self.mode, self.value = endpoints, selector, mode, value
        self.max_targets, self.max_percent, self.full_outage = max_targets, max_percent, full_outage
        self.rng = random.Random(seed)

    def plan(self) -> Plan:
        # like Chaos Mesh, only running pods are candidates (a pod that is already gone cannot be killed); they are
        # also the live replicas of their workloads (targets.sandbox_workloads)
        running = sbx.running_programs(self.endpoints["supervisor"])
        candidates = {n: c for n, c in self.endpoints["components"].items() if n in running}
        choice = self.select(candidates)
        detail = {"selector": self.selector, "mode": self.mode, "signal": "SIGKILL"} | self.workload_detail(choice)
        plan = Plan(self.kind, choice.targets, detail)
        self.refuse(choice, plan)
        return plan

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "noop", "why": "a killed process must be restarted by the platform, not by Drillbit"}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        supervisor = sbx.supervisor(self.endpoints["supervisor"])
        killed = {}
        for name in plan.targets:
            info = supervisor.getProcessInfo(name)
            pid = int(info.get("pid") or 0)
            if info.get("statename") != "RUNNING" or pid <= 0:
                raise FaultError(f"{name} is not running ({info.get('statename')}); refusing to kill")
            os.kill(pid, signal.SIGKILL)
            killed[name] = pid
        handle.detail["killed"] = killed


# ------------------------------------------------------------------------------------------------ Kubernetes


class PodDelete(Selecting, KubeClient, Fault):
    """Pod kill without Chaos Mesh: delete pods picked by label selector (modes as Chaos Mesh's, blast radius)."""

    kind = "pod-kill"

    def __init__(
        self,
        selector: dict[str, str],
        namespace: str = "virtengine",
        connection: KubeConnection | None = None,
        *,
        mode: Mode = "one",
        value: float | None = None,
        max_targets: int | None = None,
        max_percent: float | None = None,
        grace_period: int = 0,
        seed: int | None = None,
        on_applied: Callable[[Handle], None] | None = None,
        full_outage: bool = False,
    ) -> None:
        self.selector, self.namespace = dict(selector), namespace
        self.on_applied = on_applied
        self.connection = connection or KubeConnection()
        self.mode, self.value, self.max_targets, self.max_percent = mode, value, max_targets, max_percent
        self.grace_period, self.rng, self.full_outage = grace_period, random.Random(seed), full_outage

    def plan(self) -> Plan:
        if not self.selector:
            raise FaultError("selector is empty: it would match every pod; give at least one label")
        if self.grace_period < 0:
            raise FaultError(f"grace_period must be ≥ 0 s, got {self.grace_period}")
        pods = list_pods(self.core, self.namespace, selector_string({"labelSelectors": self.selector}))
        components = {p["metadata"]["name"]: {"labels": p["metadata"].get("labels") or {}} for p in pods}
        ready = {p["metadata"]["name"] for p in pods if is_ready(p)}
        choice = self.select(components, pod_workloads(self.api, self.namespace, pods), ready)
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
        detail = {"selector": self.selector, "namespace": self.namespace, "mode": self.mode, "via": "pod delete"}
        detail |= {"target_uids": {t: uids[t] for t in choice.targets}, "known_uids": sorted(uids.values())}
        detail["ready_before"] = len(ready)
        plan = Plan(self.kind, choice.targets, detail | self.workload_detail(choice))
        self.refuse(choice, plan)
        return plan

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "noop", "why": "a deleted pod is recreated by its controller, not by Drillbit"}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        handle.detail["deleted_at"] = time.time()
        deleted = {}
        for name, uid in plan.detail["target_uids"].items():
            options = client.V1DeleteOptions(
                grace_period_seconds=self.grace_period, preconditions=client.V1Preconditions(uid=uid)
            )
            try:
                self.core.delete_namespaced_pod(name, self.namespace, body=options, _request_timeout=REQUEST_TIMEOUT)
            except (ApiException, *TRANSPORT_ERRORS) as exc:
                raise FaultError(f"deleting pod {self.namespace}/{name} failed: {api_error(exc)}") from exc
            deleted[name] = uid
        handle.detail["deleted"] = deleted
        self.remember(handle)
        if self.on_applied:
            self.on_applied(handle)

    def wait_ready(self, handle: Handle, timeout: float = 120.0) -> ReadyReport:
        """Watch until as many pods are Ready as before the deletion (not counting the deleted ones)."""
        return wait_for_ready(
            self.core,
            self.namespace,
            selector_string({"labelSelectors": self.selector}),
            want_ready=int(handle.detail.get("ready_before", 1)),
            exclude_uids=set(handle.detail.get("deleted", {}).values()),
            known_uids=set(handle.detail.get("known_uids", [])),
            since=float(handle.detail.get("deleted_at", time.time())),
            timeout=timeout,
        )


# ------------------------------------------------------------------------------------------------ Chaos Mesh


def pod_kill(
    *,
    namespace: str,
    labels: dict[str, str],
    run_id: str,
    mode: str = "one",
    value: float | None = None,
    grace_period: int = 0,
    duration: str | float = "30s",
    chaos_namespace: str = "chaos-testing",
    name: str | None = None,
) -> dict[str, Any]:
    """PodChaos ``pod-kill``: Chaos Mesh deletes the chosen pods (``gracePeriod`` seconds, 0 = at once)."""
    if isinstance(grace_period, bool) or not isinstance(grace_period, int) or grace_period < 0:
        raise FaultError(f"spec.gracePeriod: {grace_period!r} must be a whole number of seconds ≥ 0")
    spec = {"action": "pod-kill", **chaosmesh.base_spec(namespace, labels, mode, value, duration)}
    spec["gracePeriod"] = grace_period
    return chaosmesh.build_manifest("PodChaos", "pod-kill", spec, run_id, chaos_namespace, name)
