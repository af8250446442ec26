"""Gameday: a practice incident. The flow injects the scenario, records one timeline from machine events (injection,
alerts firing, pages, recovery) and from the humans' inputs given in the Prefect UI while it waits (incident detected,
on-call paged, incident declared, root cause, services restored, notes), grades the seed's criteria and publishes a
retrospective draft."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from drillbit import criteria, probes
from drillbit import sandbox as sbx
from drillbit.experiment import Observer
from drillbit.faults.sandbox import PortBlock
from drillbit.model import Criterion, Outcome, Timeline, Verdict
from drillbit.secrets import redact
from drillbit.synthetic import Monitor
from flows.base import FlowParams, new_record
from tasks.grade import grade
from tasks.inject import inject_fault
from tasks.observe import steady_state
from tasks.recover import revert_fault, revert_on_crash
from tasks.report import persist_and_publish
from tasks.targets import client_for, resolve_environment

SCENARIOS = {
    "database-outage-during-peak-traffic": "At T0 the primary database becomes unreachable while traffic is at peak.",
}


class GamedayParams(FlowParams):
    scenario: Literal["database-outage-during-peak-traffic"] = "database-outage-during-peak-traffic"
    duration: float = Field(1800.0, gt=0, le=7200, description="Seconds the incident lasts unless restored earlier")
    traffic_interval: float = Field(0.2, gt=0, le=60, description="Seconds between requests of the peak traffic")
    interactive: bool = Field(False, description="Wait for the team's inputs in the Prefect UI")
    input_timeout: float = Field(7200.0, gt=0, description="Seconds to wait for the team's inputs")
    detect_within: float = Field(300.0, gt=0, description="Seed: incident detected within 5 min")
    page_within: float = Field(300.0, gt=0, description="Seed: on-call paged within 5 min")
    restore_within: float = Field(1800.0, gt=0, description="Seed: services restored within 30 min")


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


def retrospective(record, timeline: Timeline, log: GamedayLog | None, scenario: str) -> str:
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


@flow(name="gameday", on_crashed=[revert_on_crash], on_cancellation=[revert_on_crash])
def gameday(params: GamedayParams = GamedayParams()) -> dict:
    log = get_run_logger()
    env = resolve_environment(params.environment, params.config_path, destructive=True)
    if env.platform != "sandbox":
        raise NotImplementedError("the gameday scenario on Kubernetes uses the Chaos Mesh faults (flows/chaos_k8s.py)")
    ep = sbx.endpoints()
    record = new_record("gameday", env.name, params, scenario=params.scenario)
    client = client_for(env, timeout=5.0)
    canary = probes.WriteCanary(client, f"gameday-{uuid.uuid4().hex[:8]}")
    iv = params.traffic_interval
    monitors = [
        Monitor("api-read", iv, probes.as_probe("api-read", probes.api_read(client))),
        Monitor("api-write", max(iv, 0.5), probes.as_probe("api-write", canary.check)),
        Monitor("chain-query", 1.0, probes.as_probe("chain-query", probes.chain_query(client))),
    ]
    timeline = Timeline()
    steady_state(monitors)
    observer = Observer(timeline, monitors, alertmanager=env.endpoints.alertmanager, pager=env.endpoints.pager)
    fault = PortBlock(ep["postgres"]["port"], "drop", label="primary database")
    human: GamedayLog | None = None
    handle = None
    timeline.begin_phase("baseline")
    observer.start()
    try:
        observer.wait(5.0)
        timeline.begin_phase("injection")
        timeline.event("inject", SCENARIOS[params.scenario])
        handle = inject_fault(fault, params.duration + 600, record.flow_run_id or record.run_id)
        observer.wait(params.duration)
    finally:
        if handle is not None:
            revert_fault(handle)
            timeline.event("recovered", "database reachable again (fault reverted)")
        timeline.begin_phase("recovery")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = client.api_get("/health")
            if r.status_code == 200 and r.json().get("database") == "up":
                timeline.event("services_restored", "API serving from its database")
                break
            time.sleep(0.5)
        observer.wait(3.0)
    finally:
        observer.stop()
        timeline.end()
    if params.interactive:
        log.info("incident over: the team records its timeline in the Prefect UI (Resume, with input)")
        human = pause_flow_run(wait_for_input=GamedayLog, timeout=int(params.input_timeout))
    if human is not None:
        for key, value in human.model_dump().items():
            label = key.removesuffix("_min").replace("_", " ")
            if key.endswith("_min"):
                timeline.event("human", label, field=key, minutes=value)
            elif value not in (None, ""):
                timeline.event("human", f"{label}: {value}", field=key, value=value)
    verification = canary.verify(60.0)
    timeline.event("write_verification", f"{len(verification['missing'])} acknowledged writes missing", **verification)
    crits = [
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
    record.finish(grade(timeline, crits))
    record.metrics = {"scenario": params.scenario, "interactive": params.interactive}
    draft = retrospective(record, timeline, human, params.scenario)
    record.metrics["retrospective"] = draft
    create_markdown_artifact(draft, key="gameday-retrospective", description="Gameday retrospective draft")
    client.close()
    return persist_and_publish(record, timeline).to_dict()
