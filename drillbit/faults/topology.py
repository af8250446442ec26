"""Network partition topologies as pure functions, apart from the mechanism that cuts the links (as Jepsen's nemesis).

A topology is first a list of *groups* (lists of nodes, each node in one group): ``halves``, ``split_one``,
``isolate``, ``singletons``. ``complete_grudge(groups)`` turns groups into a *grudge*: for each node, the set of nodes
it must not reach (and, the grudges built here being symmetric, that must not reach it). ``bridge`` is a grudge with
no group form: two halves that only a node in the middle still connects. The mechanisms take a grudge:

- the sandbox (``drillbit.faults.partition.Partition``): nftables rules on the loopback peer network;
- Chaos Mesh (``drillbit.faults.partition.partition_manifests``): NetworkChaos ``partition`` objects;

``links(grudge)`` lists the cut links (each pair once), ``alone(grudge)`` the nodes cut off from every other node,
``reachable(grudge)`` whom each node still reaches directly (a leader needs a majority of the nodes among them).
Nodes are any hashable names (etcd member names, pod names); bad input raises ValueError.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

N = TypeVar("N", bound=Hashable)
Grudge = dict[N, set[N]]


def _distinct(nodes: Iterable[N], what: str = "nodes") -> list[N]:
    out = list(nodes)
    if len(set(out)) != len(out):
        dupes = sorted({str(n) for n in out if out.count(n) > 1})
        raise ValueError(f"{what}: {', '.join(dupes)} given more than once")
    return out


def halves(nodes: Sequence[N]) -> list[list[N]]:
    """Two groups: the first ⌊n/2⌋ nodes (the smaller half, a minority) and the rest (Jepsen's ``bisect``)."""
    nodes = _distinct(nodes)
    cut = len(nodes) // 2
    return [nodes[:cut], nodes[cut:]]


def split_one(nodes: Sequence[N], node: N | None = None, *, rng: random.Random | None = None) -> list[list[N]]:
    """Two groups: ``node`` alone (a random one if None) and every other node."""
    nodes = _distinct(nodes)
    if not nodes:
        raise ValueError("nodes: no node to split off")
    if node is None:
        node = (rng or random.Random()).choice(nodes)
    if node not in nodes:
        raise ValueError(f"{node!r} is not one of the nodes ({', '.join(map(str, nodes))})")
    return [[node], [n for n in nodes if n != node]]


def isolate(nodes: Sequence[N], isolated: Iterable[N]) -> list[list[N]]:
    """Each of ``isolated`` alone, in its own group, then every other node together (left out if none is left)."""
    nodes = _distinct(nodes)
    isolated = list(dict.fromkeys(isolated))
    unknown = [n for n in isolated if n not in nodes]
    if unknown:
        raise ValueError(f"{', '.join(map(str, unknown))} not among the nodes ({', '.join(map(str, nodes))})")
    rest = [n for n in nodes if n not in isolated]
    return [[n] for n in isolated] + ([rest] if rest else [])


def singletons(nodes: Sequence[N]) -> list[list[N]]:
    """Every node alone: no two nodes reach each other (no majority anywhere)."""
    return [[n] for n in _distinct(nodes)]


def complete_grudge(groups: Iterable[Iterable[N]]) -> Grudge[N]:
    """For each node, the nodes outside its group: no node reaches any node of another group (Jepsen's grudge)."""
    groups = [list(g) for g in groups]
    universe = _distinct([n for g in groups for n in g], "groups")
    grudge: Grudge[N] = {}
    for group in groups:
        members = set(group)
        for node in group:
            grudge[node] = {n for n in universe if n not in members}
    return grudge


def bridge(nodes: Sequence[N]) -> Grudge[N]:
    """``halves``, except that the first node of the second half reaches both halves and both halves reach it.

    The bridge has no grudge of its own (it is not a key), and nobody holds one against it (Jepsen's ``bridge``).
    Needs at least three nodes (two halves and a bridge that belongs to neither side alone).
    """
    nodes = _distinct(nodes)
    if len(nodes) < 3:
        raise ValueError(f"a bridge needs at least 3 nodes, got {len(nodes)}")
    groups = halves(nodes)
    middle = groups[1][0]
    return {n: others - {middle} for n, others in complete_grudge(groups).items() if n != middle}


def is_symmetric(grudge: Grudge[N]) -> bool:
    """Whether every cut goes both ways (a TCP link is either cut in both directions or not at all)."""
    return all(node in grudge.get(other, set()) for node, others in grudge.items() for other in others)


def links(grudge: Grudge[N]) -> list[tuple[N, N]]:
    """The cut links, each unordered pair once as (earlier, later) in the grudge's node order."""
    order = {n: i for i, n in enumerate(nodes_of(grudge))}
    pairs = {tuple(sorted((a, b), key=order.__getitem__)) for a, others in grudge.items() for b in others if a != b}
    return sorted(pairs, key=lambda p: (order[p[0]], order[p[1]]))  # type: ignore[return-value]


def nodes_of(grudge: Grudge[N]) -> list[N]:
    """Every node a grudge names, keys first (in order), then nodes only held grudges against."""
    seen = dict.fromkeys(grudge)
    for others in grudge.values():
        seen |= dict.fromkeys(sorted(others, key=str))  # a set has no order of its own: by name
    return list(seen)


def alone(grudge: Grudge[N], nodes: Iterable[N] | None = None) -> list[N]:
    """Nodes cut off from every other node (of ``nodes``, default: every node the grudge names), both ways."""
    universe = list(nodes) if nodes is not None else nodes_of(grudge)
    out = []
    for n in universe:
        others = [m for m in universe if m != n]
        if others and all(m in grudge.get(n, set()) and n in grudge.get(m, set()) for m in others):
            out.append(n)
    return out


def reachable(grudge: Grudge[N], nodes: Iterable[N] | None = None) -> dict[N, set[N]]:
    """For each node (of ``nodes``, default: every node the grudge names), the other nodes it reaches both ways."""
    universe = list(nodes) if nodes is not None else nodes_of(grudge)
    return {
        n: {m for m in universe if m != n and m not in grudge.get(n, set()) and n not in grudge.get(m, set())}
        for n in universe
    }
