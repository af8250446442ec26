"""Chaos Mesh experiments as faults on Kubernetes: the one driver every fault kind's Chaos Mesh variant runs with.

``ChaosMeshFault(manifest)`` takes a manifest from a kind's builder (``pod_kill.pod_kill``, ``network.network_delay``,
``partition.network_partition`` / ``partition_manifests``, ``memory.stress``, ``disk.io_chaos`` / ``disk_pressure``,
or ``platform.chaosmesh.schedule`` around one of them):

1. plan: validate it (CRD schema + Chaos Mesh's rules), resolve every selector against the live pod list, and check
   the count its mode implies against the blast radius (``targets.mode_count`` / ``targets.check_blast_radius``);
   an experiment that takes its pods down (``takes_down``: PodChaos, NetworkChaos ``partition``) is also checked
   per workload (``platform.kubernetes.pod_workloads``, ``targets.workload_shares``): one whose mode can take every
   Ready replica of a workload down is refused unless ``full_outage`` (the plan's ``workloads`` detail says so);
2. undo (recorded first): delete the object and wait until it is gone (``k8s_custom_object``: Chaos Mesh's finalizer
   recovers the pods);
3. apply: create it, then poll its status until Chaos Mesh reports every target injected (a Schedule is not waited).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform.chaosmesh import injection_state
from drillbit.faults.platform.kubernetes import (
    REQUEST_TIMEOUT,
    TRANSPORT_ERRORS,
    KubeClient,
    KubeConnection,
    api_error,
    custom_object_step,
    is_ready,
    list_pods,
    pod_workloads,
    selector_string,
)
from drillbit.faults.targets import (
    Share,
    check_blast_radius,
    describe_shares,
    mode_count,
    refuse_full_outage,
    workload_shares,
)

KINDS = {"PodChaos": "pod-kill", "NetworkChaos": "network-latency", "StressChaos": "stress"}
KINDS |= {"IOChaos": "disk-pressure", "Schedule": "schedule"}  # the fault kind of each Chaos Mesh kind


def chaos_undo_step(manifest: dict[str, Any], connection: KubeConnection, wait_gone: float) -> dict[str, Any]:
    """The undo step deleting a Chaos Mesh object (``k8s_custom_object``)."""
    return custom_object_step(manifest, connection, wait_gone, chaosmesh.plural(manifest))


def takes_down(manifest: dict[str, Any]) -> bool:
    """Whether the experiment (or a Schedule's) takes its selected pods down — PodChaos (pod-kill, pod-failure,
    container-kill) and NetworkChaos ``partition`` — so that the whole-workload rule applies; the other kinds slow,
    stress or fail the I/O of their pods, which keep serving."""
    kind, spec = manifest.get("kind"), manifest.get("spec") or {}
    if kind == "Schedule":
        kind = spec.get("type")
        spec = spec.get(chaosmesh.SCHEDULE_FIELDS.get(str(kind), "")) or {}
    return kind == "PodChaos" or (kind == "NetworkChaos" and spec.get("action") == "partition")


def selection_count(
    pods: list[dict[str, Any]],
    labels: dict[str, str],
    mode: str,
    value: Any,
    max_targets: int | None,
    max_percent: float | None,
    where: str,
) -> int:
    """How many of ``pods`` the mode picks; FaultError if none match or the count exceeds the blast radius."""
    if not pods:
        raise FaultError(f"{where}: selects no pod ({labels}); check the labels and namespace")
    count = mode_count(mode, float(value) if value is not None else None, len(pods))
    check_blast_radius(count, len(pods), max_targets, max_percent)
    return count


class ChaosMeshFault(KubeClient, Fault):
    """Create a Chaos Mesh experiment (a manifest from a kind's builder); wait until Chaos Mesh reports it injected."""

    def __init__(
        self,
        manifest: dict[str, Any],
        connection: KubeConnection | None = None,
        *,
        max_targets: int | None = None,
        max_percent: float | None = None,
        inject_timeout: float = 60.0,
        poll_interval: float = 1.0,
        delete_timeout: float = 60.0,
        kind: str | None = None,
        on_applied: Callable[[Handle], None] | None = None,
        full_outage: bool = False,
    ) -> None:
        self.manifest = manifest
        self.full_outage = full_outage  # the experiment means to take a whole workload down
        self.on_applied = on_applied  # called once the fault is in place (e.g. RestartWatch.start)
        self.connection = connection or KubeConnection()
        self.max_targets, self.max_percent = max_targets, max_percent
        self.inject_timeout, self.poll_interval, self.delete_timeout = inject_timeout, poll_interval, delete_timeout
        partition = (manifest.get("spec") or {}).get("action") == "partition"
        self.kind = kind or ("network-partition" if partition else KINDS.get(manifest.get("kind"), "chaos"))

    @property
    def ref(self) -> str:
        meta = self.manifest.get("metadata") or {}
        return f"{self.manifest.get('kind')} {meta.get('namespace')}/{meta.get('name')}"

    def plan(self) -> Plan:
        chaosmesh.validate(self.manifest)
        core = client.CoreV1Api(self.api)
        candidates: list[str] = []
        counts = {}
        uids: dict[str, str] = {}
        ready_before = 0
        shares: list[Share] = []
        down = takes_down(self.manifest)
        for where, selector, mode, value in chaosmesh.selectors(self.manifest):
            pods = self._selected(core, where, selector)
            if ".target." in where:  # the far end of a link: it must exist, but it is not what gets broken
                if not pods:
                    raise FaultError(f"{where}: selects no pod; the fault would do nothing")
                counts[where] = len(pods)
                continue
            labels = selector["labelSelectors"]
            counts[where] = selection_count(pods, labels, mode, value, self.max_targets, self.max_percent, where)
            candidates += [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
            uids |= {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["metadata"]["uid"] for p in pods}
            ready_before += sum(1 for p in pods if is_ready(p))
            if down:
                shares += self._shares(pods, counts[where])
        detail = {"chaos": self.ref, "counts": counts, "manifest": self.manifest}
        detail |= {"pods": uids, "ready_before": ready_before}
        if shares:
            detail["workloads"] = describe_shares(shares, self.full_outage)
        plan = Plan(self.kind, sorted(candidates), detail)
        refuse_full_outage(shares, self.full_outage, plan, what=self.ref)
        return plan

    def _shares(self, pods: list[dict[str, Any]], count: int) -> list[Share]:
        """Each workload's share of the ``count`` pods Chaos Mesh will draw from ``pods`` (names "namespace/pod")."""
        by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in pods:
            by_namespace[p["metadata"]["namespace"]].append(p)
        workloads = {
            f"{ns}/{name}": w
            for ns, group in by_namespace.items()
            for name, w in pod_workloads(self.api, ns, group).items()
        }
        names = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
        live = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods if is_ready(p)]
        return workload_shares(names, count, workloads, live)

    @staticmethod
    def _selected(core: client.CoreV1Api, where: str, selector: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods a selector matches now; only namespaces + label/expression selectors are accepted."""
        known = {"namespaces", "labelSelectors", "expressionSelectors"}
        if set(selector) - known:
            extra = ", ".join(sorted(set(selector) - known))
            raise FaultError(f"{where}: selector fields {extra} are not checked for blast radius; remove them")
        if not selector.get("namespaces"):
            raise FaultError(f"{where}.namespaces: name them (an empty list would let Chaos Mesh look cluster-wide)")
        if not selector.get("labelSelectors") and not (".target." in where and selector.get("expressionSelectors")):
            raise FaultError(f"{where}.labelSelectors: empty — Drillbit never selects a whole namespace")
        return [p for ns in selector["namespaces"] for p in list_pods(core, ns, selector_string(selector))]

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [chaos_undo_step(self.manifest, self.connection, self.delete_timeout)]

    def apply(self, plan: Plan, handle: Handle) -> None:
        custom = client.CustomObjectsApi(self.api)
        meta = self.manifest["metadata"]
        args = (chaosmesh.GROUP, chaosmesh.VERSION, meta["namespace"], chaosmesh.plural(self.manifest))
        handle.detail["created_at"] = time.time()
        try:
            custom.create_namespaced_custom_object(*args, self.manifest, _request_timeout=REQUEST_TIMEOUT)
        except (ApiException, *TRANSPORT_ERRORS) as exc:
            raise FaultError(f"creating {self.ref} was refused: {api_error(exc)}") from exc
        if self.manifest["kind"] == "Schedule":
            handle.detail["schedule"] = self.manifest["spec"]["schedule"]
            return
        handle.detail["injected"] = self.wait_injected(custom, args)
        self.remember(handle)
        if self.on_applied:
            self.on_applied(handle)

    def wait_injected(self, custom: client.CustomObjectsApi, args: tuple[str, ...]) -> list[str]:
        """Poll the object until Chaos Mesh reports every selected target injected; FaultError on timeout."""
        deadline = time.monotonic() + self.inject_timeout
        why = "no status yet"
        while True:
            try:
                obj = custom.get_namespaced_custom_object(
                    *args, self.manifest["metadata"]["name"], _request_timeout=REQUEST_TIMEOUT
                )
                injected, ids, why = injection_state(obj)
                if injected:
                    return ids
                why = why or "Chaos Mesh has not injected every target yet"
            except (ApiException, *TRANSPORT_ERRORS) as exc:
                why = f"reading its status failed: {api_error(exc)}"
            if time.monotonic() + self.poll_interval > deadline:
                raise FaultError(f"{self.ref} was not injected within {self.inject_timeout:g} s: {why}")
            time.sleep(self.poll_interval)
