"""Every flow by its kebab-case name: the same names in the CLI, the Prefect UI and the calendar."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from flows.chaos_db_failure import chaos_db_failure
from flows.chaos_disk_pressure import chaos_disk_pressure
from flows.chaos_network_latency import chaos_network_latency
from flows.chaos_pod_kill import chaos_pod_kill
from flows.dr_db_corruption import dr_db_corruption
from flows.dr_dc_loss import dr_dc_loss
from flows.dr_drill import dr_drill
from flows.dr_rebuild import dr_rebuild
from flows.e2e import e2e
from flows.failure_cascading import cascading_failure
from flows.failure_resource_exhaustion import resource_exhaustion
from flows.failure_split_brain import split_brain
from flows.gameday import gameday
from flows.load import breaking_point, burst, deployments, load, load_smoke, soak, stress, sustained
from flows.perf_regression import perf_regression
from flows.synthetic import synthetic

ALL = (
    synthetic,
    e2e,
    load_smoke,
    load,
    stress,
    soak,
    sustained,
    burst,
    deployments,
    breaking_point,
    perf_regression,
    chaos_pod_kill,
    chaos_network_latency,
    chaos_disk_pressure,
    chaos_db_failure,
    cascading_failure,
    split_brain,
    resource_exhaustion,
    dr_dc_loss,
    dr_db_corruption,
    dr_rebuild,
    dr_drill,
    gameday,
)
FLOWS = {f.name: f for f in ALL}


def params_model(flow: Any) -> type[BaseModel]:
    """The pydantic model of a flow's ``params`` argument."""
    ann = inspect.signature(flow.fn).parameters["params"].annotation
    if isinstance(ann, str):  # from __future__ annotations
        ann = flow.fn.__globals__[ann]
    return ann


def describe(flow: Any) -> str:
    """The flow's own description (several flows share a module), else its module's first docstring line."""
    text = getattr(flow, "description", None) or inspect.getdoc(inspect.getmodule(flow.fn)) or ""
    first = " ".join(text.strip().split("\n\n")[0].split())
    return first if len(first) <= 160 else first[:157].rsplit(" ", 1)[0] + " ..."
