"""The flow catalogue: every flow Drillbit can run, as data.

Each entry names a flow (kebab-case: the name in the CLI, the Prefect UI and the calendar), its test type, what it
tests in one line, its parameter model (``"module:Class"`` in the core's scenarios) and its Prefect entrypoint
(``"flows/<module>.py:<function>"``, as prefect.yaml names it). Reading the catalogue imports nothing heavy:
``params_model`` imports one scenario module when asked, and only ``flows.registry`` imports the flows themselves.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

TEST_TYPES = ("synthetic", "e2e", "load", "chaos", "failure-mode", "dr", "gameday")


@dataclass(frozen=True)
class FlowSpec:
    """One flow of the catalogue."""

    name: str
    test_type: str
    description: str
    params: str  # "package.module:ParamsClass"
    entrypoint: str  # "flows/module.py:function"

    @property
    def module(self) -> str:
        """The flow's Python module (``flows.chaos_pod_kill``)."""
        return self.entrypoint.partition(":")[0].removesuffix(".py").replace("/", ".")

    @property
    def function(self) -> str:
        """The name of the ``@flow`` function in that module."""
        return self.entrypoint.partition(":")[2]


_S = "drillbit.scenarios"
_LOAD = f"{_S}.load"

# in the order `drillbit list` shows them (the calendar's order of test types)
CATALOG: tuple[FlowSpec, ...] = (
    FlowSpec(
        "synthetic",
        "synthetic",
        "Synthetic monitoring: the seed's three checks (plus a chain query), graded against VirtEngine's SLOs.",
        f"{_S}.synthetic:SyntheticParams",
        "flows/synthetic.py:synthetic",
    ),
    FlowSpec(
        "e2e",
        "e2e",
        "End-to-end deployment lifecycle: the seed's seven steps, each a task with its own timing and verdict.",
        f"{_S}.e2e:E2EParams",
        "flows/e2e.py:e2e",
    ),
    FlowSpec(
        "load-smoke",
        "load",
        "Smoke: 10 % of production load, 5 TPS for 5 min",
        f"{_LOAD}:SmokeParams",
        "flows/load.py:load_smoke",
    ),
    FlowSpec(
        "load",
        "load",
        "Load: 100 % of production load, 50 TPS for 30 min",
        f"{_LOAD}:LoadLevelParams",
        "flows/load.py:load",
    ),
    FlowSpec(
        "stress", "load", "Stress: 200 % load, 100 TPS for 10 min", f"{_LOAD}:StressParams", "flows/load.py:stress"
    ),
    FlowSpec("soak", "load", "Soak: 50 TPS for 2 h (leaks, drift)", f"{_LOAD}:SoakParams", "flows/load.py:soak"),
    FlowSpec(
        "sustained",
        "load",
        "Sustained 50 TPS for 1 hour (RELIABILITY_TESTING: TestSustainedLoadReliability)",
        f"{_LOAD}:SustainedParams",
        "flows/load.py:sustained",
    ),
    FlowSpec(
        "burst",
        "load",
        "Burst to 100 TPS for 5 minutes (TestBurstLoadReliability)",
        f"{_LOAD}:BurstParams",
        "flows/load.py:burst",
    ),
    FlowSpec(
        "deployments",
        "load",
        "50 concurrent deployments for 30 min: provisioning p95 < 300 s, success > 99 %",
        f"{_LOAD}:DeploymentsParams",
        "flows/load.py:deployments",
    ),
    FlowSpec(
        "breaking-point",
        "load",
        "Stepped ramp until the budgets are first violated (stress: 150-200 % of production load)",
        f"{_LOAD}:BreakingPointParams",
        "flows/load.py:breaking_point",
    ),
    FlowSpec(
        "perf-regression",
        "load",
        "Performance regression: a load run against the stored baseline of the same scenario; fails on a significant "
        "slowdown (one-sided Mann-Whitney U on per-second ...",
        f"{_S}.perf_regression:PerfRegressionParams",
        "flows/perf_regression.py:perf_regression",
    ),
    FlowSpec(
        "chaos-pod-kill",
        "chaos",
        "Chaos: random pod termination. Hypothesis: the system handles pod failures gracefully (seed experiment 1).",
        f"{_S}.chaos.pod_kill:PodKillParams",
        "flows/chaos_pod_kill.py:chaos_pod_kill",
    ),
    FlowSpec(
        "chaos-network-latency",
        "chaos",
        "Chaos: network latency on the provider's link to the chain. Hypothesis: the system tolerates increased "
        "network latency (seed experiment 2: 100 ms, 10 ms ...",
        f"{_S}.chaos.network_latency:NetworkLatencyParams",
        "flows/chaos_network_latency.py:chaos_network_latency",
    ),
    FlowSpec(
        "chaos-disk-pressure",
        "chaos",
        "Chaos: disk pressure on a validator's data volume. Hypothesis: the system handles disk pressure gracefully "
        "(seed experiment 3: 4 workers, 1 GB): the ...",
        f"{_S}.chaos.disk_pressure:DiskPressureParams",
        "flows/chaos_disk_pressure.py:chaos_disk_pressure",
    ),
    FlowSpec(
        "chaos-db-failure",
        "chaos",
        "Chaos: database failure. Hypothesis: the system handles a database outage with a degraded mode (seed "
        "experiment 4): the API serves cached reads, queues ...",
        f"{_S}.chaos.database_failure:DbFailureParams",
        "flows/chaos_db_failure.py:chaos_db_failure",
    ),
    FlowSpec(
        "cascading-failure",
        "failure-mode",
        "Failure mode: cascading failure. Hypothesis: overloading the provider's bid engine trips its circuit "
        "breaker, rejected requests fail fast, the API and the ...",
        f"{_S}.failure.circuit_breaker:CascadingFailureParams",
        "flows/failure_cascading.py:cascading_failure",
    ),
    FlowSpec(
        "split-brain",
        "failure-mode",
        "Failure mode: split brain. Hypothesis: a partition of the validator network never forks the chain or loses "
        "an acknowledged transaction: a majority keeps ...",
        f"{_S}.failure.split_brain:SplitBrainParams",
        "flows/failure_split_brain.py:split_brain",
    ),
    FlowSpec(
        "resource-exhaustion",
        "failure-mode",
        "Failure mode: resource exhaustion. Hypothesis: memory pressure on a validator node raises the high-memory "
        "alert, degrades gracefully (clients mostly still ...",
        f"{_S}.failure.resource_exhaustion:ResourceExhaustionParams",
        "flows/failure_resource_exhaustion.py:resource_exhaustion",
    ),
    FlowSpec(
        "dr-dc-loss",
        "dr",
        "DR: complete data-centre loss (seed DR scenario 1). Region A (the primary database and the services using "
        "it) dies at once; the drill fails over to region B ...",
        f"{_S}.dr.dc_loss:DcLossParams",
        "flows/dr_dc_loss.py:dr_dc_loss",
    ),
    FlowSpec(
        "dr-db-corruption",
        "dr",
        "DR: database corruption (seed DR scenario 2). The primary goes down and its storage returns garbage for the "
        "``records`` table (heap and index pages ...",
        f"{_S}.dr.db_corruption:DbCorruptionParams",
        "flows/dr_db_corruption.py:dr_db_corruption",
    ),
    FlowSpec(
        "dr-rebuild",
        "dr",
        "DR: complete system rebuild (seed DR scenario 3). From blank infrastructure (the sandbox torn down: every "
        "process and all data gone except the object ...",
        f"{_S}.dr.rebuild:RebuildParams",
        "flows/dr_rebuild.py:dr_rebuild",
    ),
    FlowSpec(
        "dr-drill",
        "dr",
        'The quarterly DR drill (seed: "Schedule: Quarterly DR drill"): the three DR scenarios in order (data-centre '
        "loss, database corruption, complete rebuild) as ...",
        f"{_S}.dr.drill:DrillParams",
        "flows/dr_drill.py:dr_drill",
    ),
    FlowSpec(
        "gameday",
        "gameday",
        "Gameday: a practice incident. The flow injects the scenario, records one timeline from machine events "
        "(injection, alerts firing, pages, recovery) and from ...",
        f"{_S}.gameday:GamedayParams",
        "flows/gameday.py:gameday",
    ),
)
BY_NAME: dict[str, FlowSpec] = {spec.name: spec for spec in CATALOG}


class UnknownFlow(KeyError):
    """A flow name the catalogue does not hold."""

    def __str__(self) -> str:
        return f"unknown flow {self.args[0]!r}; known: {', '.join(names())}"


def names() -> list[str]:
    """Every flow name, in catalogue order."""
    return [spec.name for spec in CATALOG]


def get(name: str) -> FlowSpec:
    """The catalogue entry of a flow; ``UnknownFlow`` for a name it does not hold."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownFlow(name) from None


def params_model(name: str) -> type[BaseModel]:
    """The pydantic model of the flow's ``params`` (imports its scenario module, not the flow)."""
    module, _, cls = get(name).params.partition(":")
    return getattr(importlib.import_module(module), cls)
