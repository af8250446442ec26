"""The results store: run records and the samples they graded, in any SQLAlchemy database.

SQLite file by default (``$DRILLBIT_HOME/results.sqlite3``); teams point ``results.url`` at PostgreSQL. Every write is
one transaction, so a crash mid-write loses nothing that was completed before it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from drillbit.model import RunRecord, Sample
from drillbit.paths import drillbit_home

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("flow", sa.String(64), nullable=False, index=True),
    sa.Column("scenario", sa.String(128), nullable=False, default=""),
    sa.Column("environment", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False, default=""),
    sa.Column("started_at", sa.Float, nullable=False, index=True),
    sa.Column("finished_at", sa.Float),
    sa.Column("record", sa.Text, nullable=False),
)

samples = sa.Table(
    "samples",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("probe", sa.String(128), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("latency", sa.Float),
    sa.Column("value", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("phase", sa.String(32)),
    sa.Index("ix_samples_probe_ts", "environment", "probe", "ts"),
)


def default_url() -> str:
    return f"sqlite:///{drillbit_home() / 'results.sqlite3'}"


class ResultsStore:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or os.environ.get("DRILLBIT_RESULTS_URL") or default_url()
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    def save(self, record: RunRecord, run_samples: list[Sample] | None = None) -> None:
        """Insert or replace the record (and, once, its samples) in one transaction."""
        row = {
            "run_id": record.run_id,
            "flow": record.flow,
            "scenario": record.scenario,
            "environment": record.environment,
            "status": record.status,
            "outcome": record.outcome,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "record": json.dumps(record.to_dict()),
        }
        with self.engine.begin() as conn:
            conn.execute(sa.delete(runs).where(runs.c.run_id == record.run_id))
            conn.execute(sa.insert(runs), [row])
            if run_samples:
                conn.execute(sa.delete(samples).where(samples.c.run_id == record.run_id))
                conn.execute(
                    sa.insert(samples),
                    [
                        {
                            "run_id": record.run_id,
                            "environment": record.environment,
                            "probe": s.probe,
                            "ts": s.ts,
                            "ok": bool(s.ok),
                            "latency": s.latency,
                            "value": s.value,
                            "error": s.error,
                            "phase": s.phase,
                        }
                        for s in run_samples
                    ],
                )

    def get(self, run_id: str) -> RunRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs.c.record).where(runs.c.run_id == run_id)).first()
        return RunRecord.from_dict(json.loads(row[0])) if row else None

    def list(self, flow: str | None = None, environment: str | None = None, limit: int = 50) -> list[RunRecord]:
        q = sa.select(runs.c.record).order_by(runs.c.started_at.desc()).limit(limit)
        if flow:
            q = q.where(runs.c.flow == flow)
        if environment:
            q = q.where(runs.c.environment == environment)
        with self.engine.connect() as conn:
            return [RunRecord.from_dict(json.loads(r[0])) for r in conn.execute(q)]

    def samples(
        self,
        environment: str,
        probe: str | None = None,
        since: float | None = None,
        run_id: str | None = None,
        flow: str | None = None,
    ) -> pd.DataFrame:
        q = sa.select(
            samples.c.probe,
            samples.c.ts,
            samples.c.ok,
            samples.c.latency,
            samples.c.value,
            samples.c.error,
            samples.c.phase,
            samples.c.run_id,
        ).where(samples.c.environment == environment)
        if probe:
            q = q.where(samples.c.probe == probe)
        if since is not None:
            q = q.where(samples.c.ts >= since)
        if run_id:
            q = q.where(samples.c.run_id == run_id)
        if flow:  # only samples of this flow's runs (a chaos run's probes must not count against synthetic SLOs)
            q = q.where(samples.c.run_id.in_(sa.select(runs.c.run_id).where(runs.c.flow == flow)))
        with self.engine.connect() as conn:
            df = pd.DataFrame(conn.execute(q.order_by(samples.c.ts)).mappings().all())
        if df.empty:
            df = pd.DataFrame(columns=["probe", "ts", "ok", "latency", "value", "error", "phase", "run_id"])
        return df


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
