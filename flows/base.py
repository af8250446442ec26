"""What every flow shares: the parameter base model and the run-record bookkeeping."""

from __future__ import annotations

import time

from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from drillbit.model import RunRecord


class FlowParams(BaseModel):
    """Parameters every flow takes (shown as a form in the Prefect UI)."""

    model_config = ConfigDict(extra="forbid")

    environment: str | None = Field(
        None, description="Environment from drillbit.yaml (default: its default, the sandbox)"
    )
    config_path: str | None = Field(
        None, description="Path to drillbit.yaml (default: $DRILLBIT_CONFIG or ./drillbit.yaml)"
    )


def new_record(flow: str, env_name: str, params: BaseModel, scenario: str = "") -> RunRecord:
    record = RunRecord(
        flow=flow, environment=env_name, parameters=params.model_dump(mode="json"), started_at=time.time()
    )
    record.scenario = scenario
    try:
        record.flow_run_id = str(flow_run.id) if flow_run.id else None
    except Exception:
        record.flow_run_id = None
    return record
