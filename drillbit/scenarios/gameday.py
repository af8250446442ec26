"""The gameday's core: a practice incident on the core runner. It holds the scenario (the primary database becomes
unreachable under peak traffic), the team's log of the incident, the seed's criteria over machine events and the
team's inputs, the retrospective draft, and ``build`` which turns the parameters into an ``Experiment``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Literal, cast

from pydantic import BaseModel, Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient, client_for
from drillbit.config import ResolvedEnvironment
from drillbit.faults.port_block import PortBlock
from drillbit.model import Criterion, Outcome, RunRecord, Timeline, Verdict
from drillbit.monitor import monitor
from drillbit.params import FlowParams
from drillbit.poll import PollTimeout, wait_until
from drillbit.runner import Experiment, Run
from drillbit.secrets import redact

SCENARIOS = {
    "database-outage-during-peak-traffic": "At T0 the primary database becomes unreachable while traffic is at peak.",
}
TTL_MARGIN_S = 600.0  # the reaper lifts the database block this long after the incident's planned end
RESTORE_TIMEOUT_S = 60.0  # after the revert: how long to wait for the API to serve from its database again


class GamedayParams(FlowParams):
    scenario: Literal["database-outage-during-peak-traffic"] = "database-outage-during-peak-traffic"
    duration: float = Field(1800.0, gt=0, le=7200, description="Seconds the incident lasts unless restored earlier")
    traffic_interval: float = Field(0.2, gt=0, le=60, description="Seconds between requests of the peak traffic")
    interactive: bool = Field(False, description="Wait for the team's inputs in the Prefect UI")
    input_timeout: float = Field(7200.0, gt=0, description="Seconds to wait for the team's inputs")
    detect_within: float = Field(300.0, gt=0, description="Seed: incident detected within 5 min")
    page_within: float = Field(300.0, gt=0, description="Seed: on-call paged within 5 min")
    restore_within: float = Field(1800.0, gt=0, description="Seed: services restored within 30 min")

    # fixed, not parameters: the runner observes this long before the injection and after the services are restored
    baseline: ClassVar[float] = 5.0
    recovery: ClassVar[float] = 3.0


class GamedayLog(BaseModel):
    """What the team records during the gameday (minutes after the injection; leave empty what did not happen)."""

    incident_detected_min: float | None = Field(None, ge=0, description="Minutes until someone noticed")
    oncall_paged_min: float | None = Field(None, ge=0, description="Minutes until on-call was paged (human view)")
    incident_declared_min: float | None = Field(None, ge=0)
    root_cause: str = Field("", description="Root cause as identified by the team")
    services_restored_min: float | None = Field(None, ge=0, description="Minutes until the team restored service")
    communication_followed_process: bool | None = None
    runbooks_used: bool | None = None
    notes: str = Field("", description="Learnings for the retrospective")


# ------------------------------------------------------------------------------------------------------ criteria


def _within(name: str, limit: float, machine_kind: str | None, human_key: str | None) -> Criterion:
    """Time from injection to the first machine event of ``machine_kind`` or the human's record, whichever first."""

    def check(tl: Timeline) -> Verdict:
        t0 = next((e["ts"] for e in tl.events if e["kind"] == "inject"), None)
        if t0 is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "no injection recorded")
        times = {}
        if machine_kind:
            marks = [e["ts"] - t0 for e in tl.events if e["kind"] == machine_kind and e["ts"] >= t0 - 1]
            if marks:
                times["machine"] = max(0.0, min(marks))
        if human_key:
            human = next((e for e in tl.events if e["kind"] == "human" and e.get("field") == human_key), None)
            if human and human.get("minutes") is not None:
                times["human"] = human["minutes"] * 60
        if not times:
            return Verdict(name, Outcome.FAIL, "never happened", {})
        took = min(times.values())
        ev = {f"{k}_s": round(v, 1) for k, v in times.items()}
        outcome = Outcome.PASS if took <= limit else Outcome.FAIL
        return Verdict(name, outcome, f"after {took / 60:.1f} min ({', '.join(sorted(times))})", ev)

    return Criterion(name, f"within {limit / 60:g} min", check)


def _optional_bool(name: str, key: str) -> Criterion:
    def check(tl: Timeline) -> Verdict:
        human = next((e for e in tl.events if e["kind"] == "human" and e.get("field") == key), None)
        if human is None or human.get("value") is None:
            return Verdict(name, Outcome.INCONCLUSIVE, "not recorded by the team")
        return Verdict(name, Outcome.PASS if human["value"] else Outcome.FAIL, f"team recorded {human['value']}")

    return Criterion(name, "team's assessment", check, required=False)


def gameday_criteria(params: GamedayParams) -> list[Criterion]:
    """The seed's criteria: detection, paging and restoration times, no acknowledged write lost, the team's view."""
    return [
        _within("incident detected", params.detect_within, "alert_firing", "incident_detected_min"),
        _within("on-call paged", params.page_within, "page", "oncall_paged_min"),
        _within("services restored", params.restore_within, "services_restored", "services_restored_min"),
        criteria.event_check(
            "no acknowledged write lost",
            "write_verification",
            "0 missing",
            lambda e: Verdict(
                "no acknowledged write lost",
                Outcome.PASS if not e["missing"] else Outcome.FAIL,
                f"{len(e['missing'])} of {e['acknowledged']} missing",
                {"missing": e["missing"][:20]},
            ),
        ),
        _optional_bool("communication followed process", "communication_followed_process"),
        _optional_bool("runbooks used effectively", "runbooks_used"),
    ]


# ------------------------------------------------------------------------------------------------- retrospective


def retrospective(record: RunRecord, timeline: Timeline, log: GamedayLog | None, scenario: str) -> str:
    t0 = next((e["ts"] for e in timeline.events if e["kind"] == "inject"), record.started_at)
    lines = [
        f"# Gameday retrospective (draft): {scenario}",
        "",
        f"**Date**: {datetime.fromtimestamp(record.started_at, UTC):%Y-%m-%d %H:%M} UTC — environment "
        f"**{record.environment}** — outcome **{record.outcome.upper()}**",
        "",
        "## Scenario",
        SCENARIOS.get(scenario, scenario),
        "",
        "## Timeline (T0 = injection)",
        "",
        "| T+ (min) | source | event |",
        "|---|---|---|",
    ]
    rows = []
    for e in timeline.events:
        if e["kind"] == "human":
            if e.get("minutes") is not None:
                rows.append((e["minutes"], "team", e["detail"]))
        else:
            rows.append(((e["ts"] - t0) / 60, "machine", f"{e['kind']}: {e.get('detail', '')}"))
    for minutes, source, text in sorted(rows, key=lambda r: r[0]):
        lines.append(f"| {minutes:+.1f} | {source} | {redact(str(text))} |")
    lines += ["", "## Success criteria", "", "| criterion | outcome | measured |", "|---|---|---|"]
    lines += [f"| {v.criterion} | {v.outcome} | {v.reason} |" for v in record.verdicts]
    lines += ["", "## Root cause", "", (log.root_cause if log and log.root_cause else "_to be filled in_")]
    lines += ["", "## Learnings", "", (log.notes if log and log.notes else "_to be filled during the retrospective_")]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- the procedure


@dataclass
class _Gameday:
    """The gameday's hooks on the runner and what they share: the API client, the write canary, the team's log."""

    params: GamedayParams
    client: VirtEngineClient
    canary: probes.WriteCanary
    team: GamedayLog | None = None

    def after_revert(self, run: Run) -> None:
        """The database is reachable again: wait (bounded) until the API serves from it."""
        if run.handle is not None:
            run.timeline.event("recovered", "database reachable again (fault reverted)")

        def restored() -> bool:
            r = self.client.api_get("/health")
            return r.status_code == 200 and r.json().get("database") == "up"

        try:
            wait_until(restored, RESTORE_TIMEOUT_S, "services restored", interval=0.5, errors=())
        except PollTimeout:
            return
        run.timeline.event("services_restored", "API serving from its database")

    def collect(self, run: Run) -> None:
        """The incident is over: the team's inputs (when interactive), then the acknowledged writes read back."""
        if self.params.interactive:
            run.log.info("incident over: the team records its timeline in the Prefect UI (Resume, with input)")
            self.team = cast("GamedayLog | None", run.phases.ask(GamedayLog, self.params.input_timeout))
        if self.team is not None:
            for key, value in self.team.model_dump().items():
                label = key.removesuffix("_min").replace("_", " ")
                if key.endswith("_min"):
                    run.timeline.event("human", label, field=key, minutes=value)
                elif value not in (None, ""):
                    run.timeline.event("human", f"{label}: {value}", field=key, value=value)
        verification = self.canary.verify(60.0)
        missing = len(verification["missing"])
        run.timeline.event("write_verification", f"{missing} acknowledged writes missing", **verification)

    def finish(self, run: Run) -> None:
        """Verdicts are in: the gameday's metrics and the retrospective draft."""
        p = self.params
        run.record.metrics = {"scenario": p.scenario, "interactive": p.interactive}
        draft = retrospective(run.record, run.timeline, self.team, p.scenario)
        run.record.metrics["retrospective"] = draft
        run.phases.markdown("gameday-retrospective", draft, "Gameday retrospective draft")


def build(env: ResolvedEnvironment, params: GamedayParams) -> Experiment:
    """The gameday as an experiment: peak traffic (reads, canary writes, chain queries) while the primary database's
    port is blocked for ``duration`` seconds."""
    if env.platform != "sandbox":
        raise NotImplementedError(
            "the gameday scenario on Kubernetes uses the Chaos Mesh faults (drillbit/scenarios/chaos/kubernetes.py)"
        )
    db_port = sbx.endpoints()["postgres"]["port"]
    client = client_for(env, timeout=5.0)
    canary = probes.WriteCanary(client, f"gameday-{uuid.uuid4().hex[:8]}")
    iv = params.traffic_interval
    hooks = _Gameday(params, client, canary)
    crits = gameday_criteria(params)
    return Experiment(
        name="gameday",
        env=env,
        params=params,
        fault=PortBlock(db_port, "drop", label="primary database"),
        monitors=[
            monitor("api-read", iv, probes.api_read(client)),
            monitor("api-write", max(iv, 0.5), canary.check),
            monitor("chain-query", 1.0, probes.chain_query(client)),
        ],
        criteria=lambda _detail: crits,
        scenario=params.scenario,
        inject_detail=SCENARIOS[params.scenario],
        ttl_margin=TTL_MARGIN_S,
        after_revert=hooks.after_revert,
        collect=hooks.collect,
        finish=hooks.finish,
        close=[client.close],
    )
