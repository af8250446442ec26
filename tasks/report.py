"""Report-phase task: persist the run record first, then publish artifacts (markdown, table, timeline plot)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from drillbit import report
from drillbit.model import RunRecord, Sample, Timeline
from drillbit.paths import drillbit_home
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
    return record
