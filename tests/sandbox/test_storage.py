"""Object storage, backups, restores and the replica (vesandbox.storage / backup / wal_archive / restore / replica).

Real processes: a PostgreSQL 15 primary (as user postgres), ``rclone serve s3``, the backup agent, the streaming
replica (and its slow link under a weakness) and a single etcd member, started from the commands that
``storage_components`` gives the launcher, with ports shifted by +600 (+700 for the weakened stack). Everything is
stopped by PID in finalizers and every folder (the S3 folder too) is removed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "sandbox"))

from vesandbox import backup, restore, storage, wal_archive  # noqa: E402
from vesandbox.launcher import Layout  # noqa: E402

from tests import support  # noqa: E402
from tests.support import pid_alive, port_free  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (PG_BIN / "postgres").exists(), reason="PostgreSQL 15 is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run PostgreSQL as the postgres user"),
    pytest.mark.timeout(240),
]

RECORDS = """
CREATE TABLE IF NOT EXISTS records (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    written_at timestamptz NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# polls here retry on these errors only (a component not up yet, an object not in the bucket yet); any other fails
wait_for = functools.partial(support.wait_for, errors=(httpx.HTTPError, psycopg.Error, OSError, restore.RestoreError))


def connect(port: int, dbname: str = "marketplace") -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname=dbname,
        connect_timeout=2,
        autocommit=True,
        options="-c statement_timeout=20000",  # a commit stuck waiting for a sync standby fails instead of hanging
    )


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def etcd_member(name: str, data: Path, client: str, peer: str) -> list[str]:
    """Command line of a single-member etcd."""
    return [
        ETCD,
        f"--name={name}",
        f"--data-dir={data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
    ]


def etcdctl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [ETCDCTL, f"--endpoints={url}", "--dial-timeout=2s", "--command-timeout=2s", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, env={**os.environ, "ETCDCTL_API": "3"})


def as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd]


class Stack:
    """One primary with storage components; ``close`` stops everything by PID and removes every folder."""

    def __init__(self, offset: int, weaknesses: list[str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"vesbx-storage-{offset}-"))
        self.root.chmod(0o755)
        self.layout = Layout(run_dir=self.root / "run", offset=offset, weaknesses=list(weaknesses))
        self.layout.s3_dir = self.root / "s3"  # type: ignore[attr-defined]
        self.weaknesses = weaknesses
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.scratch_pg: list[Path] = []
        self.http = httpx.Client(timeout=30)
        self.s3 = storage.s3_settings(self.layout)

    # -------------------------------------------------------------------------------------------------- start

    def start(self, with_etcd: bool = False, link_delay: float | None = None) -> None:
        busy = [f"{h}:{p}" for h, p, _ in storage.storage_listeners(self.layout) if not port_free(h, p)]
        busy += [f"pg:{self.layout.pg_port}"] if not port_free("127.0.0.1", self.layout.pg_port) else []
        assert not busy, f"ports in use: {busy}"
        for d in (self.layout.config_dir, self.layout.log_dir, self.layout.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.init_primary()
        self.settings = storage.prepare_storage(self.layout, self.weaknesses, PG_BIN)
        self.components = {c["name"]: c for c in storage.storage_components(self.layout, self.weaknesses)}
        if link_delay is not None:
            path = self.layout.config_dir / "replica-link.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), "delay": link_delay}))
        self.start_primary()
        if with_etcd:
            self.start_etcd()
        for name in ("s3", "replica-link", "replica", "backup"):
            if name in self.components:
                self.spawn(name, self.components[name]["command"])
        for name, c in self.components.items():
            wait_for(lambda c=c: self.healthy(c["health"]), 60, f"{name} healthy ({self.log_tail(name)})")
        # with synchronous replication a commit waits for the replica, so the schema comes after it
        with connect(self.layout.pg_port, "postgres") as conn:
            conn.execute("CREATE DATABASE marketplace")
        with connect(self.layout.pg_port) as conn:
            conn.execute(RECORDS)

    def init_primary(self) -> None:
        data = self.layout.data_dir / "postgres"
        sock = self.layout.data_dir / "pg-socket"
        for d in (data, sock):
            d.mkdir(parents=True)
            shutil.chown(d, "postgres", "postgres")
        data.chmod(0o700)
        subprocess.run(
            as_postgres(
                str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
            )
            + storage.PRIMARY_INITDB_ARGS,
            check=True,
            capture_output=True,
            timeout=120,
        )
        with (data / "pg_hba.conf").open("a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")

    def start_primary(self) -> None:
        data = self.layout.data_dir / "postgres"
        cmd = [str(PG_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.layout.pg_port)]
        cmd += ["-k", str(self.layout.data_dir / "pg-socket"), "-c", "wal_level=replica", "-c", "max_wal_senders=5"]
        cmd += ["-c", "fsync=off", "-c", "shared_buffers=32MB", "-c", "max_connections=40"]
        self.spawn("postgres", as_postgres(*cmd))
        wait_for(lambda: connect(self.layout.pg_port, "postgres").close() or True, 30, "primary up")

    def start_etcd(self) -> None:
        client, peer = self.layout.etcd_client(0), self.layout.etcd_peer(0)
        self.spawn("etcd", etcd_member("etcd-0", self.root / "etcd-0", client, peer))
        wait_for(lambda: self.http.get(f"{client}/health", timeout=1).status_code == 200, 30, "etcd healthy")

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = (self.layout.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.procs[name] = proc
        return proc

    def healthy(self, health: str) -> bool:
        kind, _, target = health.partition(":")
        if kind == "tcp":
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        return self.http.get(target, timeout=2).status_code == 200

    def log_tail(self, name: str) -> str:
        path = self.layout.log_dir / f"{name}.log"
        return " | ".join(path.read_text(errors="replace").splitlines()[-3:]) if path.exists() else "no log"

    # -------------------------------------------------------------------------------------------------- helpers

    @property
    def agent(self) -> str:
        return f"http://127.0.0.1:{storage.backup_port(self.layout)}"

    def metrics(self) -> str:
        return self.http.get(f"{self.agent}/metrics").text

    def wal_objects(self) -> list[str]:
        return [o["Key"] for o in restore.list_objects(self.s3, restore.WAL_PREFIX)]

    def system(self, port: int | None = None) -> str:
        """The primary's (or the server on ``port``'s) database system identifier."""
        with connect(port or self.layout.pg_port, "postgres") as conn:
            return str(conn.execute("select system_identifier from pg_control_system()").fetchone()[0])

    def archive_config(self, **extra: Any) -> dict[str, Any]:
        return {**json.loads((self.layout.config_dir / "wal-archive.json").read_text()), **extra}

    def switch_wal(self) -> str:
        """Close the current WAL segment; return its name."""
        with connect(self.layout.pg_port) as conn:
            name = conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
            conn.execute("select pg_switch_wal()")
        return name

    def scratch_dir(self, name: str) -> Path:
        d = self.root / name
        self.scratch_pg.append(d)
        return d

    def promote_replica(self) -> None:
        data = storage.replica_data_dir(self.layout)
        subprocess.run(
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "20", "promote"),
            check=True,
            capture_output=True,
            timeout=30,
        )

    # ----------------------------------------------------------------------------------------------------- stop

    def close(self) -> None:
        self.http.close()
        for d in self.scratch_pg:
            pid = restore.postmaster_pid(d)
            if pid is not None:
                restore.stop_postgres(d, PG_BIN, timeout=10)
        # the primary runs under runuser, which does not pass signals on: fast shutdown by the postmaster's own PID
        postmaster = restore.postmaster_pid(self.layout.data_dir / "postgres")
        # reverse start order, as supervisord does: the primary's archiver still needs S3 while it shuts down
        for name in ("backup", "replica", "replica-link", "postgres", "s3", "etcd", "etcd-restored"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if name == "postgres" and postmaster is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(postmaster, signal.SIGINT)  # runuser exits once the postmaster has
            self._stop(proc, signal.SIGINT if name == "replica" else signal.SIGTERM, signal_it=name != "postgres")
        if postmaster is not None and pid_alive(postmaster):
            os.kill(postmaster, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes], sig: int, signal_it: bool = True) -> None:
        if proc.poll() is None:
            if signal_it:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # children of the group we created (pg_basebackup, etcdctl, postgres backends) that outlived it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="class")
def stack() -> Iterator[Stack]:
    s = Stack(offset=600, weaknesses=[])
    try:
        s.start(with_etcd=True)
        yield s
    finally:
        s.close()


@pytest.fixture(scope="class")
def weak_stack() -> Iterator[Stack]:
    s = Stack(offset=700, weaknesses=["async-replication-loses-writes", "broken-wal-archive"])
    try:
        # a 2 s link (5 s in the sandbox) keeps the test short: the replica's handshake takes several round trips
        s.start(link_delay=2.0)
        yield s
    finally:
        s.close()


def insert(port: int, rows: dict[str, Any]) -> None:
    with connect(port) as conn, conn.transaction():
        for key, value in rows.items():
            conn.execute(
                "INSERT INTO records (key, value, written_at) VALUES (%s, %s::jsonb, now())", (key, json.dumps(value))
            )


def keys(port: int, prefix: str) -> set[str]:
    with connect(port) as conn:
        return {r[0] for r in conn.execute("SELECT key FROM records WHERE starts_with(key, %s)", (prefix,))}


class TestBackupsAndReplica:
    def test_base_backup_and_wal_segments_land_in_the_bucket(self, stack: Stack) -> None:
        base = wait_for(lambda: restore.list_base_backups(stack.s3), 40, "the first scheduled base backup")
        m = base[-1]
        assert {f["name"] for f in m["files"]} >= {"base.tar.gz", "pg_wal.tar.gz", "backup_manifest"}
        assert m["start_lsn"] and m["end_lsn"] and m["size_bytes"] > 0
        assert restore.latest_base_backup(stack.s3)["id"] == m["id"]
        segment = stack.switch_wal()
        key = f"wal/{stack.system()}/{segment}"
        wait_for(lambda: key in stack.wal_objects(), 30, f"WAL segment {segment} in the bucket at {key}")
        assert m["wal_prefix"] == f"wal/{stack.system()}/" and m["system_identifier"] == stack.system()

        def agent_saw_it() -> bool:
            text = stack.metrics()
            return (metric(text, "virtengine_backup_last_success_timestamp_seconds", kind="base") or 0) > 0 and (
                metric(text, "virtengine_backup_objects", kind="wal") or 0
            ) >= 1

        wait_for(agent_saw_it, 20, "the agent's metrics to show the base backup and the WAL")
        text = stack.metrics()
        assert (metric(text, "virtengine_backup_size_bytes", kind="base") or 0) > 0
        assert metric(text, "virtengine_backup_failures_total", kind="base") == 0
        assert (metric(text, "virtengine_backup_last_success_timestamp_seconds", kind="wal") or 0) > 0

    def test_restore_latest_base_backup_replays_the_archive(self, stack: Stack) -> None:
        restore.latest_base_backup(stack.s3)  # from the previous test
        insert(stack.layout.pg_port, {f"pitr/early-{i}": {"i": i} for i in range(5)})
        with connect(stack.layout.pg_port) as conn:
            between = conn.execute("select clock_timestamp()").fetchone()[0]
        insert(stack.layout.pg_port, {f"pitr/late-{i}": {"i": i} for i in range(3)})
        segment = stack.switch_wal()
        key = f"wal/{stack.system()}/{segment}"
        wait_for(lambda: key in stack.wal_objects(), 30, f"WAL segment {segment} archived at {key}")
        expected_all = {f"pitr/early-{i}" for i in range(5)} | {f"pitr/late-{i}" for i in range(3)}

        full = stack.scratch_dir("restore-full")
        info = restore.restore_base_backup(stack.s3, full)
        assert (full / "recovery.signal").exists()
        port = stack.layout.port(55452)
        restore.start_postgres(full, port, pg_bin=PG_BIN)
        restore.wait_recovered(port, timeout=90, data_dir=full)
        assert keys(port, "pitr/") == expected_all, f"restored from {info['backup_id']}"

        pitr = stack.scratch_dir("restore-pitr")
        restore.restore_base_backup(stack.s3, pitr, target_time=between)
        port2 = stack.layout.port(55453)
        restore.start_postgres(pitr, port2, pg_bin=PG_BIN)
        restore.wait_recovered(port2, timeout=90, data_dir=pitr)
        assert keys(port2, "pitr/") == {f"pitr/early-{i}" for i in range(5)}

    def test_restore_errors_are_one_line(self, stack: Stack) -> None:
        empty = {**stack.s3, "bucket": storage.RESULTS_BUCKET}
        with pytest.raises(restore.RestoreError, match=r"^no base backup in s3://drillbit-results/base/$"):
            restore.restore_base_backup(empty, stack.root / "never")
        with pytest.raises(restore.RestoreError, match="not empty"):
            restore.restore_base_backup(stack.s3, stack.layout.data_dir)
        config = stack.layout.config_dir / "backup.json"
        result = subprocess.run(
            [sys.executable, "-m", "vesandbox.restore", "--config", str(config), "list", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT / "infra" / "sandbox")},
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["base"]

    def test_etcd_snapshot_restores_into_a_new_member(self, stack: Stack) -> None:
        client = stack.layout.etcd_client(0)
        put = etcdctl(client, "put", "/validators/probe", "before-snapshot")
        assert put.returncode == 0, put.stderr
        snap = stack.http.post(f"{stack.agent}/api/v1/backups/etcd")
        assert snap.status_code == 200, snap.text
        assert snap.json()["key"] in {s["key"] for s in restore.list_etcd_snapshots(stack.s3)}

        port = stack.layout.port(2379 + 50)
        peer, url = f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port}"
        data = stack.root / "etcd-restored"
        restore.restore_etcd_snapshot(stack.s3, data, name="etcd-restored", peer_url=peer)
        stack.spawn("etcd-restored", etcd_member("etcd-restored", data, url, peer))
        out = wait_for(
            lambda: etcdctl(url, "get", "/validators/probe", "--print-value-only").stdout.strip(),
            30,
            "the restored member to serve the key",
        )
        assert out == "before-snapshot"

    def test_replica_streams_synchronously_and_reports_lag(self, stack: Stack) -> None:
        insert(stack.layout.pg_port, {"repl/one": 1})
        replica = storage.replica_port(stack.layout)
        wait_for(lambda: "repl/one" in keys(replica, "repl/"), 20, "the row on the replica")
        with connect(stack.layout.pg_port) as conn:
            row = conn.execute(
                "select sync_state from pg_stat_replication where application_name = %s", (storage.REPLICA_NAME,)
            ).fetchone()
        assert row == ("sync",)

        def lag_reported() -> str | None:
            text = stack.metrics()
            return text if metric(text, "virtengine_replication_lag_seconds", replica="replica") is not None else None

        text = wait_for(lag_reported, 20, "replication lag metrics")
        assert metric(text, "virtengine_replication_connected", replica="replica") == 1
        assert metric(text, "virtengine_replication_synchronous", replica="replica") == 1
        assert metric(text, "virtengine_replication_lag_bytes", replica="replica") is not None
        assert metric(text, "virtengine_replica_in_recovery", replica="replica") == 1
        assert metric(text, "virtengine_replica_replay_lag_seconds", replica="replica") is not None

    def test_a_restore_reads_its_own_clusters_archive_never_an_earlier_clusters_timelines(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        """An earlier cluster on the same object store left timelines 2 and 3 (a failover, a restore): with one
        archive per cluster the restore of this cluster's backup neither reads them nor picks its timeline after
        them (with a shared ``wal/`` it followed them and failed: not a child of this server's history)."""
        system = stack.system()
        other = str(int(system) + 1)
        old_config = stack.archive_config(system_identifier=other)
        segment = b"\0" * wal_archive.SYSID_OFFSET + struct.pack("<Q", int(other)) + b"\1" * 200
        (tmp_path / "seg").write_bytes(segment)
        assert wal_archive.push(old_config, tmp_path / "seg", "000000030000000000000009") == "uploaded"
        for tli, parent in ((2, 1), (3, 2)):
            (tmp_path / "h").write_text(f"{parent}\t0/9000000\tno recovery target specified\n")
            assert wal_archive.push(old_config, tmp_path / "h", f"{tli:08X}.history") == "uploaded"
            boto = restore.s3_client(stack.s3)  # and the same in the flat layout of old: no longer read either
            boto.put_object(Bucket=stack.s3["bucket"], Key=f"wal/{tli:08X}.history", Body=(tmp_path / "h").read_bytes())
        objects = stack.wal_objects()
        assert {f"wal/{other}/00000002.history", f"wal/{other}/00000003.history"} <= set(objects)
        assert f"wal/{other}/000000030000000000000009" in objects
        assert not any(k.startswith(f"wal/{system}/") and k.endswith(".history") for k in objects), objects

        insert(stack.layout.pg_port, {"own/after-the-other": 1})
        segment_name = stack.switch_wal()
        wait_for(lambda: f"wal/{system}/{segment_name}" in stack.wal_objects(), 30, f"{segment_name} archived")
        restored = stack.scratch_dir("restore-own-archive")
        info = restore.restore_base_backup(stack.s3, restored)
        assert info["system_identifier"] == system and info["wal_prefix"] == f"wal/{system}/"
        fetch = json.loads((restored / restore.FETCH_CONFIG).read_text())
        assert wal_archive.archive_key(fetch, fetch["system_identifier"], "x") == f"wal/{system}/x"
        port = stack.layout.port(55454)
        restore.start_postgres(restored, port, pg_bin=PG_BIN)
        restore.wait_recovered(port, timeout=90, data_dir=restored)
        assert stack.system(port) == system
        with connect(port) as conn:
            timeline = int(conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()[0][:8], 16)
        assert timeline == 2, "the promotion picks its timeline from this cluster's history only (it had none)"
        assert "own/after-the-other" in keys(port, "own/")

    def test_synchronous_failover_keeps_every_acknowledged_write(self, stack: Stack) -> None:
        insert(stack.layout.pg_port, {"failover/acked": True})
        stack.promote_replica()  # at once: no wait for replay
        replica = storage.replica_port(stack.layout)
        with connect(replica) as conn:
            assert conn.execute("select pg_is_in_recovery()").fetchone() == (False,)
        assert "failover/acked" in keys(replica, "failover/")

    def test_pruning_drops_the_archives_no_kept_backup_refers_to(self, stack: Stack) -> None:
        """After the failover the promoted replica archives its timeline history (no system id inside: taken from
        its pg_control) into the same cluster's archive; a base backup then prunes every other archive (the
        earlier cluster's and the flat layout of old) and keeps this cluster's."""
        system = stack.system()
        history = f"wal/{system}/00000002.history"
        wait_for(lambda: history in stack.wal_objects(), 30, f"the promoted replica's {history}")
        before = stack.wal_objects()
        own = [k for k in before if k.startswith(f"wal/{system}/")]
        assert len(before) > len(own), "the previous test left an earlier cluster's archive and flat keys"
        r = stack.http.post(f"{stack.agent}/api/v1/backups/base")
        assert r.status_code == 200, r.text
        after = stack.wal_objects()
        assert [k for k in after if not k.startswith(f"wal/{system}/")] == [], after
        assert set(own) <= set(after), "this cluster's archive (all newer than its oldest kept backup) is kept"


class FakeBucket:
    """What ``Agent.prune_wal`` uses of a boto3 client: list (one page) and delete."""

    def __init__(self, objects: dict[str, float]) -> None:
        self.objects = dict(objects)

    def get_paginator(self, _: str) -> Any:
        def paginate(Bucket: str, Prefix: str) -> list[dict[str, Any]]:
            contents = [
                {"Key": k, "Size": 1, "LastModified": datetime.fromtimestamp(t, UTC)}
                for k, t in sorted(self.objects.items())
                if k.startswith(Prefix)
            ]
            return [{"Contents": contents}]

        return SimpleNamespace(paginate=paginate)

    def delete_object(self, Bucket: str, Key: str) -> None:
        del self.objects[Key]


def test_wal_pruning_keeps_only_what_the_kept_backups_need() -> None:
    """Retention of the WAL archive, without a server: the archives of systems no kept backup refers to go (flat
    keys of the old layout too); in a kept system's archive, segments older than its oldest kept backup (a minute
    of slack) go, its history and backup-label files and newer segments stay."""
    t = 1_000_000.0
    bucket = FakeBucket(
        {
            "wal/111/000000010000000000000001": t - 500,  # kept system, before its oldest kept backup
            "wal/111/000000010000000000000002": t - 30,  # within the slack
            "wal/111/00000002.history": t - 500,
            "wal/111/000000010000000000000001.00000028.backup": t - 500,
            "wal/111/000000020000000000000003.partial": t - 500,
            "wal/111/000000020000000000000004": t + 10,
            "wal/222/000000010000000000000001": t + 100,  # a system with no kept backup (an earlier cluster)
            "wal/222/00000002.history": t + 100,
            "wal/000000010000000000000007": t + 100,  # the flat layout of old
            "base/x/manifest.json": t - 500,  # not the archive: never touched
        }
    )
    agent = backup.Agent.__new__(backup.Agent)
    agent.s = SimpleNamespace(s3={"bucket": "b", "endpoint": "fake"})  # type: ignore[assignment]
    agent.client = bucket
    kept = [
        {"id": "b1", "system_identifier": "111", "started_at_epoch": t},
        {"id": "b2", "system_identifier": "111", "started_at_epoch": t + 5},
    ]
    deleted = agent.prune_wal(kept)
    assert sorted(deleted) == [
        "wal/000000010000000000000007",
        "wal/111/000000010000000000000001",
        "wal/111/000000020000000000000003.partial",
        "wal/222/000000010000000000000001",
        "wal/222/00000002.history",
    ]
    assert sorted(bucket.objects) == [
        "base/x/manifest.json",
        "wal/111/000000010000000000000001.00000028.backup",
        "wal/111/000000010000000000000002",
        "wal/111/00000002.history",
        "wal/111/000000020000000000000004",
    ]
    assert agent.prune_wal(kept) == [], "idempotent"


def test_archive_keys_name_the_database_system(tmp_path: Path) -> None:
    """Which system a file belongs to: a segment's own page header; a history or backup-label file (none inside):
    the archiving cluster's pg_control (%p is pg_wal/<f> in its data directory), else the config."""
    config = {"prefix": "wal/"}
    segment = b"\0" * wal_archive.SYSID_OFFSET + struct.pack("<Q", 7301) + b"\0" * 64
    data = tmp_path / "pgdata"
    (data / "global").mkdir(parents=True)
    (data / "pg_wal").mkdir()
    (data / "global" / "pg_control").write_bytes(struct.pack("<Q", 42) + b"\0" * 100)
    wal = data / "pg_wal"
    assert wal_archive.file_system_identifier(config, wal / "x", "000000010000000000000001", segment) == 7301
    assert wal_archive.file_system_identifier(config, wal / "x", "000000010000000000000001.partial", segment) == 7301
    assert wal_archive.file_system_identifier(config, wal / "x", "00000002.history", b"1\t0/1\tx\n") == 42
    backup_label = "000000010000000000000001.00000028.backup"
    assert wal_archive.file_system_identifier(config, wal / "x", backup_label, b"START WAL") == 42
    assert wal_archive.archive_key(config, 42, "00000002.history") == "wal/42/00000002.history"
    elsewhere = tmp_path / "a" / "b"
    assert (
        wal_archive.file_system_identifier({**config, "system_identifier": "9"}, elsewhere, "00000002.history", b"")
        == 9
    )
    with pytest.raises(wal_archive.ArchiveError, match=r"cannot tell which database system 00000002\.history"):
        wal_archive.file_system_identifier(config, elsewhere, "00000002.history", b"")
    with pytest.raises(wal_archive.ArchiveError, match="names no system_identifier"):
        wal_archive.fetch({"prefix": "wal/", "s3": {}}, "00000002.history", tmp_path / "out")


class TestWeaknesses:
    def test_broken_wal_archive_uploads_nothing_and_pitr_loses_later_writes(self, weak_stack: Stack) -> None:
        base = weak_stack.http.post(f"{weak_stack.agent}/api/v1/backups/base")
        assert base.status_code == 200, base.text
        insert(weak_stack.layout.pg_port, {"lost/after-base": 1})
        segment = weak_stack.switch_wal()

        def archived() -> bool:
            with connect(weak_stack.layout.pg_port) as conn:
                last = conn.execute("select coalesce(last_archived_wal, '') from pg_stat_archiver").fetchone()[0]
            return last >= segment

        wait_for(archived, 30, f"PostgreSQL to believe {segment} is archived")
        assert weak_stack.wal_objects() == []

        def agent_sees_gap() -> str | None:
            text = weak_stack.metrics()
            ok = (metric(text, "virtengine_backup_last_success_timestamp_seconds", kind="wal") or 0) > 0
            return text if ok else None

        text = wait_for(agent_sees_gap, 20, "the agent to report the (apparent) WAL success")
        assert metric(text, "virtengine_backup_objects", kind="wal") == 0
        assert metric(text, "virtengine_backup_failures_total", kind="wal") == 0

        restored = weak_stack.scratch_dir("restore-broken")
        info = restore.restore_base_backup(weak_stack.s3, restored)
        assert info["backup_id"] == base.json()["id"]
        port = weak_stack.layout.port(55452)
        restore.start_postgres(restored, port, pg_bin=PG_BIN)
        restore.wait_recovered(port, timeout=90, data_dir=restored)
        assert keys(port, "lost/") == set(), "a write after the base backup cannot survive a restore"

    def test_async_replication_loses_acknowledged_writes_on_failover(self, weak_stack: Stack) -> None:
        primary, replica = weak_stack.layout.pg_port, storage.replica_port(weak_stack.layout)
        insert(primary, {"async/marker": 1})
        wait_for(lambda: "async/marker" in keys(replica, "async/"), 40, "the replica to stream (late)")
        with connect(primary) as conn:
            state = conn.execute("select sync_state from pg_stat_replication").fetchone()
        assert state == ("async",)

        ticks = iter(range(1000))

        def lag_seen() -> float | None:
            insert(primary, {f"tick/{next(ticks)}": 0})  # keep WAL flowing so the primary keeps measuring lag
            lag = metric(weak_stack.metrics(), "virtengine_replication_lag_seconds", replica="replica")
            return lag if lag is not None and lag >= 1.0 else None

        wait_for(lag_seen, 30, "the agent to report the replica's lag (about the link's 2 s)", interval=0.3)
        insert(primary, {"async/acked": 2})  # committed and acknowledged by the primary
        t0 = time.monotonic()
        weak_stack.promote_replica()
        assert time.monotonic() - t0 < 1.0
        assert "async/acked" in keys(primary, "async/")
        assert keys(replica, "async/") == {"async/marker"}, "the acknowledged write must be missing on the replica"
