"""The quarterly DR drill (seed: "Schedule: Quarterly DR drill"): the three DR scenarios in order (data-centre loss,
database corruption, complete rebuild) as subflows, one drill report (RTO/RPO against targets, timeline, evidence,
verdicts) stored in the results store and uploaded to the results bucket. Outside the sandbox every destructive
scenario waits for a human approval given in the Prefect UI."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import Field

from drillbit import dr
from drillbit import dr_ops as ops
from drillbit.model import Outcome, Verdict
from drillbit.store import ResultsStore
from flows.base import FlowParams, new_record
from flows.dr_common import ask_approval, reset_sandbox, s3_settings, sandbox_endpoints
from flows.dr_db_corruption import DbCorruptionParams, dr_db_corruption
from flows.dr_db_corruption import preflight as corruption_preflight
from flows.dr_dc_loss import DcLossParams, dr_dc_loss
from flows.dr_dc_loss import preflight as dc_loss_preflight
from flows.dr_rebuild import RebuildParams, dr_rebuild
from flows.dr_rebuild import preflight as rebuild_preflight
from tasks.targets import resolve_environment

Scenario = Literal["dc-loss", "db-corruption", "rebuild"]
WHAT = {
    "dc-loss": "stop region A (primary database, API, backup agent) and fail over to region B",
    "db-corruption": "corrupt the primary's data files and restore the database from backups",
    "rebuild": "tear the whole system down and rebuild it from code and backups",
}


class DrillParams(FlowParams):
    scenarios: list[Scenario] = Field(
        default_factory=lambda: ["dc-loss", "db-corruption", "rebuild"], description="Scenarios, run in this order"
    )
    dc_loss: DcLossParams = Field(default_factory=DcLossParams, description="Parameters of dr-dc-loss")
    db_corruption: DbCorruptionParams = Field(default_factory=DbCorruptionParams, description="Of dr-db-corruption")
    rebuild: RebuildParams = Field(default_factory=RebuildParams, description="Parameters of dr-rebuild")
    require_approval: bool | None = Field(
        None,
        description="Wait for a human approval in the Prefect UI before each scenario (default: outside the "
        "sandbox only)",
    )
    approval_timeout: float = Field(86_400.0, gt=0, le=7 * 86_400, description="Seconds to wait for each approval")
    results_bucket: str | None = Field(None, description="Bucket for the drill report (default: drillbit-results)")
    reset_between: bool = Field(
        False,
        description="Sandbox: a fresh sandbox before every scenario after the first (default: each scenario starts "
        "from what the previous one left, as disasters follow each other: no failback in between)",
    )


def scenario_params(params: DrillParams, name: str) -> Any:
    sub = {"dc-loss": params.dc_loss, "db-corruption": params.db_corruption, "rebuild": params.rebuild}[name]
    return sub.model_copy(
        update={"environment": params.environment, "config_path": params.config_path, "require_approval": False}
    )


def preflight_all(ep: dict[str, Any], params: DrillParams) -> dict[str, Any]:
    """Every scenario's own checks and the results bucket, before the first scenario destroys anything."""
    checks = {"dc-loss": dc_loss_preflight, "db-corruption": corruption_preflight, "rebuild": rebuild_preflight}
    out: dict[str, Any] = {}
    for name in dict.fromkeys(params.scenarios):
        out[name] = checks[name](ep, scenario_params(params, name))
    s3 = s3_settings(ep, params.results_bucket or ep["storage"]["s3"]["buckets"]["results"])
    ops.check_bucket(ops.s3_client(s3), s3["bucket"], s3["endpoint"])
    out["results_bucket"] = s3["bucket"]
    return out


@flow(name="dr-drill")
def dr_drill(params: DrillParams = DrillParams()) -> dict:
    log = get_run_logger()
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    ep = sandbox_endpoints(env, "dr-drill")
    record = new_record("dr-drill", env.name, params, scenario="quarterly")
    checks = preflight_all(ep, params)
    ask = params.require_approval if params.require_approval is not None else env.platform != "sandbox"
    runs = {"dc-loss": dr_dc_loss, "db-corruption": dr_db_corruption, "rebuild": dr_rebuild}
    approvals: list[dict[str, Any]] = []
    scenarios: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    verdicts: list[Verdict] = []
    for i, name in enumerate(params.scenarios):
        if ask:
            decision = ask_approval(name, WHAT[name], params.approval_timeout)
            approvals.append(decision)
            if not decision["approve"]:
                skipped.append({"scenario": name, "why": f"refused by {decision['approver']}"})
                verdicts.append(Verdict(name, Outcome.FAIL, f"not run: refused by {decision['approver']}"))
                continue
        try:
            if i > 0 and env.platform == "sandbox" and params.reset_between:
                t0 = time.time()
                reset_sandbox()
                log.info("fresh sandbox for %s in %.1f s", name, time.time() - t0)
            result = runs[name](params=scenario_params(params, name))
        except Exception as exc:  # a scenario that errors is a failed scenario; the drill goes on and reports it
            log.error("%s errored: %s", name, exc)
            skipped.append({"scenario": name, "why": f"{exc.__class__.__name__}: {exc}"})
            verdicts.append(Verdict(name, Outcome.FAIL, f"errored: {exc.__class__.__name__}: {exc}"[:500]))
            continue
        scenarios.append(result)
        verdicts.append(scenario_verdict(name, result))
    record.finish(verdicts)
    drill = {
        "run_id": record.run_id,
        "environment": env.name,
        "outcome": record.outcome,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "preflight": checks,
        "approvals": approvals,
        "order": list(params.scenarios),
        "scenarios": scenarios,
        "skipped": skipped,
    }
    report = dr.drill_report(drill)
    record.metrics = {"drill": [dr.scenario_summary(s) for s in scenarios], "approvals": approvals}
    record.artifacts["report_s3"] = upload_report(ep, params, record.run_id, report, drill)
    ResultsStore().save(record)
    create_markdown_artifact(report, key="dr-drill-report", description="Quarterly DR drill report")
    log.info("DR drill %s: report at %s", record.outcome.upper(), record.artifacts["report_s3"])
    return record.to_dict() | {"report": report}


def scenario_verdict(name: str, result: dict[str, Any]) -> Verdict:
    s = dr.scenario_summary(result)
    failed = [v["criterion"] for v in result.get("verdicts", []) if v["outcome"] != "pass" and v.get("required", True)]
    reason = f"{result['outcome']}: RTO {s['rto_s']} s, RPO {s['rpo_s']} s" + (
        f"; not met: {', '.join(failed)}" if failed else ""
    )
    outcome = Outcome(result["outcome"]) if result["outcome"] in ("pass", "fail", "inconclusive") else Outcome.FAIL
    return Verdict(name, outcome, reason, {k: s[k] for k in ("run_id", "rto_s", "rpo_s", "lost_writes")})


def upload_report(ep: dict[str, Any], params: DrillParams, run_id: str, report: str, drill: dict[str, Any]) -> str:
    s3 = s3_settings(ep, params.results_bucket or ep["storage"]["s3"]["buckets"]["results"])
    client = ops.s3_client(s3)
    prefix = f"dr-drill/{datetime.now(UTC):%Y-%m-%d}/{run_id}"
    ops.upload(
        client, s3["bucket"], f"{prefix}/drill.json", json.dumps(drill, default=str).encode(), "application/json"
    )
    return ops.upload(client, s3["bucket"], f"{prefix}/report.md", report.encode(), "text/markdown")
