"""The quarterly DR drill (seed: "Schedule: Quarterly DR drill"): the three DR scenarios in order (data-centre loss,
database corruption, complete rebuild) as subflows, one drill report stored in the results store and uploaded to the
results bucket. Outside the sandbox every destructive scenario waits for a human approval given in the Prefect UI.
The drill's core (parameters, preflight, approvals, report) lives in ``drillbit.scenarios.dr.drill``."""

from __future__ import annotations

from prefect import flow

from drillbit.scenarios.dr.drill import Drill, DrillParams, scenario_params
from flows.dr_db_corruption import dr_db_corruption
from flows.dr_dc_loss import dr_dc_loss
from flows.dr_rebuild import dr_rebuild
from tasks.runner import PrefectPhases
from tasks.targets import resolve_environment

__all__ = ["DrillParams", "dr_drill"]

RUNS = {"dc-loss": dr_dc_loss, "db-corruption": dr_db_corruption, "rebuild": dr_rebuild}


@flow(name="dr-drill")
def dr_drill(params: DrillParams = DrillParams()) -> dict:
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    drill = Drill.begin(env, params, PrefectPhases())
    for i, name in enumerate(params.scenarios):
        if not drill.approved(name):
            continue
        try:
            drill.prepare(i, name)
            result = RUNS[name](params=scenario_params(params, name))
        except Exception as exc:  # a scenario that errors is a failed scenario; the drill goes on and reports it
            drill.errored(name, exc)
            continue
        drill.ran(name, result)
    return drill.finish()
