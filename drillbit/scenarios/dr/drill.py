"""The quarterly DR drill's core (seed: "Schedule: Quarterly DR drill"): its parameters (each scenario's own, in
order), every scenario's preflight before the first destroys anything, a human approval per scenario outside the
sandbox, one verdict per scenario, and the drill report (RTO/RPO against targets, timeline, evidence, verdicts)
stored in the results store and uploaded to the results bucket. The scenarios themselves run as subflows of the
``dr-drill`` flow; ``Drill`` keeps the account of what they did."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from drillbit.config import ResolvedEnvironment
from drillbit.model import Outcome, RunRecord, Verdict
from drillbit.params import FlowParams
from drillbit.runner import Phases, new_record
from drillbit.scenarios.dr import db_corruption, dc_loss, rebuild
from drillbit.scenarios.dr import objectives as dr
from drillbit.scenarios.dr import operations as ops
from drillbit.scenarios.dr.db_corruption import DbCorruptionParams
from drillbit.scenarios.dr.dc_loss import DcLossParams
from drillbit.scenarios.dr.harness import approval_needed, ask_approval, reset_sandbox, sandbox_endpoints
from drillbit.scenarios.dr.rebuild import RebuildParams
from drillbit.store import ResultsStore

Scenario = Literal["dc-loss", "db-corruption", "rebuild"]
WHAT = {
    "dc-loss": "stop region A (primary database, API, backup agent) and fail over to region B",
    "db-corruption": "corrupt the primary's data files and restore the database from backups",
    "rebuild": "tear the whole system down and rebuild it from code and backups",
}
PREFLIGHT = {"dc-loss": dc_loss.preflight, "db-corruption": db_corruption.preflight, "rebuild": rebuild.preflight}


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
    """One scenario's parameters as the drill runs it: its target, and no approval of its own (the drill asks)."""
    sub = {"dc-loss": params.dc_loss, "db-corruption": params.db_corruption, "rebuild": params.rebuild}[name]
    return sub.model_copy(
        update={"environment": params.environment, "config_path": params.config_path, "require_approval": False}
    )


def preflight_all(ep: dict[str, Any], params: DrillParams) -> dict[str, Any]:
    """Every scenario's own checks and the results bucket, before the first scenario destroys anything."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(params.scenarios):
        out[name] = PREFLIGHT[name](ep, scenario_params(params, name))
    s3 = ops.s3_settings(ep, params.results_bucket or ep["storage"]["s3"]["buckets"]["results"])
    ops.check_bucket(ops.s3_client(s3), s3["bucket"], s3["endpoint"])
    out["results_bucket"] = s3["bucket"]
    return out


def scenario_verdict(name: str, result: dict[str, Any]) -> Verdict:
    s = dr.scenario_summary(result)
    failed = [v["criterion"] for v in result.get("verdicts", []) if v["outcome"] != "pass" and v.get("required", True)]
    reason = f"{result['outcome']}: RTO {s['rto_s']} s, RPO {s['rpo_s']} s" + (
        f"; not met: {', '.join(failed)}" if failed else ""
    )
    outcome = Outcome(result["outcome"]) if result["outcome"] in ("pass", "fail", "inconclusive") else Outcome.FAIL
    return Verdict(name, outcome, reason, {k: s[k] for k in ("run_id", "rto_s", "rpo_s", "lost_writes")})


def upload_report(ep: dict[str, Any], params: DrillParams, run_id: str, report: str, drill: dict[str, Any]) -> str:
    s3 = ops.s3_settings(ep, params.results_bucket or ep["storage"]["s3"]["buckets"]["results"])
    client = ops.s3_client(s3)
    prefix = f"dr-drill/{datetime.now(UTC):%Y-%m-%d}/{run_id}"
    ops.upload(
        client, s3["bucket"], f"{prefix}/drill.json", json.dumps(drill, default=str).encode(), "application/json"
    )
    return ops.upload(client, s3["bucket"], f"{prefix}/report.md", report.encode(), "text/markdown")


@dataclass
class Drill:
    """One drill run's account: approvals, the scenarios' records, those not run and why, one verdict each."""

    env: ResolvedEnvironment
    params: DrillParams
    phases: Phases
    ep: dict[str, Any]
    record: RunRecord
    checks: dict[str, Any]
    approvals: list[dict[str, Any]] = field(default_factory=list)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @classmethod
    def begin(cls, env: ResolvedEnvironment, params: DrillParams, phases: Phases) -> Drill:
        """Check every scenario first (PreflightError before anything is destroyed)."""
        ep = sandbox_endpoints(env, "dr-drill")
        record = new_record("dr-drill", env.name, params, "quarterly", phases.flow_run_id())
        return cls(env, params, phases, ep, record, preflight_all(ep, params))

    def approved(self, name: str) -> bool:
        """Outside the sandbox (or when asked to), a human approves each scenario; a refusal skips it (graded)."""
        if not approval_needed(self.params.require_approval, self.env):
            return True
        decision = ask_approval(self.phases, name, WHAT[name], self.params.approval_timeout)
        self.approvals.append(decision)
        if not decision["approve"]:
            self.skipped.append({"scenario": name, "why": f"refused by {decision['approver']}"})
            self.verdicts.append(Verdict(name, Outcome.FAIL, f"not run: refused by {decision['approver']}"))
        return bool(decision["approve"])

    def prepare(self, index: int, name: str) -> None:
        """Sandbox, when asked: a fresh sandbox before every scenario after the first."""
        if index > 0 and self.env.platform == "sandbox" and self.params.reset_between:
            t0 = time.time()
            reset_sandbox()
            self.phases.log.info("fresh sandbox for %s in %.1f s", name, time.time() - t0)

    def ran(self, name: str, result: dict[str, Any]) -> None:
        self.scenarios.append(result)
        self.verdicts.append(scenario_verdict(name, result))

    def errored(self, name: str, exc: Exception) -> None:
        """A scenario that errors is a failed scenario; the drill goes on and reports it."""
        self.phases.log.error("%s errored: %s", name, exc)
        self.skipped.append({"scenario": name, "why": f"{exc.__class__.__name__}: {exc}"})
        self.verdicts.append(Verdict(name, Outcome.FAIL, f"errored: {exc.__class__.__name__}: {exc}"[:500]))

    def finish(self) -> dict[str, Any]:
        """Grade the drill, write its report, store it and upload it; returns the record with the report."""
        record = self.record
        record.finish(self.verdicts)
        drill = {
            "run_id": record.run_id,
            "environment": self.env.name,
            "outcome": record.outcome,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "preflight": self.checks,
            "approvals": self.approvals,
            "order": list(self.params.scenarios),
            "scenarios": self.scenarios,
            "skipped": self.skipped,
        }
        report = dr.drill_report(drill)
        record.metrics = {"drill": [dr.scenario_summary(s) for s in self.scenarios], "approvals": self.approvals}
        record.artifacts["report_s3"] = upload_report(self.ep, self.params, record.run_id, report, drill)
        ResultsStore().save(record)
        self.phases.markdown("dr-drill-report", report, "Quarterly DR drill report")
        self.phases.log.info("DR drill %s: report at %s", record.outcome.upper(), record.artifacts["report_s3"])
        return record.to_dict() | {"report": report}
