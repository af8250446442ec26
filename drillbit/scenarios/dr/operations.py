"""What the disaster-recovery drills *do* to the sandbox (``objectives`` measures what it cost): lose a region, promote
the replica, repoint the database Service, corrupt data files, restore from the object store, check monitoring. No
Prefect here.

Everything acts on the real thing (supervisor XML-RPC, PostgreSQL, the fault proxy's control API, S3 through boto3,
the sandbox's own restore CLI as a subprocess); Drillbit still never imports the sandbox's code.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import httpx

from drillbit.client import VirtEngineClient
from drillbit.poll import wait_until
from drillbit.scenarios.dr import objectives

PAGE = 8192


class DrError(RuntimeError):
    """A drill step failed; one line an operator can act on."""


class PreflightError(DrError):
    """The drill cannot run as asked (bad parameter, nothing to restore from): raised before anything is destroyed."""


# ------------------------------------------------------------------------------------------------------- processes


class Supervisor:
    """The sandbox's process supervisor (supervisord XML-RPC), as a platform that starts and stops components."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rpc = xmlrpc.client.ServerProxy(url).supervisor

    def info(self, name: str) -> dict[str, Any]:
        try:
            return self.rpc.getProcessInfo(name)
        except xmlrpc.client.Fault as exc:
            raise DrError(f"no component {name!r} in the sandbox supervisor: {exc.faultString}") from exc
        except OSError as exc:
            raise DrError(f"cannot reach the sandbox supervisor at {self.url}: {exc}") from exc

    def state(self, name: str) -> str:
        return str(self.info(name)["statename"])

    def names(self) -> list[str]:
        return [i["name"] for i in self.rpc.getAllProcessInfo()]

    def start(self, name: str, timeout: float = 60.0) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):  # ALREADY_STARTED is fine
            self.rpc.startProcess(name, False)
        wait_until(lambda: self.state(name) == "RUNNING", timeout, f"{name} RUNNING", raises=DrError)

    def stop(self, name: str, timeout: float = 60.0) -> None:
        if self.state(name) in ("STOPPED", "EXITED", "FATAL"):
            return
        with contextlib.suppress(xmlrpc.client.Fault):
            self.rpc.stopProcess(name, False)
        wait_until(
            lambda: self.state(name) in ("STOPPED", "EXITED", "FATAL"), timeout, f"{name} stopped", raises=DrError
        )


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def lose_components(sup: Supervisor, names: list[str]) -> tuple[float, dict[str, list[int]]]:
    """A data-centre loss: every named component dies at the same instant and stays dead.

    Each one's whole process tree is frozen first (SIGSTOP: from that instant nothing more leaves the "region"), the
    supervisor is told the programs are stopping (so it does not restart them), then the trees are SIGKILLed.
    Returns the disaster moment (the first freeze) and the PIDs killed per component.
    """
    trees = {}
    for name in names:
        info = sup.info(name)
        if info["statename"] != "RUNNING" or not info.get("pid"):
            raise PreflightError(f"{name} is not running ({info['statename']}): the region is not in steady state")
        trees[name] = process_tree(int(info["pid"]))
    moment = time.time()
    for pids in trees.values():
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
    for name in names:
        with contextlib.suppress(xmlrpc.client.Fault):
            sup.rpc.stopProcess(name, False)
    for pids in trees.values():
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    for name in names:
        wait_until(lambda n=name: sup.state(n) in ("STOPPED", "EXITED"), 30, f"{name} stopped", raises=DrError)
    return moment, trees


# ------------------------------------------------------------------------------------------------------ PostgreSQL


def pg(port: int, dbname: str = "marketplace", host: str = "127.0.0.1", timeout: int = 3) -> Any:
    import psycopg

    return psycopg.connect(
        host=host, port=port, user="postgres", dbname=dbname, connect_timeout=timeout, autocommit=True
    )


def pg_one(port: int, query: str, params: tuple = (), dbname: str = "marketplace") -> Any:
    with pg(port, dbname) as conn:
        return conn.execute(query, params).fetchone()


def live_database(ep: dict[str, Any]) -> dict[str, Any]:
    """The database the API uses now: the first upstream of the ``api-db`` link (the database Service), the
    supervised component serving that port (None when it runs outside the supervisor), and its data directory."""
    try:
        proxy = httpx.get(f"{ep['faultproxy']}/proxies/api-db", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PreflightError(f"cannot read the api-db link from the fault proxy at {ep['faultproxy']}: {exc}") from exc
    host, port = proxy["upstreams"][0].rsplit(":", 1)
    component = next((n for n, c in ep.get("components", {}).items() if c.get("health") == f"tcp:{host}:{port}"), None)
    try:
        data_dir = pg_one(int(port), "SELECT current_setting('data_directory')")[0]
    except Exception as exc:
        raise PreflightError(f"the API's database at {host}:{port} is not usable: {exc}") from exc
    return {"host": host, "port": int(port), "component": component, "data_dir": data_dir}


def current_timeline(port: int) -> int:
    """The server's timeline now (the WAL file it writes; pg_control's lags until the next checkpoint)."""
    return int(pg_one(port, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][:8], 16)


def replica_status(primary_port: int, replica_port: int) -> dict[str, Any]:
    """Region B's replica: in recovery, and streaming from the primary (its state on the primary's side)."""
    in_recovery = pg_one(replica_port, "SELECT pg_is_in_recovery()")[0]
    with pg(primary_port) as conn:
        rows = conn.execute(
            "SELECT application_name, state, sync_state, replay_lag FROM pg_stat_replication"
        ).fetchall()
    streams = [{"application_name": r[0], "state": r[1], "sync_state": r[2], "replay_lag": str(r[3])} for r in rows]
    return {"in_recovery": bool(in_recovery), "streams": streams}


def promote(command: str, port: int, timeout: float = 60.0) -> float:
    """Promote the standby with the platform's command (e.g. ``pg_ctl promote``); wait until it accepts writes."""
    t0 = time.monotonic()
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise DrError(f"promote failed: {(result.stderr or result.stdout).strip()[-300:]}")
    wait_until(
        lambda: pg_one(port, "SELECT NOT pg_is_in_recovery()")[0],
        timeout,
        "promoted replica out of recovery",
        raises=DrError,
    )
    return time.monotonic() - t0


def relation_files(port: int, data_dir: str, table: str) -> list[Path]:
    """Every on-disk segment file of ``table`` and of its indexes (main fork)."""
    with pg(port) as conn:
        rels = conn.execute(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = %s::regclass "
            "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass)",
            (table, table),
        ).fetchall()
    out = []
    for (rel,) in rels:
        base = Path(data_dir) / rel
        out.append(base)
        out += sorted(base.parent.glob(base.name + ".[0-9]*"), key=lambda p: int(p.suffix[1:]))
    return [p for p in out if p.exists()]


def segments_now(files: list[Path]) -> list[Path]:
    """The files again, plus any segment added to them since they were listed (``base``, ``base.1``, …)."""
    bases = {p.with_suffix("") if p.suffix[1:].isdigit() else p for p in files}
    out = []
    for base in sorted(bases):
        out.append(base)
        out += sorted(base.parent.glob(base.name + ".[0-9]*"), key=lambda p: int(p.suffix[1:]))
    return [p for p in out if p.exists()]


def corrupt(files: list[Path], rng: random.Random, remove_segments: bool = True) -> dict[str, Any]:
    """Overwrite every page of the files with random bytes (sizes kept) and remove extra segments (``.1``, …)."""
    done: dict[str, Any] = {"overwritten": {}, "removed": []}
    for path in files:
        if remove_segments and path.suffix[1:].isdigit():
            path.unlink()
            done["removed"].append(str(path))
            continue
        size = path.stat().st_size
        with path.open("r+b") as f:
            for _ in range(0, size, PAGE):
                f.write(rng.randbytes(PAGE))
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())
        done["overwritten"][str(path)] = size
    return done


def wait_accepting(port: int, timeout: float = 60.0) -> None:
    """Wait until the server on ``port`` accepts connections (a supervised program is RUNNING before that)."""
    wait_until(
        lambda: pg_one(port, "SELECT 1", dbname="postgres"), timeout, f"PostgreSQL on port {port}", 0.2, raises=DrError
    )


def read_error(port: int, table: str) -> str | None:
    """Read every row of ``table``; the query's error text when that fails (None when the table reads fine).
    A connection failure is raised, not returned: it says nothing about the table."""
    import psycopg

    with pg(port) as conn:
        try:
            conn.execute(f"SELECT count(*), max(key) FROM {table}").fetchone()
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0]
    return None


def salvage_wal(port: int, timeout: float = 60.0) -> dict[str, Any]:
    """Get every WAL record written so far into the archive: a marker transaction, a segment switch, then wait
    until the archiver reports that segment (what an operator does before stopping a damaged primary)."""
    with pg(port, dbname="postgres") as conn:
        conn.execute("SET synchronous_commit = local")  # a standby that is reconnecting must not hold this up
        conn.execute("SELECT txid_current()")
        lsn = conn.execute("SELECT pg_switch_wal()").fetchone()[0]
        segment = conn.execute("SELECT pg_walfile_name(%s)", (lsn,)).fetchone()[0]

    def archived() -> bool:
        row = pg_one(port, "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver", dbname="postgres")
        return bool(row[0]) and row[0][:24] >= segment

    wait_until(archived, timeout, f"WAL segment {segment} archived", raises=DrError)
    return {"switch_lsn": str(lsn), "segment": segment}


def restore_postgres(
    endpoints_file: Path, target: Path, port: int, target_time: float | None, timeout: float = 300.0
) -> dict[str, Any]:
    """Restore the latest base backup + archived WAL (up to ``target_time``) into ``target`` with the sandbox's
    restore CLI, start it on ``port`` and wait until it has recovered and promoted."""
    cmd = [sys.executable, "-m", "vesandbox.restore", "--endpoints", str(endpoints_file), "postgres", str(target)]
    if target_time is not None:
        cmd += ["--target-time", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(target_time)) + _frac(target_time)]
    cmd += ["--archive", "--start", "--port", str(port), "--timeout", str(int(timeout))]
    t0 = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120)
    out = {"command": " ".join(cmd[1:]), "output": result.stdout.strip(), "seconds": round(time.monotonic() - t0, 2)}
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
        raise RestoreFailed(reason, out)
    return out


def _frac(ts: float) -> str:
    return f".{int((ts % 1) * 1_000_000):06d}Z"


class RestoreFailed(DrError):
    def __init__(self, reason: str, detail: dict[str, Any]) -> None:
        super().__init__(reason)
        self.detail = detail


def server_log_fatal(data_dir: Path) -> str | None:
    """The last FATAL/PANIC line of a restored server's log (``DIR.log`` next to its data directory)."""
    try:
        lines = (data_dir.parent / f"{data_dir.name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    bad = [line.strip() for line in lines if "FATAL:" in line or "PANIC:" in line]
    return bad[-1] if bad else None


def stop_postmaster(data_dir: Path, timeout: float = 30.0) -> None:
    """Stop a PostgreSQL started outside the supervisor (``pg_ctl stop -m fast``, then SIGKILL by its PID)."""
    pidfile = data_dir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -------------------------------------------------------------------------------------------- the "DNS/Service"


def set_upstreams(faultproxy: str, proxy: str, upstreams: list[str], enabled: bool = True) -> dict[str, Any]:
    """Point a fault-proxy link (the sandbox's Service in front of a database) at other pods; returns the proxy."""
    r = httpx.post(f"{faultproxy}/proxies/{proxy}", json={"upstreams": upstreams, "enabled": enabled}, timeout=5)
    if r.status_code != 200:
        raise DrError(f"repointing proxy {proxy} answered HTTP {r.status_code}: {r.text[:200]}")
    return r.json()


def set_enabled(faultproxy: str, proxy: str, enabled: bool) -> None:
    r = httpx.post(f"{faultproxy}/proxies/{proxy}", json={"enabled": enabled}, timeout=5)
    if r.status_code != 200:
        raise DrError(f"{'enabling' if enabled else 'disabling'} proxy {proxy}: HTTP {r.status_code}: {r.text[:200]}")


def api_database_up(client: VirtEngineClient) -> bool:
    r = client.api_get("/health")
    return r.status_code == 200 and r.json().get("database") == "up"


def wait_api_on_database(client: VirtEngineClient, timeout: float = 120.0) -> None:
    """Wait until the API reports its database up (after a repoint or a restart)."""
    wait_until(lambda: api_database_up(client), timeout, "API on its database", 0.2, raises=DrError)


# ------------------------------------------------------------------------------------------------------------- S3


def s3_settings(ep: dict[str, Any], bucket: str | None) -> dict[str, Any]:
    """The sandbox's object store settings, for ``bucket`` if given (else the sandbox's backups bucket)."""
    s3 = dict(ep["storage"]["s3"])
    if bucket:
        s3["bucket"] = bucket
    return s3


def s3_client(s3: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3.get("region", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, connect_timeout=3, read_timeout=30, retries={"max_attempts": 2}),
    )


def check_bucket(client: Any, bucket: str, endpoint: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise PreflightError(f"bucket {bucket!r} does not exist at {endpoint}") from exc
        raise PreflightError(f"bucket {bucket!r} at {endpoint} is not usable: {code or exc}") from exc
    except BotoCoreError as exc:
        raise PreflightError(f"object store {endpoint} unreachable: {exc}") from exc


def base_backups(client: Any, bucket: str) -> list[dict[str, Any]]:
    """Complete base backups (those with a manifest.json), oldest first."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="base/"):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith("/manifest.json")]
    out = [json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in sorted(keys)]
    return sorted(out, key=lambda m: m["id"])


def etcd_snapshots(client: Any, bucket: str) -> list[dict[str, Any]]:
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="etcd/"):
        out += [
            {"key": o["Key"], "size": o["Size"], "at": o["LastModified"].timestamp()}
            for o in page.get("Contents", [])
            if o["Key"].endswith(".db")
        ]
    return sorted(out, key=lambda s: s["key"])


def latest_backup(
    client: Any, bucket: str, system_identifier: str | None, before: float | None = None
) -> dict[str, Any]:
    """The newest complete base backup of this database system (that finished before ``before``)."""
    backups = base_backups(client, bucket)
    usable = [m for m in backups if system_identifier is None or str(m["system_identifier"]) == system_identifier]
    if before is not None:
        usable = [m for m in usable if m["finished_at_epoch"] < before]
    if not usable:
        what = f" of database system {system_identifier}" if system_identifier else ""
        others = f" ({len(backups)} of other systems or later)" if backups else ""
        raise PreflightError(f"no base backup{what} in s3://{bucket}/base/{others}: nothing to restore from")
    return usable[-1]


WAL_PREFIX = "wal/"  # the sandbox's default (endpoints.json storage.backup.wal_archive.prefix says where it is)


def wal_archive_prefix(ep: dict[str, Any], system_identifier: str, backup: dict[str, Any] | None = None) -> str:
    """The folder of one database system's WAL archive: one archive per database cluster (as pgBackRest keys its
    archive by stanza and database id), ``<prefix><system_identifier>/``. What the backup agent wrote into the base
    backup's manifest (``wal_prefix``) first, else the rule endpoints.json states."""
    if backup and backup.get("wal_prefix"):
        return str(backup["wal_prefix"])
    archive = ep.get("storage", {}).get("backup", {}).get("wal_archive") or {}
    return f"{archive.get('prefix', WAL_PREFIX)}{system_identifier}/"


def later_timelines(client: Any, bucket: str, timeline: int, prefix: str = WAL_PREFIX) -> list[str]:
    """Timeline history files in the WAL archive under ``prefix`` (one database system's) for timelines after
    ``timeline``: a restore that follows the latest timeline would follow them (a branch of this system)."""
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            name = o["Key"].rsplit("/", 1)[-1].removesuffix(".gz")
            if name.endswith(".history") and int(name[:8], 16) > timeline:
                out.append(o["Key"])
    return sorted(out)


def upload(client: Any, bucket: str, key: str, body: bytes, content_type: str) -> str:
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return f"s3://{bucket}/{key}"


# ------------------------------------------------------------------------------------------------- chain and state


def chain_states(rest: str, timeout: float = 10.0) -> dict[str, dict[str, str]]:
    """Deployments, orders and bids as the chain (a node's Cosmos REST) has them."""
    paths = {
        "deployments": ("/virtengine/deployment/v1beta4/deployments/list", "deployments"),
        "orders": ("/virtengine/market/v1beta5/orders/list", "orders"),
        "bids": ("/virtengine/market/v1beta5/bids/list", "bids"),
    }
    out = {}
    with httpx.Client(timeout=timeout) as http:
        for kind, (path, field) in paths.items():
            items: list[dict[str, Any]] = []
            key = None
            for _ in range(100):  # bounded paging
                params = {"pagination.limit": 1000, **({"pagination.key": key} if key else {})}
                body = http.get(f"{rest}{path}", params=params).raise_for_status().json()
                items += body[field]
                key = (body.get("pagination") or {}).get("next_key")
                if not key:
                    break
            out[kind] = objectives.entity_states(items)
    return out


def api_states(api: str, timeout: float = 10.0) -> tuple[dict[str, dict[str, str]], int | None]:
    """The same entities as the marketplace API indexed them (from its database), and its indexed height."""
    paths = {"deployments": "/api/v1/deployments", "orders": "/api/v1/market/orders", "bids": "/api/v1/market/bids"}
    out, height = {}, None
    with httpx.Client(timeout=timeout) as http:
        for kind, path in paths.items():
            r = http.get(f"{api}{path}", params={"limit": 1000})
            if r.status_code != 200 or r.headers.get("x-cache") == "stale":
                raise DrError(f"API {path}: HTTP {r.status_code} {r.headers.get('x-cache')} (not from its database)")
            body = r.json()
            out[kind] = objectives.entity_states(body.get("items", []))
            height = body.get("indexed_height", height)
    return out, height


def states_agree(rest: str, api: str, timeout: float) -> dict[str, Any]:
    """Poll until the API's indexed state equals the chain's (the indexer follows the chain within a block or two);
    the last comparison either way."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {"equal": False, "error": "not compared"}
    while time.monotonic() < deadline:
        try:
            chain = chain_states(rest)
            api_side, height = api_states(api)
            last = objectives.compare_states(api_side, chain) | {"api_indexed_height": height}
            if last["equal"]:
                return last
        except (httpx.HTTPError, DrError, ValueError, KeyError) as exc:
            last = {"equal": False, "error": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
        time.sleep(1.0)
    return last


def node_statuses(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for n in nodes:
        try:
            info = httpx.get(f"{n['rpc']}/status", timeout=3).json()["result"]["sync_info"]
            out.append(
                {
                    "name": n["name"],
                    "height": int(info["latest_block_height"]),
                    "catching_up": bool(info["catching_up"]),
                    "app_hash": info.get("latest_app_hash"),
                }
            )
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            out.append({"name": n["name"], "error": f"{exc.__class__.__name__}: {exc}"})
    return out


# ------------------------------------------------------------------------------------------------------ monitoring


def prometheus_targets(prometheus: str) -> dict[str, Any]:
    body = httpx.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=5).json()
    targets = body["data"]["activeTargets"]
    down = sorted(t["labels"].get("instance", t.get("scrapeUrl", "?")) for t in targets if t.get("health") != "up")
    return {"targets": len(targets), "down": down}


def test_alert(alertmanager: str, pager: str | None, labels: dict[str, str], timeout: float) -> dict[str, Any]:
    """Post a test alert to Alertmanager, read it back, see it reach the pager; then resolve it."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    alert = {
        "labels": labels,
        "annotations": {"summary": "Drillbit DR drill: monitoring check after the rebuild"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }
    t0 = time.monotonic()
    r = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
    if r.status_code != 200:
        raise DrError(f"Alertmanager refused the test alert: HTTP {r.status_code} {r.text[:200]}")
    flt = f'alertname="{labels["alertname"]}"'

    def listed() -> bool:
        got = httpx.get(f"{alertmanager}/api/v2/alerts", params={"filter": flt}, timeout=5).json()
        return any(a["labels"].get("drill_run") == labels.get("drill_run") for a in got)

    wait_until(listed, timeout, "test alert listed by Alertmanager", raises=DrError)
    out: dict[str, Any] = {"alertmanager_s": round(time.monotonic() - t0, 2)}
    if pager:

        def paged() -> list[dict[str, Any]]:
            pages = httpx.get(f"{pager}/api/v1/pages", params={"alertname": labels["alertname"]}, timeout=5).json()
            return [p for p in pages["pages"] if p.get("labels", {}).get("drill_run") == labels.get("drill_run")]

        page = wait_until(paged, timeout, "page for the test alert", raises=DrError)[0]
        out |= {"pager_s": round(time.monotonic() - t0, 2), "page_id": page["id"]}
    alert["endsAt"] = datetime.now(UTC).isoformat()
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
    return out
