"""Network partition: links between nodes cut in both directions. Who is cut off from whom is a topology
(``drillbit.faults.topology``: groups such as ``split_one`` or ``halves``, made a grudge by ``complete_grudge``, or a
grudge such as ``bridge``); how the links are cut is the mechanism of each platform, here.

Sandbox (``Partition``): the validators' etcd peer network, in one nftables table of Drillbit's own. Loopback
connections leave from 127.0.0.1 whatever address a member binds, so source addresses cannot tell members apart.
Every member runs under its own uid instead (uid U, peer host H, peer port P); the rules, on the output hook of
``lo``, are:

- for a member cut off from every other member (``topology.alone``), two rules:
  ``meta skuid U tcp dport P drop`` (nothing it sends reaches another member's peer port) and
  ``ip daddr H tcp dport P drop`` (nothing reaches its own peer port);
- for any other cut link a–b, one rule per direction: ``meta skuid U_a ip daddr H_b tcp dport P_b drop`` and back.

Every cut is symmetric (a TCP connection needs both directions). The client port (2379) stays open, so each node
still talks to its own member and sees it lose its leader. Reverting is one ``nft delete table``.

Chaos Mesh: ``network_partition`` (the pods a label selector and mode pick at injection, cut off from the target
pods) and ``partition_manifests(grudge)`` (exactly the pods a topology names, by their StatefulSet pod-name label):
NetworkChaos ``partition`` objects, direction both, each run by ``chaos_mesh.ChaosMeshFault``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from drillbit.faults import topology
from drillbit.faults.base import Fault, FaultError, Plan
from drillbit.faults.ledger import Handle
from drillbit.faults.platform import chaosmesh
from drillbit.faults.platform import sandbox as sbx
from drillbit.faults.targets import check_blast_radius
from drillbit.faults.topology import Grudge

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # every StatefulSet pod carries its own name in it

# ------------------------------------------------------------------------------------------------ sandbox


def _alone_rules(member: dict[str, Any], ports: list[int]) -> list[str]:
    """The two rules cutting ``member`` off from every peer port in ``ports`` and every sender from its own."""
    uid, host, port = int(member["uid"]), str(member["peer_host"]), int(member["peer_port"])
    dports = str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }"
    return [
        f'oifname "lo" meta skuid {uid} tcp dport {dports} drop',
        f'oifname "lo" ip daddr {host} tcp dport {port} drop',
    ]


def _link_rule(sender: dict[str, Any], receiver: dict[str, Any]) -> str:
    """The rule dropping what ``sender`` sends to ``receiver``'s peer port (one direction of a link)."""
    host, port = str(receiver["peer_host"]), int(receiver["peer_port"])
    return f'oifname "lo" meta skuid {int(sender["uid"])} ip daddr {host} tcp dport {port} drop'


def partition_rules(table: str, members: list[dict[str, Any]]) -> str:
    """The nft script for one table isolating each of ``members`` (dicts with uid, peer_host, peer_port)."""
    return sbx.output_table(table, [r for m in members for r in _alone_rules(m, [int(m["peer_port"])])])


def grudge_rules(table: str, members: list[dict[str, Any]], grudge: Grudge[str]) -> str:
    """The nft script for one table cutting every link of a symmetric ``grudge`` between ``members`` (by name).

    A member alone takes the two rules of ``partition_rules`` (in the grudge's order, skipped once each of its links
    is cut already: with every member alone, the last one needs none); any other link takes one rule each way.
    """
    by_name = {m["name"]: m for m in members}
    lonely = set(topology.alone(grudge, list(by_name)))
    cut = topology.links(grudge)
    rules: list[str] = []
    covered: set[tuple[str, str]] = set()
    for name in topology.nodes_of(grudge):
        if name in lonely and any(name in link and link not in covered for link in cut):
            ports = sorted({int(m["peer_port"]) for other, m in by_name.items() if other != name})
            rules += _alone_rules(by_name[name], ports)
            covered |= {link for link in cut if name in link}
    for a, b in cut:
        if (a, b) not in covered:
            rules += [_link_rule(by_name[a], by_name[b]), _link_rule(by_name[b], by_name[a])]
    return sbx.output_table(table, rules)


class Partition(Fault):
    """Cut the sandbox's etcd members apart: ``isolate`` (each named member alone, the rest together) or a ``grudge``.

    ``Partition(etcd, ["etcd-2"])`` is ``topology.complete_grudge(topology.isolate(names, ["etcd-2"]))``;
    ``Partition.from_groups(etcd, topology.halves(names))`` or ``Partition(etcd, grudge=topology.bridge(names))`` take
    any topology. ``max_isolated`` bounds the members cut off: the isolated ones, or for a grudge those that the
    best-connected member no longer reaches.
    """

    kind = "network-partition"

    def __init__(
        self,
        etcd: list[dict[str, Any]],
        isolate: Iterable[str] = (),
        max_isolated: int | None = None,
        *,
        grudge: Grudge[str] | None = None,
    ) -> None:
        self.etcd, self.isolate = list(etcd), list(dict.fromkeys(isolate))
        self.grudge = {n: set(others) for n, others in grudge.items()} if grudge is not None else None
        self.max_isolated = max_isolated
        self.table = f"drillbit_part_{uuid.uuid4().hex[:8]}"

    @classmethod
    def from_groups(
        cls, etcd: list[dict[str, Any]], groups: list[list[str]], max_isolated: int | None = None
    ) -> Partition:
        """No member reaches a member of another group (``topology.complete_grudge(groups)``)."""
        return cls(etcd, max_isolated=max_isolated, grudge=topology.complete_grudge(groups))

    def cut(self) -> Grudge[str]:
        """The grudge this fault applies."""
        if self.grudge is not None:
            return self.grudge
        return topology.complete_grudge(topology.isolate([m["name"] for m in self.etcd], self.isolate))

    def plan(self) -> Plan:
        known = {m["name"]: m for m in self.etcd}
        if self.grudge is not None and self.isolate:
            raise FaultError("give the members to isolate or a grudge, not both")
        named = self.isolate if self.grudge is None else topology.nodes_of(self.grudge)
        unknown = [n for n in named if n not in known]
        if unknown:
            raise FaultError(f"unknown member(s) {', '.join(unknown)}; the cluster has {', '.join(sorted(known))}")
        if self.grudge is None and not self.isolate:
            raise FaultError("no member to isolate")
        grudge = self.cut()
        if not topology.is_symmetric(grudge):
            raise FaultError("the grudge is not symmetric: a TCP link is cut in both directions or not at all")
        cut_links = topology.links(grudge)
        if self.grudge is not None and not cut_links:
            raise FaultError("the grudge cuts no link")
        names = list(known)
        if self.grudge is None:
            cut_off = len(self.isolate)
        else:
            cut_off = len(names) - max(1 + len(r) for r in topology.reachable(grudge, names).values())
        check_blast_radius(cut_off, len(names), self.max_isolated, noun="isolated members", limit="max_isolated")
        touched = [n for n in names if any(n in link for link in cut_links)]
        for name in dict.fromkeys([*self.isolate, *touched]):
            missing = {"uid", "peer_host", "peer_port"} - set(known[name])
            if missing:
                raise FaultError(f"{name} has no {', '.join(sorted(missing))} in endpoints.json: cannot isolate it")
        sbx.require_nft("a network partition")
        majority = len(names) // 2 + 1
        quorum = len(names) - cut_off >= majority
        if self.grudge is None:
            detail = {"table": self.table, "isolated": self.isolate, "quorum_remains": quorum}
            return Plan(self.kind, [f"etcd member {n}" for n in self.isolate], detail)
        detail = {"table": self.table, "isolated": topology.alone(grudge, names), "quorum_remains": quorum}
        detail["cut"] = [list(link) for link in cut_links]
        return Plan(self.kind, [f"etcd member {n}" for n in touched], detail)

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [sbx.nft_table_step(self.table)]

    def apply(self, plan: Plan, handle: Handle) -> None:
        sbx.nft_apply(grudge_rules(self.table, self.etcd, self.cut()))


# ------------------------------------------------------------------------------------------------ Chaos Mesh


def network_partition(
    *,
    namespace: str,
    labels: dict[str, str],
    target_labels: dict[str, str] | None,
    run_id: str,
    target_expressions: list[dict[str, Any]] | None = None,
    target_namespace: str | None = None,
    direction: str = "both",
    mode: str = "all",
    value: float | None = None,
    target_mode: str = "all",
    target_value: float | None = None,
    duration: str | float = "5m",
    chaos_namespace: str = "chaos-testing",
    name: str | None = None,
    expressions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """NetworkChaos ``partition`` between the selected pods and the target pods (split brain, DB cut off).

    ``target_expressions`` (label selector requirements, e.g. ``app.kubernetes.io/name NotIn [postgres]``) may
    replace or narrow ``target_labels``; ``expressions`` narrow ``labels`` the same way.
    """
    spec = {"action": "partition", **chaosmesh.base_spec(namespace, labels, mode, value, duration, expressions)}
    spec["direction"] = chaosmesh.check_direction(direction)
    ns = target_namespace or namespace
    spec["target"] = chaosmesh.link_target(ns, target_labels, target_mode, target_value, target_expressions)
    return chaosmesh.build_manifest("NetworkChaos", "partition", spec, run_id, chaos_namespace, name)


def partition_manifests(
    grudge: Grudge[str],
    *,
    namespace: str,
    labels: dict[str, str],
    run_id: str,
    pod_label: str = POD_NAME_LABEL,
    duration: str | float = "5m",
    chaos_namespace: str = "chaos-testing",
) -> list[dict[str, Any]]:
    """NetworkChaos ``partition`` objects (direction both, mode all) that together cut every link of a symmetric
    ``grudge`` between pods named in it, among the pods ``labels`` select (``pod_label`` holds each pod's name).

    The pods with the same far side share one object: ``complete_grudge(split_one(pods, p))`` and
    ``complete_grudge(halves(pods))`` are one object each, ``singletons`` of n pods n - 1, ``bridge`` one. Inject each
    with ``ChaosMeshFault`` (its blast-radius check counts the pods of each object).
    """
    if not topology.is_symmetric(grudge):
        raise FaultError("the grudge is not symmetric: a NetworkChaos partition (direction both) cuts both ways")
    order = topology.nodes_of(grudge)
    sides: dict[tuple[str, ...], list[str]] = {}
    for i, node in enumerate(order):
        far = tuple(str(m) for m in order[i + 1 :] if m in grudge.get(node, set()))
        if far:
            sides.setdefault(far, []).append(str(node))
    if not sides:
        raise FaultError("the grudge cuts no link")
    return [
        network_partition(
            namespace=namespace,
            labels=labels,
            expressions=[{"key": pod_label, "operator": "In", "values": near}],
            target_labels=labels,
            target_expressions=[{"key": pod_label, "operator": "In", "values": list(far)}],
            run_id=run_id,
            duration=duration,
            chaos_namespace=chaos_namespace,
        )
        for far, near in sides.items()
    ]
