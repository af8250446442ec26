"""The weakness matrix as data: every sandbox weakness has a flow that must catch it, and every entry (weakness
cells and the healthy list) names a registered flow with parameters that validate — a typo would otherwise show up
only as an "error" cell after half an hour of `drillbit verify`."""

from __future__ import annotations

import pytest
from vesandbox.weaknesses import WEAKNESSES

from cli.common import build_params
from cli.verify import HEALTHY, MATRIX
from drillbit import catalog


def test_every_sandbox_weakness_has_a_flow_that_must_catch_it():
    assert set(MATRIX) == set(WEAKNESSES)
    assert all(MATRIX[w] for w in MATRIX)


ENTRIES = [(f"{w}:{c.flow}", c.flow, c.parameters) for w, cs in MATRIX.items() for c in cs] + [
    (f"healthy:{name}", name, params) for name, params in HEALTHY
]


@pytest.mark.parametrize(("cell", "flow", "params"), ENTRIES, ids=[e[0] for e in ENTRIES])
def test_each_cell_names_a_flow_and_valid_parameters(cell, flow, params):
    flows = catalog.names()
    assert flow in flows, f"{cell}: no flow named {flow}"
    model = build_params(flow, params, None, None)
    assert model.model_dump(include=set(params)) == params


def test_the_healthy_list_covers_every_test_type_but_the_long_load_scenarios():
    names = {n for n, _ in HEALTHY}
    long_load = {"load", "stress", "soak", "sustained", "burst", "deployments", "breaking-point", "perf-regression"}
    expected = {n for n in catalog.names() if n.removeprefix("load-") not in long_load}
    assert names == expected - {"dr-drill"}  # the drill is the three DR scenarios, which run one by one
