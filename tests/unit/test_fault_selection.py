import random

import pytest

from drillbit.faults.base import FaultError
from drillbit.faults.targets import select_targets

COMPONENTS = {
    f"node-{i}": {"labels": {"app.kubernetes.io/name": "virtengine-node", "app.kubernetes.io/component": "blockchain"}}
    for i in range(3)
} | {"api": {"labels": {"app.kubernetes.io/name": "virtengine-api"}}}
NODE = {"app.kubernetes.io/name": "virtengine-node"}


def test_modes_pick_the_right_number_of_matching_targets():
    rng = random.Random(1)
    assert len(select_targets(COMPONENTS, NODE, "one", rng=rng)) == 1
    assert select_targets(COMPONENTS, NODE, "all", full_outage=True) == ["node-0", "node-1", "node-2"]
    assert len(select_targets(COMPONENTS, NODE, "fixed", 2)) == 2
    assert len(select_targets(COMPONENTS, NODE, "fixed-percent", 50)) == 1  # floor(3 * 0.5), at least one
    assert all(t.startswith("node-") for t in select_targets(COMPONENTS, NODE, "all", full_outage=True))


@pytest.mark.parametrize(
    ("selector", "mode", "value", "message"),
    [
        ({}, "one", None, "selector is empty"),
        ({"app": "virtengine-node"}, "one", None, "matches no component"),
        (NODE, "fixed", 0, "whole number"),
        (NODE, "fixed", 4, "matches only 3"),
        (NODE, "fixed-percent", 150, "(0, 100]"),
        (NODE, "sometimes", None, "unknown mode"),
    ],
)
def test_bad_selection_is_a_clear_error(selector, mode, value, message):
    with pytest.raises(FaultError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        select_targets(COMPONENTS, selector, mode, value)


def test_blast_radius_limits_are_enforced():
    with pytest.raises(FaultError, match="max_targets=1"):
        select_targets(COMPONENTS, NODE, "all", max_targets=1)
    with pytest.raises(FaultError, match="max_percent=34"):
        select_targets(COMPONENTS, NODE, "fixed", 2, max_percent=34)
    assert len(select_targets(COMPONENTS, NODE, "one", max_targets=1, max_percent=34)) == 1
