"""What every disaster-recovery scenario shares: its parameters, the human approval, the sandbox's endpoints, and
``DrRun``, which turns one DR scenario into an experiment of the core runner (probes and write canary in the
background, timed steps, RTO/RPO measurement, the DR metrics of the run record).

A DR drill is destructive and is not "reverted": its recovery *is* the measured procedure. So the experiment has no
fault; the scenario's procedure (destroy, mark the disaster, recover) runs in the runner's ``during`` hook, and the
runner's phases are marked where the drill knows them: 'injection' at the disaster moment, 'recovery' when every
probe succeeds again. On the sandbox the drills run against the sandbox named by ``DRILLBIT_SANDBOX_DIR``; afterwards
that sandbox is in its post-disaster state (the drill parent, ``dr-drill``, resets it between scenarios with
``reset_sandbox``, here with the sandbox's other upkeep: tests and ``drillbit verify`` use it too).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.client import client_for
from drillbit.config import ResolvedEnvironment
from drillbit.model import Criterion, Outcome, RunRecord, Timeline, Verdict
from drillbit.monitor import monitor
from drillbit.params import FlowParams
from drillbit.poll import wait_until
from drillbit.runner import Experiment, Phases, Run
from drillbit.scenarios.dr import objectives as dr
from drillbit.scenarios.dr.operations import DrError, PreflightError

PROBES = ["api-write", "api-db-read", "chain"]

log = logging.getLogger(__name__)


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


def approval_needed(require: bool | None, env: ResolvedEnvironment) -> bool:
    return require if require is not None else env.platform != "sandbox"


def ask_approval(phases: Phases, scenario: str, what: str, timeout: float) -> dict[str, Any]:
    """Wait until a human approves (or refuses) ``what`` (in a Prefect flow run: pause it until resumed with an
    ``Approval``); returns the decision. Nobody to ask (outside a flow run) is a refusal to start."""
    phases.log.warning("waiting for approval in the Prefect UI before %s: %s", scenario, what)
    answer = phases.ask(Approval, timeout, key=f"approve-{scenario}")
    if answer is None:
        raise PreflightError(f"{scenario} needs a human approval and nobody can give one here: nothing destroyed")
    decision = {"scenario": scenario, "what": what, "at": time.time(), **answer.model_dump()}
    phases.log.info("%s: %s by %s", scenario, "approved" if answer.approve else "REFUSED", answer.approver)
    return decision


def sandbox_endpoints(env: ResolvedEnvironment, flow: str) -> dict[str, Any]:
    if env.platform != "sandbox":
        raise NotImplementedError(
            f"{flow} drives the sandbox's platform (supervisor, fault proxy, local PostgreSQL); for Kubernetes see "
            "infra/k8s/README.md"
        )
    return sbx.endpoints()


def alerts_since(timeline: Timeline, since: float, names: list[str]) -> list[dict[str, Any]]:
    """Alerts (as the observer saw them start firing in Alertmanager) named ``names``, seen at or after ``since``."""
    return [
        e for e in timeline.events if e["kind"] == "alert_firing" and e["ts"] >= since and e.get("alertname") in names
    ]


# ----------------------------------------------------------------------------------------------------- the harness


@dataclass
class DrRun:
    """One DR scenario run: probes and canary in the background, timed steps, and the graded, published record.

    The scenario's code calls the procedure's methods (``disaster``, ``recover``, ``wait_restored``); ``experiment``
    wires them into the runner's hooks."""

    flow: str
    scenario: str
    env: ResolvedEnvironment
    params: Any  # a DrParams
    ep: dict[str, Any]
    timeline: Timeline = field(default_factory=Timeline)
    evidence: dict[str, Any] = field(default_factory=dict)
    approval: dict[str, Any] | None = None
    restored: dr.RtoResult | None = None
    rpo: dr.RpoResult | None = None
    record: RunRecord | None = None  # the runner's, from the approval on
    phases: Phases | None = None
    run: Run | None = None  # the runner's, from the baseline on

    def __post_init__(self) -> None:
        self.steps = dr.StepLog(self.timeline)
        self.client = client_for(self.env, timeout=3.0)
        self.canary = dr.DrCanary(self.client, f"drillbit-dr-{self.scenario}-{uuid.uuid4().hex[:8]}")
        iv = self.params.interval
        self.monitors = [
            monitor("api-write", iv, self.canary.check),
            monitor("api-db-read", iv, self._db_read),
            monitor("chain", iv, probes.chain_query(self.client)),
        ]

    @classmethod
    def begin(
        cls,
        flow: str,
        scenario: str,
        env: ResolvedEnvironment,
        params: Any,
        preflight: Callable[[dict[str, Any], Any], dict[str, Any]],
    ) -> DrRun:
        """Check the target: the scenario's ``preflight(ep, params)`` raises PreflightError before anything is
        destroyed; its result is kept as evidence."""
        ep = sandbox_endpoints(env, flow)
        checked = preflight(ep, params)
        run = cls(flow, scenario, env, params, ep)
        run.evidence["preflight"] = checked
        return run

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter:
        return self.phases.log if self.phases is not None else log

    def _db_read(self) -> None:
        """A read that only the API's database can answer (records are never served from its cache)."""
        r = self.client.api_get("/api/v1/records", prefix=self.canary.prefix, limit=1)
        if r.status_code != 200:
            raise probes.CheckFailed(f"HTTP {r.status_code}: {r.text[:120]}")

    # ---- the procedure's steps
    def disaster(self, at: float, detail: str) -> None:
        """The disaster happened at ``at``: the RTO's start and the 'injection' phase's."""
        self.timeline.event(dr.DISASTER, detail, at=at)
        self.timeline.begin_phase("injection", at=at)
        self.evidence["disaster_at"] = at

    def recover(self, fn: Callable[[], None]) -> None:
        """Run the recovery procedure; a failing step is recorded (graded as not restored), not raised."""
        try:
            fn()
        except Exception as exc:  # every failure after the disaster is a finding, graded as not restored
            self.log.error("recovery failed: %s", exc)
            self.evidence["recovery_error"] = f"{exc.__class__.__name__}: {exc}"

    def wait_restored(self) -> dr.RtoResult:
        """Wait (bounded) until every probe succeeds again: the 'recovery' phase begins then; observe ``settle``
        seconds more."""
        t0 = dr.disaster_at(self.timeline)
        assert t0 is not None
        with self.steps.step("steady state restored", "every probe succeeds again"):

            def restored() -> dr.RtoResult | None:
                r = dr.measure_rto(self.timeline.frame, t0, PROBES)
                return r if r.restored_at is not None else None

            what = "steady state (every probe succeeding)"
            result = wait_until(restored, self.params.restore_timeout, what, 0.25, raises=DrError)
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

    # ---- grading
    def criteria(self, rto_target: float, rpo_target: float) -> list[Criterion]:
        """RTO, RPO, and normal operation after the restore: what every scenario but the rebuild grades."""
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

    # ---- the experiment
    def experiment(
        self,
        what: str,
        procedure: Callable[[], None],
        grading: list[Criterion],
        rto_target: float,
        rpo_target: float | None,
        setup: Callable[[], None] | None = None,
        after_restore: Callable[[], None] | None = None,
    ) -> Experiment:
        """The scenario as an experiment of the core runner.

        ``what`` is what a human approves (before anything, when approval is needed); ``setup`` runs after the
        approval, before the steady-state check (e.g. chain state to compare later); ``procedure`` destroys, marks
        the disaster and recovers (after the baseline); once the probes stopped, if the service was restored, the
        canary is read back (RPO) and ``after_restore`` runs (e.g. comparing states)."""

        def prepare(phases: Phases, record: RunRecord) -> None:
            self.phases, self.record = phases, record
            if approval_needed(self.params.require_approval, self.env):
                self.approval = ask_approval(phases, self.scenario, what, self.params.approval_timeout)
                if not self.approval["approve"]:
                    raise PreflightError(
                        f"{self.scenario} not approved by {self.approval['approver']}: nothing destroyed"
                    )
            if setup:
                setup()

        def baseline(run: Run) -> None:
            """The runner observed ``baseline`` seconds; the step covers them and an acknowledged canary write."""
            self.run = run
            bounds = run.timeline.phase_bounds("baseline")
            detail = f"{self.params.baseline:g} s of canary writes"
            with self.steps.step("baseline", detail, started_at=bounds[0] if bounds else None):
                wait_until(
                    lambda: len(self.canary.acked) > 0,
                    max(10.0, self.params.baseline),
                    "an acknowledged write",
                    0.2,
                    raises=DrError,
                )

        def during(run: Run) -> None:
            procedure()
            if "recovery_error" in self.evidence:
                run.extra_verdicts.append(Verdict("recovery procedure", Outcome.FAIL, self.evidence["recovery_error"]))

        def collect(_run: Run) -> None:
            if self.restored is not None:
                self.measure_rpo()
                if after_restore:
                    after_restore()

        def finish(run: Run) -> None:
            run.record.metrics = self.metrics(rto_target, rpo_target)

        return Experiment(
            self.flow,
            self.env,
            self.params,
            None,  # nothing to revert: the recovery is the measured procedure
            self.monitors,
            lambda _detail: grading,
            scenario=self.scenario,
            watch_pages=False,
            timeline=self.timeline,
            own_phase_marks=True,
            prepare=prepare,
            before_inject=baseline,
            during=during,
            collect=collect,
            finish=finish,
            close=[self.client.close],
        )

    def metrics(self, rto_target: float, rpo_target: float | None) -> dict[str, Any]:
        """``record.metrics``: the DR measurements (read by the drill report) and the sample count."""
        rto = (
            dr.measure_rto(self.timeline.frame, self.evidence["disaster_at"], PROBES)
            if "disaster_at" in self.evidence
            else None
        )
        return {
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


# ----------------------------------------------------------------------------------------------- sandbox upkeep


def reset_sandbox(timeout: float = 120.0) -> dict[str, Any]:
    """Replace the sandbox by a fresh one (same run directory, port offset and weaknesses; the object store kept,
    as a real one outlives the clusters it backs up) and wait for its first base backup and etcd snapshot, so the
    next scenario has something to restore from. The new database cluster archives into a WAL archive of its own
    (keyed by its system identifier), so the earlier cluster's timelines are never followed."""
    old = sbx.endpoints()
    run, offset = sbx.run_dir(), int(old["port_offset"])
    sbx.launcher(["down"], run=run, offset=offset, capture=True)
    args = ["up"] + [a for w in old.get("weaknesses", []) for a in ("--weaken", w)]
    result = sbx.launcher(args, run=run, offset=offset, capture=True)
    if result.returncode != 0:
        raise DrError(f"sandbox reset failed: {(result.stderr or result.stdout).strip()[-400:]}")
    return wait_first_backups(timeout)


def wait_first_backups(timeout: float = 120.0) -> dict[str, Any]:
    """Wait until the sandbox (just started) has taken its first base backup and etcd snapshot: the restore
    scenarios need something to restore from. Returns the endpoints."""
    ep = sbx.endpoints()
    started = float(ep["started_at"])

    def backed_up() -> bool:
        status = httpx.get(f"{ep['storage']['backup']['url']}/api/v1/status", timeout=3).json()["backups"]
        return all(status[k]["last_success"] and status[k]["last_success"] > started for k in ("base", "etcd"))

    wait_until(backed_up, timeout, "first base backup and etcd snapshot of the fresh sandbox", 0.5, raises=DrError)
    return ep
