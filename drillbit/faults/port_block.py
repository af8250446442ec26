"""Port block (the database failure): TCP traffic to a port dropped (clients hang) or reset (clients fail at once).

- sandbox: ``PortBlock`` puts one nftables table of Drillbit's own on the loopback output hook, dropping (or
  rejecting with a TCP reset) the port; revert is one ``nft delete table`` (undo driver ``nft_table``);
- Kubernetes: ``DbPortBlock`` runs ``iptables -A INPUT -p tcp --dport 5432 -j DROP`` in the database pod by exec
  (``REJECT --reject-with tcp-reset`` with ``action="reject"``); revert runs the matching ``-D`` (undo driver
  ``k8s_exec``, which does nothing if the pod was replaced: a new pod has a new network). It needs iptables and
  NET_ADMIN in that container; the Chaos Mesh partition (``infra/chaos-mesh/db-failure.yaml``, built with
  ``partition.network_partition``) needs neither. Blocking the port takes the pod down for its clients: when it is
  the database's only Ready replica (its workload, ``platform.kubernetes.pod_workloads``), that is a full outage,
  refused unless ``full_outage`` (the database-failure experiment sets it: the outage is what it tests).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import sandbox as sbx
from drillbit.faults.platform.kubernetes import (
    TRANSPORT_ERRORS,
    KubeClient,
    KubeConnection,
    api_error,
    exec_in_pod,
    is_ready,
    list_pods,
    pod_workloads,
    selector_string,
)
from drillbit.faults.targets import describe_shares, refuse_full_outage, workload_shares

# ------------------------------------------------------------------------------------------------ sandbox


class PortBlock(Fault):
    """Drop (or reset) TCP traffic to a loopback port with an nftables table of Drillbit's own: the DB failure."""

    kind = "db-failure"

    def __init__(self, port: int, action: Literal["drop", "reject"] = "drop", label: str = "database") -> None:
        self.port, self.action, self.label = port, action, label
        self.table = f"drillbit_{uuid.uuid4().hex[:10]}"

    def plan(self) -> Plan:
        if not 0 < int(self.port) < 65536:
            raise FaultError(f"port {self.port} is not a TCP port")
        sbx.require_nft("blocking a port")
        return Plan(self.kind, [f"{self.label} 127.0.0.1:{self.port}"], {"action": self.action, "table": self.table})

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [sbx.nft_table_step(self.table)]

    def apply(self, plan: Plan, handle: Handle) -> None:
        verdict = "drop" if self.action == "drop" else "reject with tcp reset"
        sbx.nft_apply(sbx.output_table(self.table, [f'oifname "lo" tcp dport {int(self.port)} {verdict}']))


# ------------------------------------------------------------------------------------------------ Kubernetes


class DbPortBlock(KubeClient, Fault):
    """The seed's DB failure: an iptables DROP of the database port inside the database pod, removed on revert."""

    kind = "db-failure"
    ABSENT = r"does a matching rule exist|Bad rule"

    def __init__(
        self,
        selector: dict[str, str],
        namespace: str = "virtengine",
        connection: KubeConnection | None = None,
        *,
        port: int = 5432,
        pod: str | None = None,
        container: str | None = None,
        exec_timeout: float = 30.0,
        action: str = "drop",
        full_outage: bool = False,
    ) -> None:
        self.selector, self.namespace, self.port = dict(selector), namespace, port
        self.action, self.full_outage = action, full_outage
        self.pod, self.container = pod, container
        self.connection = connection or KubeConnection()
        self.exec_timeout = exec_timeout

    def rule(self, op: str) -> list[str]:
        target = ["REJECT", "--reject-with", "tcp-reset"] if self.action == "reject" else ["DROP"]
        return ["iptables", op, "INPUT", "-p", "tcp", "--dport", str(int(self.port)), "-j", *target]

    def plan(self) -> Plan:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise FaultError(f"port {self.port!r} is not a TCP port")
        if self.action not in ("drop", "reject"):
            raise FaultError(f"action {self.action!r}: use drop (silent) or reject (TCP reset)")
        if not self.selector:
            raise FaultError("selector is empty: give the database pod's labels (app.kubernetes.io/name: postgres)")
        pods = list_pods(self.core, self.namespace, selector_string({"labelSelectors": self.selector}))
        names = sorted(p["metadata"]["name"] for p in pods)
        if self.pod is not None:
            pods = [p for p in pods if p["metadata"]["name"] == self.pod]
            if not pods:
                raise FaultError(f"pod {self.pod} is not among the pods matching {self.selector}: {', '.join(names)}")
        if len(pods) != 1:
            found = ", ".join(names) or "none"
            raise FaultError(f"{self.selector} must match exactly one database pod (found: {found}); set pod=NAME")
        pod = pods[0]
        if (pod.get("status") or {}).get("phase") != "Running":
            raise FaultError(f"pod {pod['metadata']['name']} is not Running; refusing to block its port")
        name = pod["metadata"]["name"]
        live = [name] if is_ready(pod) else []
        shares = workload_shares([name], 1, pod_workloads(self.api, self.namespace, [pod]), live)
        detail = {"pod": name, "uid": pod["metadata"]["uid"], "port": int(self.port)}
        detail |= {"container": self.container, "command": self.rule("-A")}
        detail["workloads"] = describe_shares(shares, self.full_outage)
        plan = Plan(self.kind, [f"{self.namespace}/{name}:{self.port}"], detail)
        refuse_full_outage(shares, self.full_outage, plan, what=f"blocking port {self.port} of {self.namespace}/{name}")
        return plan

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        step = {"driver": "k8s_exec", "namespace": self.namespace, "pod": plan.detail["pod"], "uid": plan.detail["uid"]}
        step |= {"container": self.container, "command": self.rule("-D"), "absent_pattern": self.ABSENT}
        return [step | {"timeout": self.exec_timeout, "connection": self.connection.to_dict()}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        pod = plan.detail["pod"]
        try:
            code, out, err = exec_in_pod(
                self.core, self.namespace, pod, self.rule("-A"), self.container, self.exec_timeout
            )
        except (ApiException, *TRANSPORT_ERRORS) as exc:
            raise FaultError(f"exec in {self.namespace}/{pod} failed: {api_error(exc)} (RBAC: pods/exec)") from exc
        if code != 0:
            raise FaultError(
                f"iptables in {self.namespace}/{pod} exited {code}: {(err or out).strip()[:300]} — the container needs "
                "iptables and the NET_ADMIN capability; otherwise use the Chaos Mesh partition (db-failure.yaml)"
            )
