"""The core experiment runner with its steps called directly (no Prefect): phase order, hooks, the revert in every
path, aborts, the dry run. The fault is a real one of the smallest kind: a marker file, recorded in the ledger with
its undo (the ``file`` driver) and a reaper, that a probe reads as "the service is degraded"."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from drillbit import criteria, runner
from drillbit.faults.base import Fault, Plan
from drillbit.faults.ledger import Handle, Ledger
from drillbit.monitor import monitor
from drillbit.params import ExperimentParams
from drillbit.probes import CheckFailed


class MarkerFault(Fault):
    kind = "marker"

    def __init__(self, path: Path) -> None:
        self.path = path

    def plan(self) -> Plan:
        return Plan(self.kind, [self.path.name], {"path": str(self.path)})

    def undo_steps(self, plan: Plan) -> list[dict[str, Any]]:
        return [{"driver": "file", "path": str(self.path)}]

    def apply(self, plan: Plan, handle: Handle) -> None:
        self.path.write_text("degraded")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRILLBIT_HOME", str(tmp_path / "home"))
    return tmp_path


def environment() -> Any:
    endpoints = SimpleNamespace(alertmanager=None, pager=None)
    return SimpleNamespace(
        name="unit", endpoints=endpoints, spec=SimpleNamespace(safety=SimpleNamespace(abort_availability=0.5))
    )


def experiment(home: Path, **kw: Any) -> tuple[runner.Experiment, list[str]]:
    marker = home / "marker"
    calls: list[str] = []

    def service() -> float:
        if marker.exists():
            raise CheckFailed("degraded")
        return 1.0

    def crits(_detail: dict[str, Any]) -> list:
        return [criteria.availability("recovered", "service", 1.0, phase="recovery")]

    params = kw.pop("params", ExperimentParams(duration=0.3, baseline=0.2, recovery=0.3, interval=0.05))
    hooks = {
        h: (lambda r, h=h: calls.append(f"{h}:{r.timeline.phases[-1][0]}"))
        for h in ("before_inject", "after_revert", "collect", "finish")
    }
    hooks.update(kw)
    exp = runner.Experiment(
        "unit", environment(), params, MarkerFault(marker), [monitor("service", 0.05, service)], crits, **hooks
    )
    return exp, calls


def test_phases_and_hooks_run_in_order_and_the_fault_is_reverted(home):
    exp, calls = experiment(home)
    out = runner.run(exp)
    assert calls == ["before_inject:baseline", "after_revert:recovery", "collect:recovery", "finish:recovery"]
    kinds = [e["kind"] for e in out["events"]]
    assert kinds.index("inject") < kinds.index("injected") < kinds.index("revert")
    assert not (home / "marker").exists() and Ledger().pending() == []
    (verdict,) = out["verdicts"]
    assert verdict["criterion"] == "recovered" and verdict["outcome"] == "pass", verdict
    assert out["outcome"] == "pass"


def test_a_failing_hook_during_the_fault_still_reverts_it(home):
    def boom(r: runner.Run) -> None:
        assert (home / "marker").exists(), "the fault is in place while the procedure runs"
        raise RuntimeError("procedure failed")

    exp, _calls = experiment(home, during=boom)
    with pytest.raises(RuntimeError, match="procedure failed"):
        runner.run(exp)
    assert not (home / "marker").exists() and Ledger().pending() == []


def test_an_unhealthy_target_is_refused_before_anything_is_injected(home):
    (home / "marker").write_text("already broken")
    exp, calls = experiment(home)
    with pytest.raises(runner.UnhealthyTarget, match="refusing to inject: service: CheckFailed: degraded"):
        runner.run(exp)
    assert calls == [] and Ledger().pending() == []


def test_an_abort_ends_the_fault_and_fails_the_run(home):
    params = ExperimentParams(duration=30.0, baseline=0.2, recovery=0.2, interval=0.05, abort_below=0.9)
    exp, _calls = experiment(home, params=params)
    exp.guarded_probes = ["service"]
    out = runner.run(exp)
    assert out["status"] == "aborted"
    aborted = [v for v in out["verdicts"] if v["criterion"] == "not aborted"]
    assert aborted and aborted[0]["outcome"] == "fail" and "service availability" in aborted[0]["reason"]
    assert not (home / "marker").exists() and Ledger().pending() == []


def test_a_dry_run_plans_and_injects_nothing(home):
    params = ExperimentParams(duration=30.0, dry_run=True)
    exp, calls = experiment(home, params=params)
    out = runner.run(exp)
    assert out["status"] == "dry-run" and calls == []
    assert out["metrics"]["plan"].startswith("marker on marker") and out["metrics"]["criteria"] == [
        "recovered: availability ≥ 100.00%"
    ]
    assert not (home / "marker").exists() and Ledger().pending() == []
