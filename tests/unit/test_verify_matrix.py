"""The weakness matrix as data: every sandbox weakness has a flow that must catch it, and every entry (weakness
cells and the healthy list) names a registered flow with parameters that validate — a typo would otherwise show up
only as an "error" cell after half an hour of `drillbit verify`."""

from __future__ import annotations

import itertools
import os

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


# --- the matrix runner, with the flow runner and the sandbox given (no sandbox, no Prefect: the classification)


class FakeSandbox:
    def __init__(self, log: list[str], weaknesses: list[str]) -> None:
        self.log, self.name = log, ",".join(weaknesses) or "healthy"

    def __enter__(self):
        self.log.append(f"up {self.name}")
        return self

    def restart(self) -> None:
        self.log.append(f"down+up {self.name}")

    def __exit__(self, *exc):
        self.log.append(f"down --purge {self.name}")


def record(*verdicts: tuple[str, str, str]) -> dict:
    return {"verdicts": [{"criterion": c, "outcome": o, "reason": r} for c, o, r in verdicts]}


def test_each_weakness_round_gets_a_fresh_sandbox_and_the_last_healthy_round_a_second_lifetime():
    from cli.verify import run_matrix, summarize

    log: list[str] = []
    runs: list[tuple[str, str]] = []

    def run_flow(flow, params):
        runs.append((os.environ["DRILLBIT_SANDBOX_DIR"], flow))
        if log[-1].startswith("up no-write-queue"):
            return record(("writes queued, none lost", "fail", "3 of 5 writes lost"), ("alerts fired", "pass", ""))
        return record(("alerts fired", "pass", "DiskSpaceLow after 4.2 s"))

    matrix = run_matrix(
        run_flow,
        ["no-write-queue"],
        healthy_repeats=3,
        progress=lambda m: None,
        healthy_flows=["e2e"],
        sandbox=lambda w: FakeSandbox(log, w),
    )
    assert log == ["up no-write-queue", "down --purge no-write-queue"] * 3 + [
        "up healthy", "down+up healthy", "down --purge healthy"]  # fmt: skip
    assert [(c.weakness, c.result, c.round, c.lifetime) for c in matrix.cells] == [
        ("no-write-queue", "caught", 1, 1),
        ("no-write-queue", "caught", 2, 2),
        ("no-write-queue", "caught", 3, 3),
        ("(healthy)", "ok", 1, 1),
        ("(healthy)", "ok", 2, 1),
        ("(healthy)", "ok", 3, 2),
    ]
    summary = summarize(matrix)
    assert summary["ok"] and summary["caught"] == {"no-write-queue": 3} and summary["false_alarms"] == 0
    assert summary["differences"] == [] and summary["inconclusive"] == {}


def test_a_missed_round_a_false_alarm_and_an_inconclusive_catch_are_reported_with_their_reasons():
    from cli.verify import run_matrix, summarize

    log: list[str] = []
    calls = {"n": 0}

    def run_flow(flow, params):
        calls["n"] += 1
        if log[-1].startswith("up leaky-memory"):
            if calls["n"] == 1:
                return record(("node memory growth", "fail", "grew 130 MB"))
            if calls["n"] == 2:
                return record(("node memory growth", "inconclusive", "host CPU saturated: 97 % busy"))
            return record(("node memory growth", "pass", "grew 2 MB"))
        if calls["n"] == 4:
            return record(("p95 latency", "fail", "p95 0.8 s"))
        return record(("p95 latency", "inconclusive", "only 2 samples (need 5)"))

    matrix = run_matrix(
        run_flow,
        ["leaky-memory"],
        healthy_repeats=3,
        progress=lambda m: None,
        healthy_flows=["synthetic"],
        sandbox=lambda w: FakeSandbox(log, w),
    )
    assert [c.result for c in matrix.cells] == ["caught", "inconclusive", "missed", "false alarm", "ok", "ok"]
    quiet = summarize(matrix)
    assert not quiet["ok"] and quiet["caught"] == {"leaky-memory": 1} and quiet["false_alarms"] == 1
    # figures are stripped from reasons so one cause is counted once across runs
    assert quiet["inconclusive"] == {
        "p95 latency: only N samples (need N)": 2,
        "node memory growth: host CPU saturated: N % busy": 1,
    }
    assert (
        "(healthy) / synthetic: p95 latency fail in round 1, inconclusive in round 2 (sandbox lifetime 1)"
        in (quiet["differences"])
    )
    assert "leaky-memory: caught in 1 of 3 runs" in quiet["lines"]


def test_under_the_hog_an_inconclusive_catch_is_honest_but_a_passed_one_is_a_miss():
    from cli.verify import Cell, Matrix, summarize

    inconclusive = Matrix([Cell("leaky-memory", "resource-exhaustion", "caught"),
                           Cell("leaky-memory", "resource-exhaustion", "inconclusive", round=2)])  # fmt: skip
    assert summarize(inconclusive, hog=True)["ok"] and not summarize(inconclusive)["ok"]
    missed = Matrix([Cell("leaky-memory", "resource-exhaustion", "missed")])
    assert not summarize(missed, hog=True)["ok"]


def test_a_flow_that_raises_is_an_error_cell_not_a_catch():
    from cli.verify import run_matrix, summarize

    def run_flow(flow, params):
        raise RuntimeError("target not in steady state")

    matrix = run_matrix(run_flow, ["no-restart"], 0, lambda m: None, sandbox=lambda w: FakeSandbox([], w))
    assert [(c.result, c.detail) for c in matrix.cells] == [("error", "RuntimeError: target not in steady state")]
    assert not summarize(matrix)["ok"]


def test_every_data_centre_loss_in_the_healthy_round_finds_region_a_whole():
    """A data-centre loss leaves region A lost until dr-rebuild restores the sandbox: between two losses (and
    between the round's last loss and the next round's first) there is a rebuild."""
    names = [n for n, _ in HEALTHY]
    losses = [i for i, n in enumerate(names) if n == "dr-dc-loss"]
    assert len(losses) >= 2  # the power cut and the partition
    for a, b in itertools.pairwise(losses):
        assert "dr-rebuild" in names[a + 1 : b], names[a : b + 1]
    assert "dr-rebuild" in names[losses[-1] + 1 :], names[losses[-1] :]


def test_a_criterion_named_after_a_randomly_drawn_node_is_compared_across_rounds_whichever_node_was_drawn():
    from cli.verify import Cell, Matrix

    def cell(round_: int, outcomes: dict[str, str]) -> Cell:
        return Cell("no-restart", "chaos-pod-kill", "caught", "", round_, round_, [], outcomes)

    same = Matrix([cell(1, {"node-0 back within 30 s": "fail"}), cell(2, {"node-2 back within 30 s": "fail"})])
    assert same.differences() == []
    changed = Matrix(
        [
            cell(1, {"node-0 back within 30 s": "fail", "consensus continues": "fail"}),
            cell(2, {"node-1 back within 30 s": "pass", "consensus continues": "pass"}),
        ]
    )
    assert changed.differences() == [
        "no-restart / chaos-pod-kill: consensus continues fail in round 1, pass in round 2 (sandbox lifetime 2)",
        "no-restart / chaos-pod-kill: node-N back within 30 s [node-0 back within 30 s / node-1 back within 30 s] "
        "fail in round 1, pass in round 2 (sandbox lifetime 2)",
    ]
