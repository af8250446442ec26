"""The parameters every flow takes, and those every experiment takes (pydantic models, shown as forms in the Prefect
UI; the CLI's ``--set key=value`` fills the same models). Each scenario's own parameters extend these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FlowParams(BaseModel):
    """Parameters every flow takes."""

    model_config = ConfigDict(extra="forbid")

    environment: str | None = Field(
        None, description="Environment from drillbit.yaml (default: its default, the sandbox)"
    )
    config_path: str | None = Field(
        None, description="Path to drillbit.yaml (default: $DRILLBIT_CONFIG or ./drillbit.yaml)"
    )


class ExperimentParams(FlowParams):
    """Parameters of every experiment (chaos, failure modes): how long each phase lasts and when to abort."""

    duration: float = Field(60.0, gt=0, le=86_400, description="Seconds the fault stays in place")
    baseline: float = Field(10.0, ge=0, le=3600, description="Seconds observed before the fault")
    recovery: float = Field(30.0, ge=0, le=3600, description="Seconds observed after reverting")
    interval: float = Field(1.0, gt=0, le=60, description="Seconds between probe checks")
    abort_below: float | None = Field(
        None, ge=0, le=1, description="Abort when availability falls below this (default: safety.abort_availability)"
    )
    dry_run: bool = Field(False, description="Print the plan (targets, fault, criteria); inject nothing")
