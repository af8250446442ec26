"""What the disaster-recovery flows share: parameters, the human approval, and the run harness (probes, write canary,
timed steps, RTO/RPO measurement, grading, publishing).

A DR drill is destructive and is not "reverted": its recovery *is* the measured procedure. On the sandbox the drills
run against the sandbox named by ``DRILLBIT_SANDBOX_DIR``; afterwards that sandbox is in its post-disaster state
(the drill parent, ``dr-drill``, resets it between scenarios; ``reset_sandbox`` does the same for tests).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from prefect.flow_runs import pause_flow_run
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from drillbit import criteria, dr, probes
from drillbit import sandbox as sbx
from drillbit.config import ResolvedEnvironment
from drillbit.dr_ops import DrError, PreflightError, wait_for
from drillbit.experiment import Observer
from drillbit.model import Criterion, Outcome, RunRecord, Timeline, Verdict
from drillbit.synthetic import Monitor
from flows.base import FlowParams, new_record
from tasks.grade import grade
from tasks.report import persist_and_publish
from tasks.targets import client_for, resolve_environment

PROBES = ["api-write", "api-db-read", "chain"]


class DrParams(FlowParams):
    interval: float = Field(0.5, gt=0, le=60, description="Seconds between probe checks (the RTO's resolution)")
    baseline: float = Field(
        10.0, ge=0, le=3600, description="Seconds of acknowledged canary writes before the disaster"
    )
    settle: float = Field(10.0, ge=0, le=3600, description="Seconds observed after the service is restored")
    restore_timeout: float = Field(
        1800.0, gt=0, le=86_400, description="Seconds the service may take to come back before the drill gives up"
    )
    require_approval: bool | None = Field(
        None,
        description="Wait for a human approval in the Prefect UI before destroying anything (default: outside "
        "the sandbox only)",
    )
    approval_timeout: float = Field(3600.0, gt=0, le=7 * 86_400, description="Seconds to wait for the approval")
    backups_bucket: str | None = Field(
        None, description="Bucket of the backups (default: the sandbox's, or the environment's object_store)"
    )


class Approval(BaseModel):
    """Approval of a destructive DR step (given in the Prefect UI: Resume, with input)."""

    approve: bool = Field(description="Approve: the drill destroys real components")
    approver: str = Field(min_length=1, description="Who approves")
    comment: str = ""


def approval_needed(params: DrParams, env: ResolvedEnvironment) -> bool:
    return params.require_approval if params.require_approval is not None else env.platform != "sandbox"


def ask_approval(scenario: str, what: str, timeout: float) -> dict[str, Any]:
    """Pause this flow run until a human approves (or refuses) in the Prefect UI; returns the decision."""
    log = get_run_logger()
    log.warning("waiting for approval in the Prefect UI before %s: %s", scenario, what)
    answer = pause_flow_run(wait_for_input=Approval, timeout=int(timeout), key=f"approve-{scenario}")
    decision = {"scenario": scenario, "what": what, "at": time.time(), **answer.model_dump()}
    log.info("%s: %s by %s", scenario, "approved" if answer.approve else "REFUSED", answer.approver)
    return decision


def sandbox_endpoints(env: ResolvedEnvironment, flow: str) -> dict[str, Any]:
    if env.platform != "sandbox":
        raise NotImplementedError(
            f"{flow} drives the sandbox's platform (supervisor, fault proxy, local PostgreSQL); for Kubernetes see "
            "infra/k8s/README.md"
        )
    return sbx.endpoints()


def s3_settings(ep: dict[str, Any], bucket: str | None) -> dict[str, Any]:
    s3 = dict(ep["storage"]["s3"])
    if bucket:
        s3["bucket"] = bucket
    return s3


# ----------------------------------------------------------------------------------------------------- the harness


@dataclass
class DrRun:
    """One DR scenario run: probes and canary in the background, timed steps, and the graded, published record."""

    flow: str
    scenario: str
    env: ResolvedEnvironment
    params: DrParams
    ep: dict[str, Any]
    record: RunRecord = field(init=False)
    timeline: Timeline = field(default_factory=Timeline)
    evidence: dict[str, Any] = field(default_factory=dict)
    approval: dict[str, Any] | None = None
    restored: dr.RtoResult | None = None
    rpo: dr.RpoResult | None = None

    def __post_init__(self) -> None:
        self.record = new_record(self.flow, self.env.name, self.params, scenario=self.scenario)
        self.steps = dr.StepLog(self.timeline)
        self.client = client_for(self.env, timeout=3.0)
        self.canary = dr.DrCanary(self.client, f"drillbit-dr-{self.scenario}-{uuid.uuid4().hex[:8]}")
        iv = self.params.interval
        self.monitors = [
            Monitor("api-write", iv, probes.as_probe("api-write", self.canary.check)),
            Monitor("api-db-read", iv, probes.as_probe("api-db-read", self._db_read)),
            Monitor("chain", iv, probes.as_probe("chain", probes.chain_query(self.client))),
        ]
        self.observer = Observer(self.timeline, self.monitors, alertmanager=self.ep.get("alertmanager"))
        self.log = get_run_logger()

    @classmethod
    def begin(cls, flow: str, scenario: str, params: Any, preflight: Any) -> DrRun:
        """Resolve the target and run the scenario's ``preflight(ep, params)`` (which raises PreflightError before
        anything is destroyed); its result is kept as evidence."""
        env = resolve_environment(params.environment, params.config_path, destructive=True)
        ep = sandbox_endpoints(env, flow)
        checked = preflight(ep, params)
        run = cls(flow, scenario, env, params, ep)
        run.evidence["preflight"] = checked
        return run

    def _db_read(self) -> None:
        """A read that only the API's database can answer (records are never served from its cache)."""
        r = self.client.api_get("/api/v1/records", prefix=self.canary.prefix, limit=1)
        if r.status_code != 200:
            raise probes.CheckFailed(f"HTTP {r.status_code}: {r.text[:120]}")

    @contextlib.contextmanager
    def guarded(self) -> Any:
        """The probes stop and the client closes if the drill raises (a failed recovery is graded, not raised)."""
        try:
            yield self
        except BaseException:
            with contextlib.suppress(Exception):
                self.observer.stop(timeout=5)
            self.client.close()
            raise

    # ---- phases
    def approve(self, what: str) -> None:
        if approval_needed(self.params, self.env):
            self.approval = ask_approval(self.scenario, what, self.params.approval_timeout)
            if not self.approval["approve"]:
                raise PreflightError(f"{self.scenario} not approved by {self.approval['approver']}: nothing destroyed")

    def observe_baseline(self) -> None:
        """Start the probes; steady state first (nothing is destroyed on an unhealthy target), then the baseline."""
        bad = [s for s in (m.probe() for m in self.monitors) if not s.ok]
        if bad:
            raise PreflightError(
                "target not in steady state, refusing: " + "; ".join(f"{s.probe}: {s.error}" for s in bad)
            )
        self.timeline.begin_phase("baseline")
        self.observer.start()
        with self.steps.step("baseline", f"{self.params.baseline:g} s of canary writes"):
            wait_for(lambda: len(self.canary.acked) > 0, max(10.0, self.params.baseline), "an acknowledged write")
            time.sleep(self.params.baseline)

    def disaster(self, at: float, detail: str) -> None:
        self.timeline.event(dr.DISASTER, detail, at=at)
        self.timeline.begin_phase("injection", at=at)
        self.evidence["disaster_at"] = at

    def wait_restored(self) -> dr.RtoResult:
        """Wait (bounded) until every probe succeeds again; then observe ``settle`` seconds more."""
        t0 = dr.disaster_at(self.timeline)
        assert t0 is not None
        with self.steps.step("steady state restored", "every probe succeeds again"):

            def restored() -> dr.RtoResult | None:
                r = dr.measure_rto(self.timeline.frame, t0, PROBES)
                return r if r.restored_at is not None else None

            result = wait_for(restored, self.params.restore_timeout, "steady state (every probe succeeding)", 0.25)
        self.timeline.begin_phase("recovery", at=result.restored_at)
        time.sleep(self.params.settle)
        self.restored = result
        return result

    def measure_rpo(self) -> dr.RpoResult:
        with self.steps.step("read the canary back"):
            rpo = self.canary.measure(timeout=60.0, disaster=self.evidence.get("disaster_at"))
        self.timeline.event(
            dr.RPO_EVENT,
            f"RPO {rpo.rpo_s:.2f} s; {len(rpo.missing)} of {rpo.acknowledged} acknowledged writes missing",
            **rpo.to_dict(),
        )
        self.rpo = rpo
        return rpo

    def recover(self, fn: Any) -> None:
        """Run the recovery procedure; a failing step is recorded (graded as not restored), not raised."""
        try:
            fn()
        except Exception as exc:  # every failure after the disaster is a finding, graded as not restored
            self.log.error("recovery failed: %s", exc)
            self.evidence["recovery_error"] = f"{exc.__class__.__name__}: {exc}"

    # ---- grading
    def criteria(self, rto_target: float, rpo_target: float) -> list[Criterion]:
        return [
            dr.rto_criterion("RTO", rto_target, PROBES),
            dr.rpo_criterion("RPO", rpo_target),
            criteria.all_ok(
                "services resume normal operation",
                PROBES,
                phase="recovery",
                what="post-restore",
                missing=(Outcome.FAIL, "the service was not restored (no observation after a restore)"),
            ),
        ]

    def finish(self, criteria: list[Criterion], rto_target: float, rpo_target: float | None) -> dict[str, Any]:
        with contextlib.suppress(Exception):
            self.observer.stop()
        self.timeline.end()
        self.client.close()
        verdicts = grade(self.timeline, criteria)
        if "recovery_error" in self.evidence:
            verdicts.append(Verdict("recovery procedure", Outcome.FAIL, self.evidence["recovery_error"]))
        self.record.finish(verdicts)
        rto = (
            dr.measure_rto(self.timeline.frame, self.evidence["disaster_at"], PROBES)
            if "disaster_at" in self.evidence
            else None
        )
        self.record.metrics = {
            "dr": {
                "scenario": self.scenario,
                "disaster_at": self.evidence.get("disaster_at"),
                "rto_s": None if rto is None or rto.rto_s is None else round(rto.rto_s, 3),
                "rto_target_s": rto_target,
                "rpo_s": None if self.rpo is None else round(self.rpo.rpo_s, 3),
                "rpo_target_s": rpo_target,
                "missing_count": None if self.rpo is None else len(self.rpo.missing),
                "missing": [] if self.rpo is None else self.rpo.missing[:200],
                "steps": self.steps.to_list(),
                "approval": self.approval,
                "evidence": self.evidence,
            },
            "samples": len(self.timeline),
        }
        return persist_and_publish(self.record, self.timeline).to_dict()


def alerts_since(timeline: Timeline, since: float, names: list[str]) -> list[dict[str, Any]]:
    """Alerts (as the observer saw them start firing in Alertmanager) named ``names``, seen at or after ``since``."""
    return [
        e for e in timeline.events if e["kind"] == "alert_firing" and e["ts"] >= since and e.get("alertname") in names
    ]


def normal_operation(name: str) -> Criterion:
    """After the restore, every probe kept succeeding for the rest of the observation."""

    def check(tl: Timeline) -> Verdict:
        df = tl.select(phase="recovery")
        df = df[df["probe"].isin(PROBES)]
        if df.empty:
            return Verdict(name, Outcome.FAIL, "the service was not restored (no observation after a restore)")
        bad = df[~df["ok"].astype(bool)]
        ev = {"samples": len(df), "failures": len(bad)}
        if len(bad):
            ev["errors"] = [str(e)[:160] for e in bad["error"].dropna().head(3)]
            return Verdict(name, Outcome.FAIL, f"{len(bad)} of {len(df)} checks failed after the restore", ev)
        return Verdict(name, Outcome.PASS, f"all {len(df)} checks succeeded after the restore", ev)

    return Criterion(name, "every check succeeds after the restore", check)


# ----------------------------------------------------------------------------------------------- sandbox upkeep


def reset_sandbox(timeout: float = 120.0) -> dict[str, Any]:
    """Replace the sandbox by a fresh one (same run directory, port offset and weaknesses) with a fresh object
    store, and wait for its first base backup and etcd snapshot, so the next scenario has something to restore
    from. (A fresh object store: the earlier scenario's WAL archive holds another database system's timelines.)"""
    old = sbx.endpoints()
    run, offset = sbx.run_dir(), int(old["port_offset"])
    sbx.launcher(["down", "--purge"], run=run, offset=offset, capture=True)
    args = ["up"] + [a for w in old.get("weaknesses", []) for a in ("--weaken", w)]
    result = sbx.launcher(args, run=run, offset=offset, capture=True)
    if result.returncode != 0:
        raise DrError(f"sandbox reset failed: {(result.stderr or result.stdout).strip()[-400:]}")
    return wait_first_backups(timeout)


def wait_first_backups(timeout: float = 120.0) -> dict[str, Any]:
    """Wait until the sandbox (just started) has taken its first base backup and etcd snapshot: the restore
    scenarios need something to restore from. Returns the endpoints."""
    import httpx

    ep = sbx.endpoints()
    started = float(ep["started_at"])

    def backed_up() -> bool:
        status = httpx.get(f"{ep['storage']['backup']['url']}/api/v1/status", timeout=3).json()["backups"]
        return all(status[k]["last_success"] and status[k]["last_success"] > started for k in ("base", "etcd"))

    wait_for(backed_up, timeout, "first base backup and etcd snapshot of the fresh sandbox", 0.5)
    return ep
