"""The environment's resilience score is published as a Prefect artifact after a flow's persist step."""

from __future__ import annotations

import asyncio

import pytest

from drillbit.score import resilience_score
from drillbit.store import ResultsStore
from flows.synthetic import SyntheticParams, synthetic
from tasks.report import score_artifact_key

pytestmark = pytest.mark.integration


async def _score_artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(found, key=lambda a: a.created)


def test_resilience_score_artifact_is_published_after_a_flow_run(prefect_server, drillbit_home):
    key = score_artifact_key("sandbox")
    assert key == "resilience-score-sandbox"
    before = asyncio.run(_score_artifacts(key))

    record = synthetic(params=SyntheticParams(checks=["chain-query"], rounds=1, interval=1.0))

    after = asyncio.run(_score_artifacts(key))
    assert len(after) == len(before) + 1, "one new score artifact version per flow run"
    latest = after[-1]
    assert latest.type == "markdown" and latest.flow_run_id is not None

    from drillbit.calendar import periods_s

    score, parts = resilience_score(
        ResultsStore().list(environment="sandbox", limit=5000), periods_s(), environment="sandbox"
    )
    assert ResultsStore().get(record["run_id"]) is not None, "persisted before the score was computed"
    assert latest.data.startswith(f"# Resilience score of sandbox: {score:.0f} / 100")
    assert f"{score:.1f} / 100" in latest.description
    synthetic_row = next(p for p in parts if p.test_type == "synthetic")
    assert f"| synthetic | {synthetic_row.weight:g} | {record['outcome']} |" in latest.data
    assert latest.data.count("\n| ") == len(parts) + 1, "a row per weighted test type plus the separator"
