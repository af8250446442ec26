"""Backup agent: periodic PostgreSQL base backups and etcd snapshots to S3, and backup/replication metrics.

``python -m vesandbox.backup --config FILE`` (supervised, runs as root). WAL archiving itself is PostgreSQL's
``archive_command`` (``vesandbox.wal_archive``); the agent reports on it from ``pg_stat_archiver`` (what PostgreSQL
believes) and from the bucket (what is really there), so a silent archive bug shows as a gap between the two.

- Base backup every ``base_interval`` s (first after ``base_first_delay`` s; after a failure, retry within 10 s):
  ``pg_basebackup -Ft -z -X stream -c fast`` (self-contained: the WAL needed for consistency is in
  ``pg_wal.tar.gz``), uploaded to ``base/<id>/`` and finished by ``base/<id>/manifest.json`` (which names the
  backup's system and its WAL archive, ``wal/<system_identifier>/``). The newest ``keep_base`` backups are kept;
  after each backup the archive of every database system that no kept backup refers to is deleted (an earlier
  cluster's, or the flat ``wal/<segment>`` layout of old), and in the archive of each kept system the WAL segments
  older than that system's oldest kept backup.
- etcd snapshot every ``etcd_interval`` s: ``etcdctl snapshot save`` from the first endpoint that answers, uploaded
  to ``etcd/<id>.db``; the newest ``keep_etcd`` are kept.
- Every ``poll_interval`` s: ``pg_stat_archiver`` and ``pg_stat_replication`` on the primary, replay state on the
  replica, object counts and sizes in the bucket.

HTTP: ``GET /health``, ``GET /metrics``, ``GET /api/v1/status``, ``GET /api/v1/backups``,
``POST /api/v1/backups/base`` and ``POST /api/v1/backups/etcd`` (run one now, answer its manifest; 500 on failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vesandbox.common import load_config, metrics_response, serve, setup_logging
from vesandbox.restore import (
    BASE_PREFIX,
    ETCD_PREFIX,
    MANIFEST,
    WAL_PREFIX,
    RestoreError,
    list_base_backups,
    list_etcd_snapshots,
    list_objects,
    s3_client,
)
from vesandbox.wal_archive import archive_prefix, is_segment

KINDS = ("base", "wal", "etcd")
RETRY_AFTER_FAILURE = 10.0
log = setup_logging("backup")


@dataclass
class KindState:
    last_success: float = 0.0
    failures: int = 0
    size_bytes: int = 0
    objects: int = 0
    latest_object: float = 0.0
    last_error: str = ""
    runs: int = 0


@dataclass
class ReplicaState:
    connected: bool = False
    sync_state: str = ""
    state: str = ""
    lag_seconds: float | None = None
    lag_bytes: float | None = None
    up: bool = False
    in_recovery: bool | None = None
    replay_lag_seconds: float | None = None
    replay_lag_bytes: float | None = None


@dataclass
class Settings:
    s3: dict[str, Any]
    host: str
    port: int
    pg: dict[str, Any]
    pg_bin: Path
    replica: dict[str, Any] | None
    etcd_endpoints: list[str]
    etcdctl: str
    work_dir: Path
    base_interval: float = 60.0
    base_first_delay: float = 5.0
    etcd_interval: float = 60.0
    etcd_first_delay: float = 5.0
    poll_interval: float = 2.0
    keep_base: int = 5
    keep_etcd: int = 10
    base_timeout: float = 300.0

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> Settings:
        return cls(
            s3=c["s3"],
            host=c["listen"]["host"],
            port=int(c["listen"]["port"]),
            pg=c["postgres"],
            pg_bin=Path(c.get("pg_bin", "/usr/lib/postgresql/15/bin")),
            replica=c.get("replica"),
            etcd_endpoints=list(c.get("etcd_endpoints", [])),
            etcdctl=c.get("etcdctl") or shutil.which("etcdctl") or "etcdctl",
            work_dir=Path(c["work_dir"]),
            **{k: type(getattr(cls, k))(c[k]) for k in _TUNABLES if k in c},
        )


_TUNABLES = (
    "base_interval",
    "base_first_delay",
    "etcd_interval",
    "etcd_first_delay",
    "poll_interval",
    "keep_base",
    "keep_etcd",
    "base_timeout",
)


def backup_id() -> str:
    """UTC start time, sortable: ``20261125T160258.123Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class Agent:
    """The jobs, their state and the metrics."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.kinds = {k: KindState() for k in KINDS}
        self.replica = ReplicaState()
        self.locks = {k: asyncio.Lock() for k in ("base", "etcd")}
        self.archiver_failed: int | None = None
        self.client = s3_client(settings.s3)
        self.tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------------------------------------------------ postgres

    def _pg(self, host: str, port: int) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=host,
            port=port,
            user=self.s.pg.get("user", "postgres"),
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
            options="-c statement_timeout=3000",
        )

    def take_base_backup(self) -> dict[str, Any]:
        """Run pg_basebackup and upload it; return the manifest (blocking)."""
        bid = backup_id()
        started = time.time()
        with self._pg(self.s.pg["host"], int(self.s.pg["port"])) as conn:
            sysid, version, segsize = conn.execute(
                "select system_identifier::text, current_setting('server_version_num'), "
                "current_setting('wal_segment_size') from pg_control_system()"
            ).fetchone()
        tmp = self.s.work_dir / f"base-{bid}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            cmd = [str(self.s.pg_bin / "pg_basebackup"), "-h", self.s.pg["host"], "-p", str(self.s.pg["port"])]
            cmd += ["-U", self.s.pg.get("user", "postgres"), "-D", str(tmp), "-Ft", "-z", "-X", "stream", "-c", "fast"]
            cmd += ["-l", f"vesandbox {bid}", "--no-sync"]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=self.s.base_timeout)
            if result.returncode != 0:
                raise RuntimeError(f"pg_basebackup exited {result.returncode}: {_tail(result.stderr)}")
            wal = json.loads((tmp / "backup_manifest").read_text())["WAL-Ranges"][0]
            files = []
            for name in ("base.tar.gz", "pg_wal.tar.gz", "backup_manifest"):
                path = tmp / name
                if not path.exists():
                    continue
                self.client.upload_file(str(path), self.s.s3["bucket"], f"{BASE_PREFIX}{bid}/{name}")
                files.append({"name": name, "size": path.stat().st_size, "sha256": _sha256(path)})
            finished = time.time()
            manifest = {
                "id": bid,
                "label": f"vesandbox {bid}",
                "method": "pg_basebackup -Ft -z -X stream -c fast",
                "started_at": datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z"),
                "finished_at": datetime.fromtimestamp(finished, UTC).isoformat().replace("+00:00", "Z"),
                "started_at_epoch": started,
                "finished_at_epoch": finished,
                "start_lsn": wal["Start-LSN"],
                "end_lsn": wal["End-LSN"],
                "timeline": wal["Timeline"],
                "system_identifier": sysid,
                "wal_prefix": archive_prefix({"prefix": WAL_PREFIX}, sysid),
                "server_version_num": int(version),
                "wal_segment_size": segsize,
                "size_bytes": sum(f["size"] for f in files),
                "files": files,
                "source": f"{self.s.pg['host']}:{self.s.pg['port']}",
            }
            self.client.put_object(
                Bucket=self.s.s3["bucket"],
                Key=f"{BASE_PREFIX}{bid}/{MANIFEST}",
                Body=json.dumps(manifest, indent=2).encode(),
                ContentType="application/json",
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.kinds["base"].size_bytes = manifest["size_bytes"]
        self._prune_base()
        return manifest

    def _prune_base(self) -> None:
        """Keep the newest ``keep_base`` backups; then prune the WAL archive (``prune_wal``)."""
        backups = list_base_backups(self.s.s3, self.client)
        old, kept = backups[: -self.s.keep_base], backups[-self.s.keep_base :]
        for m in old:
            for obj in list_objects(self.s.s3, f"{BASE_PREFIX}{m['id']}/", self.client):
                self.client.delete_object(Bucket=self.s.s3["bucket"], Key=obj["Key"])
            log.info("pruned base backup %s", m["id"])
        if kept:
            self.prune_wal(kept)

    def prune_wal(self, kept: list[dict[str, Any]]) -> list[str]:
        """Delete the archive of every database system no kept backup refers to, and in each kept system's archive
        the segments archived before its oldest kept backup started (a minute of slack). Returns the deleted keys."""
        cutoff: dict[str, float] = {}
        for m in kept:
            system = str(m["system_identifier"])
            cutoff[system] = min(cutoff.get(system, m["started_at_epoch"]), m["started_at_epoch"])
        deleted = []
        for obj in list_objects(self.s.s3, WAL_PREFIX, self.client):
            system, _, name = obj["Key"][len(WAL_PREFIX) :].partition("/")
            if system in cutoff and not (is_segment(name) and obj["LastModified"].timestamp() < cutoff[system] - 60):
                continue
            self.client.delete_object(Bucket=self.s.s3["bucket"], Key=obj["Key"])
            deleted.append(obj["Key"])
        foreign = {k[len(WAL_PREFIX) :].partition("/")[0] for k in deleted} - set(cutoff)
        if foreign:
            log.info("pruned the WAL archive of %d database system(s) no kept backup refers to", len(foreign))
        return deleted

    # ------------------------------------------------------------------------------------------------------ etcd

    def take_etcd_snapshot(self) -> dict[str, Any]:
        """Save a snapshot from the first etcd endpoint that answers and upload it (blocking)."""
        if not self.s.etcd_endpoints:
            raise RuntimeError("no etcd endpoints configured")
        sid = backup_id()
        self.s.work_dir.mkdir(parents=True, exist_ok=True)
        local = self.s.work_dir / f"etcd-{sid}.db"
        errors = []
        try:
            for endpoint in self.s.etcd_endpoints:
                local.unlink(missing_ok=True)
                cmd = [self.s.etcdctl, f"--endpoints={endpoint}", "--dial-timeout=2s", "--command-timeout=20s"]
                result = subprocess.run(
                    [*cmd, "snapshot", "save", str(local)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env={**os.environ, "ETCDCTL_API": "3"},
                )
                if result.returncode == 0 and local.exists():
                    key = f"{ETCD_PREFIX}{sid}.db"
                    self.client.upload_file(str(local), self.s.s3["bucket"], key)
                    size = local.stat().st_size
                    self.kinds["etcd"].size_bytes = size
                    self._prune_etcd()
                    return {"id": sid, "key": key, "size": size, "endpoint": endpoint, "sha256": _sha256(local)}
                errors.append(f"{endpoint}: {_tail(result.stderr or result.stdout)}")
        finally:
            local.unlink(missing_ok=True)
            local.with_name(local.name + ".part").unlink(missing_ok=True)
        raise RuntimeError("etcd snapshot failed on every endpoint: " + "; ".join(errors))

    def _prune_etcd(self) -> None:
        snaps = list_etcd_snapshots(self.s.s3, self.client)
        for s in snaps[: -self.s.keep_etcd]:
            self.client.delete_object(Bucket=self.s.s3["bucket"], Key=s["key"])

    # ------------------------------------------------------------------------------------------------------ poll

    def poll(self) -> None:
        """Refresh archiver, replication and bucket state (blocking; each part on its own)."""
        for part in (self._poll_archiver, self._poll_replication, self._poll_replica, self._poll_bucket):
            try:
                part()
            except Exception as exc:
                log.debug("poll %s: %s", part.__name__, exc)

    def _poll_archiver(self) -> None:
        with self._pg(self.s.pg["host"], int(self.s.pg["port"])) as conn:
            row = conn.execute(
                "select coalesce(extract(epoch from last_archived_time), 0)::float8, failed_count from pg_stat_archiver"
            ).fetchone()
        last, failed = row
        wal = self.kinds["wal"]
        wal.last_success = max(wal.last_success, float(last))
        if self.archiver_failed is not None and failed > self.archiver_failed:
            wal.failures += failed - self.archiver_failed
        self.archiver_failed = failed

    def _poll_replication(self) -> None:
        if not self.s.replica:
            return
        with self._pg(self.s.pg["host"], int(self.s.pg["port"])) as conn:
            row = conn.execute(
                "select state, sync_state, extract(epoch from replay_lag)::float8, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 "
                "from pg_stat_replication where application_name = %s order by backend_start desc limit 1",
                (self.s.replica["name"],),
            ).fetchone()
        r = self.replica
        if row is None:
            r.connected, r.state, r.sync_state, r.lag_seconds, r.lag_bytes = False, "", "", None, None
            return
        r.connected, r.state, r.sync_state = True, row[0], row[1]
        r.lag_bytes = row[3] if row[3] is not None else None
        # replay_lag is NULL once an idle standby has caught up
        r.lag_seconds = row[2] if row[2] is not None else 0.0

    def _poll_replica(self) -> None:
        if not self.s.replica:
            return
        try:
            with self._pg(self.s.replica["host"], int(self.s.replica["port"])) as conn:
                row = conn.execute(
                    "select pg_is_in_recovery(), "
                    "case when pg_last_wal_receive_lsn() is null "
                    "or pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0 "
                    "else extract(epoch from now() - pg_last_xact_replay_timestamp()) end::float8, "
                    "coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8"
                ).fetchone()
        except psycopg.Error:
            self.replica.up = False
            raise
        self.replica.up = True
        self.replica.in_recovery = bool(row[0])
        self.replica.replay_lag_seconds = max(0.0, row[1] or 0.0) if row[0] else None
        self.replica.replay_lag_bytes = row[2] if row[0] else None

    def _poll_bucket(self) -> None:
        groups: dict[str, list[dict[str, Any]]] = {"base": [], "wal": [], "etcd": []}
        for prefix, kind in ((BASE_PREFIX, "base"), (WAL_PREFIX, "wal"), (ETCD_PREFIX, "etcd")):
            groups[kind] = list_objects(self.s.s3, prefix, self.client)
        for kind, objs in groups.items():
            st = self.kinds[kind]
            if kind == "base":
                st.objects = sum(1 for o in objs if o["Key"].endswith("/" + MANIFEST))
            else:
                st.objects = len(objs)
            st.latest_object = max((o["LastModified"].timestamp() for o in objs), default=0.0)
            if kind == "wal":
                st.size_bytes = sum(o["Size"] for o in objs)

    # ------------------------------------------------------------------------------------------------------ jobs

    async def run_job(self, kind: str, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        st = self.kinds[kind]
        async with self.locks[kind]:
            st.runs += 1
            t0 = time.monotonic()
            try:
                result = await asyncio.to_thread(job)
            except Exception as exc:
                st.failures += 1
                st.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("%s backup failed: %s", kind, st.last_error)
                raise
            st.last_success = time.time()
            st.last_error = ""
            log.info("%s backup %s done in %.1f s", kind, result.get("id"), time.monotonic() - t0)
            return result

    async def periodic(self, kind: str, job: Callable[[], dict[str, Any]], first: float, interval: float) -> None:
        await asyncio.sleep(first)
        while True:
            try:
                await self.run_job(kind, job)
                await asyncio.sleep(interval)
            except Exception:
                await asyncio.sleep(min(interval, RETRY_AFTER_FAILURE))

    async def poll_loop(self) -> None:
        while True:
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(self.s.poll_interval)

    async def ensure_buckets(self, buckets: list[str]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                await asyncio.to_thread(self._create_buckets, buckets)
                return
            except Exception as exc:
                log.info("S3 not ready (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)

    def _create_buckets(self, buckets: list[str]) -> None:
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        for b in buckets:
            if b not in existing:
                self.client.create_bucket(Bucket=b)
                log.info("created bucket %s", b)

    def start(self, buckets: list[str]) -> None:
        self.s.work_dir.mkdir(parents=True, exist_ok=True)
        loops = [
            self.ensure_buckets(buckets),
            self.poll_loop(),
            self.periodic("base", self.take_base_backup, self.s.base_first_delay, self.s.base_interval),
        ]
        if self.s.etcd_endpoints:
            loops.append(self.periodic("etcd", self.take_etcd_snapshot, self.s.etcd_first_delay, self.s.etcd_interval))
        self.tasks = [asyncio.create_task(c) for c in loops]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # --------------------------------------------------------------------------------------------------- reports

    def status(self) -> dict[str, Any]:
        return {
            "backups": {k: vars(v) for k, v in self.kinds.items()},
            "replica": vars(self.replica) if self.s.replica else None,
            "bucket": f"s3://{self.s.s3['bucket']}",
        }


class AgentCollector:
    """Prometheus metrics from the agent's state at scrape time."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        yield from self._backup_metrics(a)
        if a.s.replica:
            yield from self._replication_metrics(a)

    @staticmethod
    def _backup_metrics(a: Agent) -> Iterator[Metric]:
        families = [
            (
                GaugeMetricFamily,
                "virtengine_backup_last_success_timestamp_seconds",
                "Last successful backup (wal: pg_stat_archiver.last_archived_time, 0 = never)",
                "last_success",
            ),
            (
                CounterMetricFamily,
                "virtengine_backup_failures",
                "Failed backup runs (wal: archive_command failures)",
                "failures",
            ),
            (
                GaugeMetricFamily,
                "virtengine_backup_size_bytes",
                "Size of the latest base backup / etcd snapshot; wal: all archived WAL in the bucket",
                "size_bytes",
            ),
            (
                GaugeMetricFamily,
                "virtengine_backup_objects",
                "Objects in the bucket (base: complete backups)",
                "objects",
            ),
            (
                GaugeMetricFamily,
                "virtengine_backup_latest_object_timestamp_seconds",
                "Newest object in the bucket (0 = none)",
                "latest_object",
            ),
        ]
        for cls, name, doc, attr in families:
            fam = cls(name, doc, labels=["kind"])
            for kind, st in a.kinds.items():
                fam.add_metric([kind], float(getattr(st, attr)))
            yield fam

    @staticmethod
    def _replication_metrics(a: Agent) -> Iterator[Metric]:
        r, name = a.replica, a.s.replica["name"]
        specs: list[tuple[str, str, float | None]] = [
            ("virtengine_replication_connected", "1 when the replica streams from the primary", float(r.connected)),
            (
                "virtengine_replication_synchronous",
                "1 when the replica is a synchronous standby",
                float(r.sync_state == "sync"),
            ),
            (
                "virtengine_replication_lag_seconds",
                "Replay lag seen by the primary (pg_stat_replication.replay_lag)",
                r.lag_seconds,
            ),
            ("virtengine_replication_lag_bytes", "WAL bytes written on the primary and not yet replayed", r.lag_bytes),
            ("virtengine_replica_up", "1 when the replica answers queries", float(r.up)),
            (
                "virtengine_replica_in_recovery",
                "1 while the replica is a standby (0 once promoted)",
                None if r.in_recovery is None else float(r.in_recovery),
            ),
            ("virtengine_replica_replay_lag_seconds", "Replay delay measured on the replica", r.replay_lag_seconds),
            (
                "virtengine_replica_replay_lag_bytes",
                "Received but not yet replayed WAL on the replica",
                r.replay_lag_bytes,
            ),
        ]
        for metric, doc, value in specs:
            if value is None:
                continue
            fam = GaugeMetricFamily(metric, doc, labels=["replica"])
            fam.add_metric([name], value)
            yield fam


def build_app(config: dict[str, Any]) -> Starlette:
    settings = Settings.from_config(config)
    agent = Agent(settings)
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))  # type: ignore[arg-type]
    buckets = list(dict.fromkeys([settings.s3["bucket"], *config.get("create_buckets", [])]))

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", **agent.status()})

    async def metrics(_: Request) -> Response:
        return metrics_response(registry)

    async def backups(_: Request) -> Response:
        try:
            base = await asyncio.to_thread(list_base_backups, settings.s3, agent.client)
            etcd = await asyncio.to_thread(list_etcd_snapshots, settings.s3, agent.client)
        except RestoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"base": base, "etcd": etcd})

    def trigger(kind: str, job: Callable[[], dict[str, Any]]) -> Callable[[Request], Any]:
        async def run(_: Request) -> Response:
            try:
                return JSONResponse(await agent.run_job(kind, job))
            except Exception as exc:
                return JSONResponse({"error": f"{kind} backup failed: {exc}"}, status_code=500)

        return run

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        agent.start(buckets)
        yield
        await agent.stop()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/api/v1/status", health),
            Route("/api/v1/backups", backups),
            Route("/api/v1/backups/base", trigger("base", agent.take_base_backup), methods=["POST"]),
            Route("/api/v1/backups/etcd", trigger("etcd", agent.take_etcd_snapshot), methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    config = load_config(argv)
    try:
        app = build_app(config)
    except (KeyError, TypeError, ValueError) as exc:
        print(f"error: bad backup config: {type(exc).__name__}: {exc}")
        return 2
    serve(app, config["listen"]["host"], int(config["listen"]["port"]), log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
