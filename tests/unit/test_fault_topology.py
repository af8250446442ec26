"""Partition topologies (``drillbit.faults.topology``) as pure functions, and the two mechanisms taking their groups
from them: the sandbox's nftables rules and the Chaos Mesh NetworkChaos manifests. Nothing is started or applied."""

from __future__ import annotations

import random

import pytest

from drillbit.faults import topology
from drillbit.faults.errors import FaultError
from drillbit.faults.partition import POD_NAME_LABEL, Partition, grudge_rules, partition_manifests, partition_rules
from drillbit.faults.platform import chaosmesh

NAMES = ["etcd-0", "etcd-1", "etcd-2"]
MEMBERS = [  # as in endpoints.json: one uid per member, one loopback address each, the same peer port
    {"name": f"etcd-{i}", "uid": 64000 + i, "peer_host": f"127.0.0.{i + 2}", "peer_port": 54980} for i in range(3)
]
PODS = [f"virtengine-node-{i}" for i in range(5)]
NODE = {"app.kubernetes.io/name": "virtengine-node"}


# ------------------------------------------------------------------------------------------------ groups


def test_halves_puts_the_smaller_half_first_as_jepsens_bisect():
    assert topology.halves([]) == [[], []]
    assert topology.halves([1]) == [[], [1]]
    assert topology.halves([1, 2, 3, 4]) == [[1, 2], [3, 4]]
    assert topology.halves([1, 2, 3, 4, 5]) == [[1, 2], [3, 4, 5]]


def test_split_one_cuts_the_named_node_or_a_random_one_off():
    assert topology.split_one(NAMES, "etcd-1") == [["etcd-1"], ["etcd-0", "etcd-2"]]
    (alone,), rest = topology.split_one(NAMES, rng=random.Random(7))
    assert alone in NAMES and sorted([alone, *rest]) == NAMES
    with pytest.raises(ValueError, match="not one of the nodes"):
        topology.split_one(NAMES, "etcd-9")
    with pytest.raises(ValueError, match="no node"):
        topology.split_one([])


def test_isolate_and_singletons():
    assert topology.isolate(NAMES, ["etcd-2", "etcd-2"]) == [["etcd-2"], ["etcd-0", "etcd-1"]]
    assert topology.isolate(NAMES, ["etcd-1", "etcd-2"]) == [["etcd-1"], ["etcd-2"], ["etcd-0"]]
    assert topology.isolate(NAMES, NAMES) == topology.singletons(NAMES) == [["etcd-0"], ["etcd-1"], ["etcd-2"]]
    with pytest.raises(ValueError, match="etcd-9 not among the nodes"):
        topology.isolate(NAMES, ["etcd-9"])
    with pytest.raises(ValueError, match="more than once"):
        topology.singletons(["a", "a"])


# ------------------------------------------------------------------------------------------------ grudges


def test_complete_grudge_is_jepsens():
    assert topology.complete_grudge(topology.halves([1, 2, 3, 4, 5])) == {
        1: {3, 4, 5},
        2: {3, 4, 5},
        3: {1, 2},
        4: {1, 2},
        5: {1, 2},
    }
    assert topology.complete_grudge([NAMES]) == {n: set() for n in NAMES}  # one group: nothing cut
    with pytest.raises(ValueError, match="more than once"):
        topology.complete_grudge([["a", "b"], ["b"]])


def test_bridge_keeps_one_node_in_touch_with_both_halves():
    assert topology.bridge([1, 2, 3, 4, 5]) == {1: {4, 5}, 2: {4, 5}, 4: {1, 2}, 5: {1, 2}}
    with pytest.raises(ValueError, match="at least 3"):
        topology.bridge([1, 2])


def test_links_alone_reachable_and_symmetry():
    grudge = topology.complete_grudge(topology.split_one(NAMES, "etcd-2"))
    assert topology.links(grudge) == [("etcd-2", "etcd-0"), ("etcd-2", "etcd-1")]
    assert topology.alone(grudge) == ["etcd-2"]
    assert topology.reachable(grudge, NAMES) == {"etcd-0": {"etcd-1"}, "etcd-1": {"etcd-0"}, "etcd-2": set()}
    assert topology.is_symmetric(grudge) and topology.is_symmetric(topology.bridge(PODS))
    assert not topology.is_symmetric({"a": {"b"}, "b": set()})

    everyone = topology.complete_grudge(topology.singletons(NAMES))
    assert len(topology.links(everyone)) == 3 and topology.alone(everyone) == NAMES

    bridged = topology.bridge([1, 2, 3, 4, 5])
    assert topology.alone(bridged, [1, 2, 3, 4, 5]) == []
    assert topology.reachable(bridged, [1, 2, 3, 4, 5])[3] == {1, 2, 4, 5}, "the bridge reaches everyone"
    assert topology.links(bridged) == [(1, 4), (1, 5), (2, 4), (2, 5)]


# ------------------------------------------------------------------------------------------------ sandbox mechanism


def rules_of(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().endswith("drop")]


def test_the_sandbox_partition_takes_its_cut_from_the_topology():
    fault = Partition(MEMBERS, ["etcd-2"])
    assert fault.cut() == topology.complete_grudge(topology.split_one(NAMES, "etcd-2"))
    assert grudge_rules("t", MEMBERS, fault.cut()) == partition_rules("t", MEMBERS[2:]), "the same two rules as ever"

    no_majority = Partition(MEMBERS, ["etcd-1", "etcd-2"]).cut()
    assert no_majority == topology.complete_grudge(topology.singletons(NAMES))
    assert grudge_rules("t", MEMBERS, no_majority) == partition_rules("t", MEMBERS[1:]), "etcd-0 is left alone"

    groups = Partition.from_groups(MEMBERS, topology.split_one(NAMES, "etcd-0"))
    assert groups.cut() == topology.complete_grudge([["etcd-0"], ["etcd-1", "etcd-2"]])


def test_links_that_do_not_isolate_a_member_are_cut_pairwise_both_ways():
    members = [{"name": f"m{i}", "uid": 100 + i, "peer_host": f"127.0.1.{i}", "peer_port": 2380} for i in range(5)]
    names = [m["name"] for m in members]
    rules = rules_of(grudge_rules("t", members, topology.complete_grudge(topology.halves(names))))
    assert len(rules) == 2 * 2 * 3  # every link between the halves, each direction
    assert 'oifname "lo" meta skuid 100 ip daddr 127.0.1.3 tcp dport 2380 drop' in rules
    assert 'oifname "lo" meta skuid 103 ip daddr 127.0.1.0 tcp dport 2380 drop' in rules
    assert not any("skuid 100 ip daddr 127.0.1.1 " in r for r in rules), "m0 and m1 are on the same side"

    bridged = rules_of(grudge_rules("t", members, topology.bridge(names)))
    assert len(bridged) == 8 and not any("skuid 102 " in r or "127.0.1.2 " in r for r in bridged), "m2 is the bridge"


def test_a_member_alone_among_several_peer_ports_blocks_them_all():
    members = [{**m, "peer_port": 54980 + i} for i, m in enumerate(MEMBERS)]
    rules = rules_of(grudge_rules("t", members, topology.complete_grudge(topology.split_one(NAMES, "etcd-0"))))
    assert rules == [
        'oifname "lo" meta skuid 64000 tcp dport { 54981, 54982 } drop',
        'oifname "lo" ip daddr 127.0.0.2 tcp dport 54980 drop',
    ]


# ------------------------------------------------------------------------------------------------ Chaos Mesh mechanism


def pod_names(selector: dict) -> list[str]:
    (expr,) = [e for e in selector["expressionSelectors"] if e["key"] == POD_NAME_LABEL]
    assert expr["operator"] == "In"
    return expr["values"]


def test_chaos_mesh_manifests_take_their_groups_from_the_topology():
    one = partition_manifests(
        topology.complete_grudge(topology.split_one(PODS, "virtengine-node-4")),
        namespace="virtengine",
        labels=NODE,
        run_id="r1",
    )
    assert len(one) == 1
    spec = one[0]["spec"]
    assert spec["action"] == "partition" and spec["direction"] == "both" and spec["mode"] == "all"
    assert spec["selector"]["labelSelectors"] == NODE and pod_names(spec["selector"]) == ["virtengine-node-4"]
    assert pod_names(spec["target"]["selector"]) == PODS[:4] and spec["target"]["mode"] == "all"

    halves = partition_manifests(
        topology.complete_grudge(topology.halves(PODS)), namespace="virtengine", labels=NODE, run_id="r1"
    )
    assert [(pod_names(m["spec"]["selector"]), pod_names(m["spec"]["target"]["selector"])) for m in halves] == [
        (PODS[:2], PODS[2:])
    ]

    alone = partition_manifests(
        topology.complete_grudge(topology.singletons(PODS[:3])), namespace="virtengine", labels=NODE, run_id="r1"
    )
    cut = {
        (a, b)
        for m in alone
        for a in pod_names(m["spec"]["selector"])
        for b in pod_names(m["spec"]["target"]["selector"])
    }
    assert len(alone) == 2 and cut == set(topology.links(topology.complete_grudge(topology.singletons(PODS[:3]))))

    bridged = partition_manifests(topology.bridge(PODS), namespace="virtengine", labels=NODE, run_id="r1")
    assert [(pod_names(m["spec"]["selector"]), pod_names(m["spec"]["target"]["selector"])) for m in bridged] == [
        (PODS[:2], PODS[3:])
    ]
    for manifest in [*one, *halves, *alone, *bridged]:
        assert chaosmesh.validate(manifest) is manifest
    assert len({m["metadata"]["name"] for m in [*one, *halves, *alone, *bridged]}) == 5


def test_chaos_mesh_manifests_refuse_what_a_partition_cannot_do():
    with pytest.raises(FaultError, match="not symmetric"):
        partition_manifests({"a": {"b"}, "b": set()}, namespace="virtengine", labels=NODE, run_id="r1")
    with pytest.raises(FaultError, match="cuts no link"):
        partition_manifests(topology.complete_grudge([PODS]), namespace="virtengine", labels=NODE, run_id="r1")
