"""Restore tooling for the sandbox's backups (an operator's runbook, as functions and a CLI).

Layout of the backup bucket ``s3://virtengine-backups`` (written by ``vesandbox.backup`` and
``vesandbox.wal_archive``):

- ``base/<id>/base.tar.gz``, ``base/<id>/pg_wal.tar.gz``, ``base/<id>/backup_manifest`` and, written last,
  ``base/<id>/manifest.json`` (a backup without it is incomplete and ignored). ``<id>`` is the UTC start time
  ``YYYYMMDDTHHMMSS.mmmZ``, so ids sort by time.
- ``wal/<system_identifier>/<file>``: archived WAL, timeline history and backup-label files (gzip), one archive per
  database cluster (``vesandbox.wal_archive.archive_key``); ``restore_command`` reads the archive of the restored
  base backup's system only, so a restore (and the timeline its promotion picks) never follows another cluster's
  history, even when the object store outlived several sandboxes.
- ``etcd/<id>.db``: etcd snapshots of the validator set.

Functions: ``list_base_backups``, ``latest_base_backup``, ``restore_base_backup`` (a data directory that recovers
from the WAL archive, optionally up to ``recovery_target_time``), ``start_postgres`` / ``wait_recovered`` /
``stop_postgres``, ``list_etcd_snapshots``, ``restore_etcd_snapshot``. Failures raise ``RestoreError`` with one line.

CLI::

    python -m vesandbox.restore --config RUN/config/backup.json list
    python -m vesandbox.restore --endpoints RUN/endpoints.json postgres DIR [--target-time T] [--start --port P]
    python -m vesandbox.restore --config FILE etcd DIR --name etcd-0 --peer-url http://127.0.0.2:2380 \\
        [--initial-cluster etcd-0=...,etcd-1=...] [--owner vesbx-etcd-0]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vesandbox.procs import pid_alive
from vesandbox.wal_archive import archive_prefix, conf_quote, postgres_command

BASE_PREFIX = "base/"
WAL_PREFIX = "wal/"
ETCD_PREFIX = "etcd/"
MANIFEST = "manifest.json"
FETCH_CONFIG = "vesandbox-wal-fetch.json"
PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


class RestoreError(Exception):
    """A restore step failed; the message is one line an operator can act on."""


def s3_client(s3: dict[str, Any]) -> Any:
    """A boto3 S3 client for the sandbox endpoint (path-style), with short timeouts."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3.get("region", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=3,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


# ----------------------------------------------------------------------------------------------------- S3 helpers


def s3_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """The S3 settings in a component config (``{"s3": ...}``) or in endpoints.json (``{"storage": {"s3": ...}}``)."""
    s3 = doc.get("s3") or doc.get("storage", {}).get("s3")
    if not isinstance(s3, dict) or not {"endpoint", "access_key", "secret_key", "bucket"} <= set(s3):
        raise RestoreError("no S3 settings (endpoint, access_key, secret_key, bucket) in the given config")
    return s3


def _url(s3: dict[str, Any], prefix: str = "") -> str:
    return f"s3://{s3['bucket']}/{prefix}"


def list_objects(s3: dict[str, Any], prefix: str, client: Any = None) -> list[dict[str, Any]]:
    """Every object under ``prefix`` (Key, Size, LastModified), paginated."""
    client = client or s3_client(s3)
    out: list[dict[str, Any]] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3["bucket"], Prefix=prefix):
            out.extend(page.get("Contents", []))
    except Exception as exc:
        raise RestoreError(f"cannot list {_url(s3, prefix)} at {s3['endpoint']}: {type(exc).__name__}: {exc}") from exc
    return out


def list_base_backups(s3: dict[str, Any], client: Any = None) -> list[dict[str, Any]]:
    """Complete base backups (those with a manifest.json), oldest first."""
    client = client or s3_client(s3)
    keys = sorted(o["Key"] for o in list_objects(s3, BASE_PREFIX, client) if o["Key"].endswith("/" + MANIFEST))
    out = []
    for key in keys:
        try:
            out.append(json.loads(client.get_object(Bucket=s3["bucket"], Key=key)["Body"].read()))
        except Exception as exc:
            raise RestoreError(f"cannot read {_url(s3, key)}: {type(exc).__name__}: {exc}") from exc
    return sorted(out, key=lambda m: m["id"])


def latest_base_backup(
    s3: dict[str, Any], before: datetime | None = None, client: Any = None, backup_id: str | None = None
) -> dict[str, Any]:
    """The newest complete base backup (that finished before ``before``, or the one named ``backup_id``)."""
    backups = list_base_backups(s3, client)
    if backup_id:
        match = [m for m in backups if m["id"] == backup_id]
        if not match:
            raise RestoreError(f"no base backup {backup_id} in {_url(s3, BASE_PREFIX)}")
        return match[0]
    if before is not None:
        backups = [m for m in backups if m["finished_at_epoch"] < before.timestamp()]
        if not backups:
            raise RestoreError(f"no base backup finished before {before.isoformat()} in {_url(s3, BASE_PREFIX)}")
    if not backups:
        raise RestoreError(f"no base backup in {_url(s3, BASE_PREFIX)}")
    return backups[-1]


def list_etcd_snapshots(s3: dict[str, Any], client: Any = None) -> list[dict[str, Any]]:
    """etcd snapshots, oldest first: ``{"id", "key", "size", "last_modified"}``."""
    objs = [o for o in list_objects(s3, ETCD_PREFIX, client) if o["Key"].endswith(".db")]
    return [
        {
            "id": o["Key"][len(ETCD_PREFIX) : -3],
            "key": o["Key"],
            "size": o["Size"],
            "last_modified": o["LastModified"].timestamp(),
        }
        for o in sorted(objs, key=lambda o: o["Key"])
    ]


def _download(s3: dict[str, Any], client: Any, key: str, dest: Path) -> None:
    try:
        client.download_file(s3["bucket"], key, str(dest))
    except Exception as exc:
        raise RestoreError(f"cannot download {_url(s3, key)}: {type(exc).__name__}: {exc}") from exc


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ------------------------------------------------------------------------------------------------------ PostgreSQL


def find_pg_bin() -> Path:
    for d in PG_BIN_DIRS:
        if (d / "postgres").exists():
            return d
    raise RestoreError("PostgreSQL server binaries not found (apt-get install -y postgresql)")


def parse_time(value: str | datetime) -> datetime:
    """An aware UTC datetime from an RFC 3339 / ISO 8601 string (``Z`` allowed) or a datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RestoreError(f"bad time {value!r}: use RFC 3339, e.g. 2026-11-25T16:02:58Z") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _empty_target(target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        raise RestoreError(f"target directory {target} is not empty")
    target.mkdir(parents=True, exist_ok=True)


def _extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="tar")


def _chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


def restore_base_backup(
    s3: dict[str, Any],
    target_dir: Path | str,
    *,
    backup_id: str | None = None,
    target_time: str | datetime | None = None,
    owner: str = "postgres",
    archive: bool = False,
    extra_settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Unpack a base backup into ``target_dir`` and configure archive recovery from its system's WAL archive
    (``wal/<system_identifier>/``).

    Picks the latest complete backup (that finished before ``target_time``, if given) unless ``backup_id`` is
    given. Recovery replays the archive to its end (or to ``target_time``) and then promotes. ``archive=False``
    (a scratch restore) turns WAL archiving off so the restored server never writes into the bucket; set it for a
    server that becomes the new primary. Returns what was restored; start the server with ``start_postgres``.
    """
    target = Path(target_dir).resolve()
    when = parse_time(target_time) if target_time is not None else None
    client = s3_client(s3)
    manifest = latest_base_backup(s3, before=when, client=client, backup_id=backup_id)
    _empty_target(target)
    download = target.parent / f".{target.name}.download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    try:
        for f in manifest["files"]:
            local = download / f["name"]
            _download(s3, client, f"{BASE_PREFIX}{manifest['id']}/{f['name']}", local)
            if _sha256(local) != f["sha256"]:
                raise RestoreError(f"checksum mismatch for {_url(s3, BASE_PREFIX)}{manifest['id']}/{f['name']}")
        _extract(download / "base.tar.gz", target)
        if (download / "pg_wal.tar.gz").exists():
            _extract(download / "pg_wal.tar.gz", target / "pg_wal")
    except (OSError, tarfile.TarError) as exc:
        raise RestoreError(f"cannot unpack base backup {manifest['id']} into {target}: {exc}") from exc
    finally:
        shutil.rmtree(download, ignore_errors=True)
    _configure_recovery(s3, target, manifest, when, archive, extra_settings or {})
    _chown_tree(target, owner)
    target.chmod(0o700)
    return {
        "backup_id": manifest["id"],
        "target_dir": str(target),
        "start_lsn": manifest["start_lsn"],
        "end_lsn": manifest["end_lsn"],
        "backup_finished_at": manifest["finished_at"],
        "system_identifier": manifest["system_identifier"],
        "wal_prefix": archive_prefix({"prefix": WAL_PREFIX}, manifest["system_identifier"]),
        "target_time": when.isoformat() if when else None,
    }


def _configure_recovery(
    s3: dict[str, Any],
    target: Path,
    manifest: dict[str, Any],
    when: datetime | None,
    archive: bool,
    extra: dict[str, str],
) -> None:
    fetch_config = target / FETCH_CONFIG
    fetch_config.write_text(
        json.dumps(
            {
                "name": "wal-fetch",
                "weaknesses": [],
                "s3": s3,
                "prefix": WAL_PREFIX,
                "system_identifier": str(manifest["system_identifier"]),
            },
            indent=2,
        )
    )
    settings = {
        "restore_command": postgres_command(fetch_config, "--fetch", "%f", "%p"),
        "recovery_target_timeline": "latest",
        "recovery_target_action": "promote",
        "synchronous_standby_names": "",
        "primary_conninfo": "",
        "recovery_min_apply_delay": "0",
    }
    if when is not None:
        settings["recovery_target_time"] = when.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    if not archive:
        settings["archive_mode"] = "off"
    settings.update(extra)
    lines = [f"# vesandbox.restore: base backup {manifest['id']}, restored {datetime.now(UTC).isoformat()}"]
    lines += [f"{k} = {conf_quote(v)}" for k, v in settings.items()]
    with (target / "postgresql.auto.conf").open("a") as f:
        f.write("\n".join(lines) + "\n")
    (target / "standby.signal").unlink(missing_ok=True)
    (target / "recovery.signal").touch()


def start_postgres(
    data_dir: Path | str,
    port: int,
    *,
    pg_bin: Path | None = None,
    log_file: Path | None = None,
    socket_dir: Path | None = None,
    timeout: float = 60,
) -> int:
    """Start PostgreSQL on ``127.0.0.1:port`` as user postgres (``pg_ctl -w``); return the postmaster PID."""
    data = Path(data_dir).resolve()
    pg_bin = pg_bin or find_pg_bin()
    log_file = log_file or data.parent / f"{data.name}.log"
    socket_dir = socket_dir or data
    with contextlib.suppress(OSError):
        log_file.touch()
        shutil.chown(log_file, "postgres", "postgres")
    opts = f"-h 127.0.0.1 -p {port} -k {socket_dir}"
    cmd = ["runuser", "-u", "postgres", "--", str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log_file)]
    cmd += ["-w", "-t", str(int(timeout)), "-o", opts, "start"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
    if result.returncode != 0:
        raise RestoreError(f"PostgreSQL in {data} did not start: {_log_reason(log_file) or result.stderr.strip()}")
    pid = postmaster_pid(data)
    if pid is None:
        raise RestoreError(f"PostgreSQL in {data} started but wrote no postmaster.pid")
    return pid


def postmaster_pid(data_dir: Path | str) -> int | None:
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _log_reason(log_file: Path) -> str:
    """The last FATAL/PANIC line of a server log (what an operator needs to read first)."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    bad = [line for line in lines if "FATAL:" in line or "PANIC:" in line]
    return (bad or lines or [""])[-1].strip()


def wait_recovered(
    port: int, timeout: float = 120, data_dir: Path | str | None = None, log_file: Path | None = None
) -> float:
    """Wait until the server on ``port`` has left recovery (promoted); return the seconds waited."""
    import psycopg

    t0 = time.monotonic()
    deadline = t0 + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2, autocommit=True
            ) as conn:
                row = conn.execute("select pg_is_in_recovery()").fetchone()
                if row and not row[0]:
                    return time.monotonic() - t0
                last = "still in recovery"
        except psycopg.Error as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            pid = postmaster_pid(data_dir) if data_dir else None
            if data_dir and (pid is None or not pid_alive(pid)):
                log = log_file or Path(data_dir).resolve().parent / f"{Path(data_dir).name}.log"
                raise RestoreError(f"restored server stopped during recovery: {_log_reason(log) or last}") from exc
        time.sleep(0.2)
    raise RestoreError(f"server on port {port} still not recovered after {timeout:.0f} s ({last})")


def stop_postgres(data_dir: Path | str, pg_bin: Path | None = None, timeout: float = 20) -> None:
    """Stop the server of ``data_dir`` (fast shutdown, then SIGKILL of its postmaster by PID)."""
    data = Path(data_dir).resolve()
    pid = postmaster_pid(data)
    if pid is None:
        return
    pg_bin = pg_bin or find_pg_bin()
    cmd = ["runuser", "-u", "postgres", "--", str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w"]
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            [*cmd, "-t", str(int(timeout)), "stop"],
            capture_output=True,
            timeout=timeout + 10,
        )
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


# ------------------------------------------------------------------------------------------------------------ etcd


def restore_etcd_snapshot(
    s3: dict[str, Any],
    data_dir: Path | str,
    *,
    name: str,
    peer_url: str,
    initial_cluster: str | None = None,
    token: str = "vesandbox",
    snapshot: str | None = None,
    owner: str | None = None,
    etcdctl: str | None = None,
) -> dict[str, Any]:
    """Restore an etcd snapshot (latest, or id/key ``snapshot``) into a new member data dir (must not exist).

    For a multi-member cluster restore the same snapshot once per member, each with its own ``name`` and
    ``peer_url`` and the same ``initial_cluster``; then start the members with those names and peer URLs.
    """
    target = Path(data_dir).resolve()
    if target.exists() and any(target.iterdir()):
        raise RestoreError(f"etcd data directory {target} already exists and is not empty")
    with contextlib.suppress(FileNotFoundError):
        target.rmdir()
    client = s3_client(s3)
    snaps = list_etcd_snapshots(s3, client)
    if snapshot:
        snaps = [s for s in snaps if snapshot in (s["id"], s["key"])]
    if not snaps:
        what = f"etcd snapshot {snapshot}" if snapshot else "etcd snapshot"
        raise RestoreError(f"no {what} in {_url(s3, ETCD_PREFIX)}")
    snap = snaps[-1]
    local = target.parent / f".{target.name}.snapshot.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(s3, client, snap["key"], local)
        cmd = [etcdctl or shutil.which("etcdctl") or "etcdctl", "snapshot", "restore", str(local)]
        cmd += [f"--name={name}", f"--data-dir={target}", f"--initial-advertise-peer-urls={peer_url}"]
        cmd += [f"--initial-cluster={initial_cluster or f'{name}={peer_url}'}", f"--initial-cluster-token={token}"]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "ETCDCTL_API": "3"}
        )
        if result.returncode != 0:
            reason = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
            raise RestoreError(f"etcdctl snapshot restore of {_url(s3, snap['key'])} failed: {' '.join(reason)}")
    finally:
        local.unlink(missing_ok=True)
    if owner:
        _chown_tree(target, owner)
    target.chmod(0o700)
    return {"snapshot": snap["key"], "data_dir": str(target), "name": name, "peer_url": peer_url}


# ----------------------------------------------------------------------------------------------------- command line


def _load_s3(args: argparse.Namespace) -> dict[str, Any]:
    path = args.config or args.endpoints
    if not path:
        raise RestoreError("give --config FILE (a sandbox component config) or --endpoints RUN/endpoints.json")
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RestoreError(f"cannot read {path}: {exc}") from exc
    return s3_settings(doc)


def _cmd_list(s3: dict[str, Any], args: argparse.Namespace) -> None:
    base = list_base_backups(s3)
    etcd = list_etcd_snapshots(s3)
    if args.json:
        print(json.dumps({"base": base, "etcd": etcd}, indent=2))
        return
    print(f"base backups in {_url(s3, BASE_PREFIX)}: {len(base)}")
    for m in base:
        print(
            f"  {m['id']}  {m['size_bytes']:>10} B  lsn {m['start_lsn']}..{m['end_lsn']}  finished {m['finished_at']}"
        )
    print(f"etcd snapshots in {_url(s3, ETCD_PREFIX)}: {len(etcd)}")
    for s in etcd:
        print(f"  {s['id']}  {s['size']:>10} B")


def _cmd_postgres(s3: dict[str, Any], args: argparse.Namespace) -> None:
    info = restore_base_backup(
        s3, args.target_dir, backup_id=args.backup, target_time=args.target_time, archive=args.archive
    )
    print(f"restored base backup {info['backup_id']} into {info['target_dir']}")
    if args.start:
        if not args.port:
            raise RestoreError("--start needs --port")
        start_postgres(info["target_dir"], args.port)
        waited = wait_recovered(args.port, timeout=args.timeout, data_dir=info["target_dir"])
        print(f"recovered and promoted on 127.0.0.1:{args.port} in {waited:.1f} s")


def _cmd_etcd(s3: dict[str, Any], args: argparse.Namespace) -> None:
    info = restore_etcd_snapshot(
        s3,
        args.data_dir,
        name=args.name,
        peer_url=args.peer_url,
        initial_cluster=args.initial_cluster,
        token=args.token,
        snapshot=args.snapshot,
        owner=args.owner,
    )
    print(f"restored {info['snapshot']} into {info['data_dir']} as member {info['name']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vesandbox.restore", description="Restore sandbox backups")
    parser.add_argument("--config", help="a component config with an 's3' object (e.g. RUN/config/backup.json)")
    parser.add_argument("--endpoints", help="RUN/endpoints.json (uses storage.s3)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_list = sub.add_parser("list", help="list base backups and etcd snapshots")
    p_list.add_argument("--json", action="store_true")
    p_pg = sub.add_parser("postgres", help="restore a base backup + WAL archive into a new data directory")
    p_pg.add_argument("target_dir", type=Path)
    p_pg.add_argument("--backup", help="backup id (default: the latest usable one)")
    p_pg.add_argument("--target-time", help="recovery_target_time, RFC 3339 (default: end of the archive)")
    p_pg.add_argument("--archive", action="store_true", help="keep WAL archiving on (a new primary)")
    p_pg.add_argument("--start", action="store_true", help="start it and wait until it has recovered")
    p_pg.add_argument("--port", type=int)
    p_pg.add_argument("--timeout", type=float, default=120)
    p_etcd = sub.add_parser("etcd", help="restore an etcd snapshot into a new member data directory")
    p_etcd.add_argument("data_dir", type=Path)
    p_etcd.add_argument("--name", required=True)
    p_etcd.add_argument("--peer-url", required=True)
    p_etcd.add_argument("--initial-cluster")
    p_etcd.add_argument("--token", default="vesandbox")
    p_etcd.add_argument("--snapshot", help="snapshot id or key (default: the latest)")
    p_etcd.add_argument("--owner", help="chown the data dir to this user")
    args = parser.parse_args(argv)
    try:
        s3 = _load_s3(args)
        {"list": _cmd_list, "postgres": _cmd_postgres, "etcd": _cmd_etcd}[args.cmd](s3, args)
    except RestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
