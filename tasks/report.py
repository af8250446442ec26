"""Report-phase tasks: persist the run record first, then publish artifacts (markdown, table, timeline plot) and the
environment's resilience score (a markdown artifact per environment, rule in drillbit/score.py)."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from drillbit import report
from drillbit.calendar import periods_s
from drillbit.model import RunRecord, Sample, Timeline
from drillbit.paths import drillbit_home
from drillbit.score import Component, resilience_score
from drillbit.store import ResultsStore


def artifacts_dir(record: RunRecord) -> Path:
    return drillbit_home() / "artifacts" / record.flow / record.run_id


@task(cache_policy=NO_CACHE, name="persist-and-publish", retries=2, retry_delay_seconds=1)
def persist_and_publish(
    record: RunRecord,
    timeline: Timeline,
    *,
    store_samples: bool = True,
    thresholds: dict[str, float] | None = None,
    results_url: str | None = None,
) -> RunRecord:
    log = get_run_logger()
    png = report.plot_timeline(
        timeline, artifacts_dir(record) / "timeline.png", f"{record.flow} — {record.outcome}", thresholds
    )
    if png:
        record.artifacts["timeline_png"] = str(png)
    record.events = timeline.events
    samples: list[Sample] | None = None
    if store_samples:
        samples = timeline.samples()
    ResultsStore(results_url).save(record, samples)  # persisted before anything is reported
    key = record.flow.replace("_", "-")
    create_markdown_artifact(
        report.verdict_markdown(record), key=f"{key}-verdicts", description=f"{record.flow} verdicts"
    )
    rows = report.verdict_rows(record)
    if rows:
        create_table_artifact(rows, key=f"{key}-criteria", description=f"{record.flow} criteria")
    log.info("%s: %s (%d criteria) — run %s", record.flow, record.outcome.upper(), len(record.verdicts), record.run_id)
    try:
        publish_resilience_score(record.environment, results_url=results_url)
    except Exception as exc:  # the run is persisted and reported; a score that cannot be published must not fail it
        log.warning("resilience score of %s not published: %s: %s", record.environment, type(exc).__name__, exc)
    return record


def score_artifact_key(environment: str) -> str:
    """Prefect artifact keys take lowercase letters, digits and dashes only."""
    return "resilience-score-" + (re.sub(r"[^a-z0-9]+", "-", environment.lower()).strip("-") or "default")


def score_markdown(environment: str, score: float, parts: list[Component]) -> str:
    lines = [
        f"# Resilience score of {environment}: {score:.0f} / 100",
        "",
        "From the latest verdict of every test type, weighted, decaying once a test type is older than its calendar "
        "period (rule: `drillbit/score.py`).",
        "",
        "| test type | weight | latest | age (h) | freshness | points |",
        "|---|---|---|---|---|---|",
    ]
    for p in parts:
        age = "—" if p.age_s is None else f"{p.age_s / 3600:.1f}"
        lines.append(f"| {p.test_type} | {p.weight:g} | {p.outcome} | {age} | {p.freshness:.2f} | {p.points:.1f} |")
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE, name="publish-resilience-score", retries=1, retry_delay_seconds=1)
def publish_resilience_score(environment: str, results_url: str | None = None) -> float:
    """Compute the environment's resilience score from the stored runs and publish it as a markdown artifact
    (key ``resilience-score-<environment>``, one version per run)."""
    records = ResultsStore(results_url).list(environment=environment, limit=5000)
    score, parts = resilience_score(records, periods_s(), environment=environment)
    create_markdown_artifact(
        score_markdown(environment, score, parts),
        key=score_artifact_key(environment),
        description=f"resilience score of {environment}: {score:.1f} / 100",
    )
    get_run_logger().info("resilience score of %s: %.1f / 100", environment, score)
    return score
