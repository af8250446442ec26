"""Start, inspect and stop the sandbox: every component under supervisord, all state under one run directory.

``python -m vesandbox up|status|down|logs``. The sandbox never imports Drillbit; Drillbit calls this as a subprocess
and reads ``RUN/endpoints.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from vesandbox import ports, storage
from vesandbox.monitoring import monitoring_components, monitoring_endpoints, monitoring_listeners
from vesandbox.procs import pid_alive
from vesandbox.weaknesses import WEAKNESSES, validate

DEFAULT_RUN_DIR = Path(os.environ.get("VESANDBOX_DIR", "/tmp/vesandbox"))
PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
VALIDATORS = 3
ETCD_USER = "vesbx-etcd-{}"
STARTUP_TIMEOUT = 120.0  # the goal is < 30 s here (benchmarks/sandbox.py); 120 s tolerates a loaded CI box
PORT_WAIT = 15.0  # seconds for client connections that hold one of our ports as their source port to end
VOLUME_SIZE = 512 << 20  # each validator's data volume (a bounded tmpfs, like a PersistentVolume of fixed size)
ETCD_QUOTA = 384 << 20


class SandboxError(Exception):
    """A problem the user can fix; printed as one line."""


@dataclass
class Layout:
    """Where everything is: addresses (shifted by ``offset``) and paths under the run directory."""

    run_dir: Path
    offset: int = 0
    weaknesses: list[str] = field(default_factory=list)

    def port(self, base: int) -> int:
        return base + self.offset

    @property
    def supervisor_port(self) -> int:
        return self.port(29001)

    @property
    def faultproxy_port(self) -> int:
        return self.port(8474)

    def etcd_host(self, i: int) -> str:
        return f"127.0.0.{2 + i}"

    def etcd_client(self, i: int) -> str:
        return f"http://{self.etcd_host(i)}:{self.port(2379)}"

    def etcd_clients(self) -> list[str]:
        return [self.etcd_client(i) for i in range(VALIDATORS)]

    def etcd_peer(self, i: int) -> str:
        return f"http://{self.etcd_host(i)}:{self.port(2380)}"

    def node_rpc_port(self, i: int) -> int:
        return self.port(26657 + 10 * i)

    def node_rest_port(self, i: int) -> int:
        return self.port(1317 + 10 * i)

    @property
    def pg_port(self) -> int:
        return self.port(55432)

    @property
    def api_port(self) -> int:
        return self.port(18080)

    @property
    def provider_port(self) -> int:
        return self.port(18443)

    def proxies(self) -> list[dict[str, Any]]:
        rpc = [f"127.0.0.1:{self.node_rpc_port(i)}" for i in range(VALIDATORS)]
        rest = [f"127.0.0.1:{self.node_rest_port(i)}" for i in range(VALIDATORS)]
        table = [
            ("node-rpc", 36657, rpc),
            ("node-rest", 31317, rest),
            ("api", 38080, [f"127.0.0.1:{self.api_port}"]),
            ("provider", 38443, [f"127.0.0.1:{self.provider_port}"]),
            ("provider-node-rpc", 46657, rpc),
            ("provider-node-rest", 41317, rest),
            ("api-node-rest", 51317, rest),
            ("api-node-rpc", 51757, rpc),
            ("api-db", 55433, [f"127.0.0.1:{self.pg_port}"]),
        ]
        return [{"name": n, "listen": f"127.0.0.1:{self.port(p)}", "upstreams": u} for n, p, u in table]

    def proxy_url(self, name: str) -> str:
        listen = next(p["listen"] for p in self.proxies() if p["name"] == name)
        return f"http://{listen}"

    def proxy_port(self, name: str) -> int:
        return int(self.proxy_url(name).rsplit(":", 1)[1])

    # paths
    @property
    def config_dir(self) -> Path:
        return self.run_dir / "config"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def endpoints_file(self) -> Path:
        return self.run_dir / "endpoints.json"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    def listeners(self) -> list[tuple[str, int, str]]:
        """Every (host, port, owner) the sandbox binds, for the port-in-use preflight check."""
        out = [("127.0.0.1", self.supervisor_port, "supervisor"), ("127.0.0.1", self.faultproxy_port, "faultproxy")]
        for i in range(VALIDATORS):
            out += [
                (self.etcd_host(i), self.port(2379), f"etcd-{i}"),
                (self.etcd_host(i), self.port(2380), f"etcd-{i}"),
            ]
            out += [
                ("127.0.0.1", self.node_rpc_port(i), f"node-{i}"),
                ("127.0.0.1", self.node_rest_port(i), f"node-{i}"),
            ]
        out += [("127.0.0.1", self.pg_port, "postgres"), ("127.0.0.1", self.api_port, "api")]
        out += [("127.0.0.1", self.provider_port, "provider")]
        out += [("127.0.0.1", int(p["listen"].rsplit(":", 1)[1]), f"proxy {p['name']}") for p in self.proxies()]
        out += monitoring_listeners(self)
        out += storage.storage_listeners(self)
        return out

    def check_ports(self) -> None:
        """ValueError when the offset puts any port outside 1..65535, naming the component and the valid offsets."""
        ports = [(port, owner) for _host, port, owner in self.listeners()]
        high, high_owner = max(ports)
        low, low_owner = min(ports)
        top, bottom = self.offset + 65535 - high, self.offset + 1 - low
        if high > 65535:
            raise ValueError(
                f"port offset {self.offset} puts {high_owner} on port {high} (ports end at 65535); "
                f"the largest valid offset is {top}"
            )
        if low < 1:
            raise ValueError(
                f"port offset {self.offset} puts {low_owner} on port {low}; the smallest valid offset is {bottom}"
            )


# --------------------------------------------------------------------------------------------------------------------
# components


@dataclass
class Component:
    name: str
    command: list[str]
    health: str  # "http:URL" or "tcp:HOST:PORT"
    labels: dict[str, str]
    user: str | None = None
    priority: int = 50
    endpoint: str = ""
    stopsignal: str = "TERM"
    env: dict[str, str] = field(default_factory=dict)


def _python_service(layout: Layout, module: str, name: str, config: dict[str, Any]) -> list[str]:
    path = layout.config_dir / f"{name}.json"
    path.write_text(json.dumps({"name": name, "weaknesses": layout.weaknesses, **config}, indent=2))
    return [sys.executable, "-m", f"vesandbox.{module}", "--config", str(path)]


def _labels(name: str, component: str, instance: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": instance,
    }


def components(layout: Layout, pg_bin: Path) -> list[Component]:
    out: list[Component] = []
    cluster = ",".join(f"etcd-{i}={layout.etcd_peer(i)}" for i in range(VALIDATORS))
    for i in range(VALIDATORS):
        data = layout.data_dir / f"etcd-{i}"
        out.append(
            Component(
                name=f"etcd-{i}",
                command=[
                    shutil.which("etcd") or "etcd",
                    f"--name=etcd-{i}",
                    f"--data-dir={data}",
                    f"--listen-client-urls={layout.etcd_client(i)}",
                    f"--advertise-client-urls={layout.etcd_client(i)}",
                    f"--listen-peer-urls={layout.etcd_peer(i)}",
                    f"--initial-advertise-peer-urls={layout.etcd_peer(i)}",
                    f"--initial-cluster={cluster}",
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=vesandbox",
                    "--heartbeat-interval=100",
                    "--election-timeout=1000",
                    "--pre-vote=true",
                    "--snapshot-count=10000",
                    f"--quota-backend-bytes={ETCD_QUOTA}",
                    "--auto-compaction-mode=revision",
                    "--auto-compaction-retention=10000",
                ],
                health=f"http:{layout.etcd_client(i)}/health",
                labels=_labels("virtengine-validator-store", "consensus", f"etcd-{i}"),
                user=ETCD_USER.format(i),
                priority=10,
                endpoint=layout.etcd_client(i),
            )
        )
    pg_data = layout.data_dir / "postgres"
    out.append(
        Component(
            name="postgres",
            command=[
                str(pg_bin / "postgres"),
                "-D",
                str(pg_data),
                "-h",
                "127.0.0.1",
                "-p",
                str(layout.pg_port),
                "-k",
                str(layout.data_dir / "pg-socket"),
                "-c",
                "wal_level=replica",
                "-c",
                "max_wal_senders=5",
                "-c",
                "fsync=on",
                "-c",
                "shared_buffers=64MB",
                "-c",
                "max_connections=100",
            ],
            health=f"tcp:127.0.0.1:{layout.pg_port}",
            labels=_labels("postgres", "database", "postgres-0"),
            user="postgres",
            priority=10,
            endpoint=f"postgresql://postgres@127.0.0.1:{layout.pg_port}/marketplace",
            stopsignal="INT",
        )
    )
    out.append(
        Component(
            name="faultproxy",
            command=_python_service(
                layout,
                "faultproxy",
                "faultproxy",
                {"listen": {"host": "127.0.0.1", "port": layout.faultproxy_port}, "proxies": layout.proxies()},
            ),
            health=f"http:http://127.0.0.1:{layout.faultproxy_port}/health",
            labels=_labels("faultproxy", "network", "faultproxy-0"),
            priority=20,
            endpoint=f"http://127.0.0.1:{layout.faultproxy_port}",
        )
    )
    for i in range(VALIDATORS):
        out.append(
            Component(
                name=f"node-{i}",
                command=_python_service(
                    layout,
                    "node",
                    f"node-{i}",
                    {
                        "index": i,
                        "validators": [f"node-{j}" for j in range(VALIDATORS)],
                        "chain_id": "virtengine-sandbox",
                        "rpc": {"host": "127.0.0.1", "port": layout.node_rpc_port(i)},
                        "rest": {"host": "127.0.0.1", "port": layout.node_rest_port(i)},
                        "etcd": layout.etcd_client(i),
                        "block_time": 1.0,
                        "propose_timeout": 1.0,
                        "genesis": {
                            "providers": [
                                {
                                    "owner": "provider1",
                                    "host_uri": f"http://127.0.0.1:{layout.provider_port}",
                                    "attributes": [{"key": "region", "value": "sandbox"}],
                                }
                            ]
                        },
                    },
                ),
                health=f"http:http://127.0.0.1:{layout.node_rpc_port(i)}/health",
                labels=_labels("virtengine-node", "blockchain", f"node-{i}"),
                priority=30,
                endpoint=f"http://127.0.0.1:{layout.node_rpc_port(i)}",
            )
        )
    out.append(
        Component(
            name="api",
            command=_python_service(
                layout,
                "api",
                "api",
                {
                    "listen": {"host": "127.0.0.1", "port": layout.api_port},
                    "database": {
                        "host": "127.0.0.1",
                        "port": layout.proxy_port("api-db"),
                        "user": "postgres",
                        "dbname": "marketplace",
                    },
                    "node_rpc": layout.proxy_url("api-node-rpc"),
                    "node_rest": layout.proxy_url("api-node-rest"),
                    "queue_path": str(layout.data_dir / "api" / "write-queue.sqlite3"),
                    "index_interval": 0.5,
                    "cache_ttl": 1.0,
                    # a database call that hangs (a blackholed port) is given up after 1 s, so the first read of an
                    # outage falls back to the cache within the 2 s read objective instead of at its edge
                    "db_timeout": 1.0,
                },
            ),
            health=f"http:http://127.0.0.1:{layout.api_port}/health",
            labels=_labels("virtengine-api", "gateway", "api-0"),
            priority=40,
            endpoint=f"http://127.0.0.1:{layout.api_port}",
        )
    )
    out.append(
        Component(
            name="provider",
            command=_python_service(
                layout,
                "provider",
                "provider",
                {
                    "listen": {"host": "127.0.0.1", "port": layout.provider_port},
                    "provider": "provider1",
                    "node_rpc": layout.proxy_url("provider-node-rpc"),
                    "node_rest": layout.proxy_url("provider-node-rest"),
                    "poll_interval": 0.5,
                    "provision_delay": 2.0,
                    "bid_price": "10",
                    "bid_engine": {
                        "concurrency": 4,
                        "max_pending": 16,
                        "timeout": 1.0,
                        "fail_max": 5,
                        "reset_timeout": 5.0,
                        "work_ms": 20.0,
                    },
                },
            ),
            health=f"http:http://127.0.0.1:{layout.provider_port}/health",
            labels=_labels("provider-daemon", "provider", "provider-0"),
            priority=40,
            endpoint=f"http://127.0.0.1:{layout.provider_port}",
        )
    )
    backup = {"component": "backup", "address": f"127.0.0.1:{storage.backup_port(layout)}", "service": "backup"}
    out += [Component(**spec) for spec in monitoring_components(layout, layout.weaknesses, extra_targets=[backup])]
    out += [Component(**spec) for spec in storage.storage_components(layout, layout.weaknesses)]
    return out


# --------------------------------------------------------------------------------------------------------------------
# preflight


def _find_pg_bin() -> Path:
    for d in PG_BIN_DIRS:
        if (d / "postgres").exists() and (d / "initdb").exists():
            return d
    raise SandboxError(
        "PostgreSQL server binaries not found: run `apt-get install -y postgresql` (or ./scripts/setup.sh)"
    )


def preflight(layout: Layout) -> Path:
    if os.geteuid() != 0:
        raise SandboxError(
            "the sandbox needs root (validators run under their own uids, PostgreSQL as postgres): run it as root"
        )
    if shutil.which("etcd") is None:
        raise SandboxError("etcd not found: run `apt-get install -y etcd-server etcd-client` (or ./scripts/setup.sh)")
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise SandboxError(
            "user postgres missing: run `apt-get install -y postgresql` (or ./scripts/setup.sh)"
        ) from exc
    pg_bin = _find_pg_bin()
    if _supervisord_pid(layout) is not None:
        raise SandboxError(f"a sandbox is already running in {layout.run_dir}: `drillbit sandbox down` first")
    listeners = layout.listeners()
    # keep our ports out of the ephemeral range first, then give connections that already hold one a moment to end
    ports.reserve(str(layout.run_dir.resolve()), [port for _, port, _ in listeners])
    deadline = time.monotonic() + PORT_WAIT
    while True:
        busy = [f"{host}:{port} ({owner})" for host, port, owner in listeners if not _port_free(host, port)]
        if not busy or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if busy:
        ports.release(str(layout.run_dir.resolve()))
        raise SandboxError(
            f"port already in use: {', '.join(busy[:5])}{' ...' if len(busy) > 5 else ''}; stop what uses it or "
            "start with another --port-offset"
        )
    return pg_bin


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ensure_user(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


# --------------------------------------------------------------------------------------------------------------------
# up / down / status


def _supervisor(layout: Layout) -> Any:
    return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{layout.supervisor_port}/RPC2")


def _supervisord_pid(layout: Layout) -> int | None:
    try:
        pid = int(layout.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _write_supervisor_conf(layout: Layout, comps: list[Component], manual: frozenset[str] = frozenset()) -> Path:
    """The supervisord config; programs named in ``manual`` are not started with supervisord (started later)."""
    autorestart = "false" if "no-restart" in layout.weaknesses else "true"
    lines = [
        "[supervisord]",
        f"logfile={layout.log_dir / 'supervisord.log'}",
        f"pidfile={layout.pidfile}",
        f"childlogdir={layout.log_dir}",
        "identifier=vesandbox",
        "loglevel=info",
        "",
        "[inet_http_server]",
        f"port=127.0.0.1:{layout.supervisor_port}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=http://127.0.0.1:{layout.supervisor_port}",
        "",
    ]
    for c in comps:
        env = {"PYTHONUNBUFFERED": "1", **c.env}
        lines += [
            f"[program:{c.name}]",
            "command=" + " ".join(_quote(a) for a in c.command),
            f"priority={c.priority}",
            f"autostart={'false' if c.name in manual else 'true'}",
            f"autorestart={autorestart}",
            "startsecs=1",
            "startretries=10",
            f"stopsignal={c.stopsignal}",
            "stopwaitsecs=15",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={layout.log_dir / (c.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=1",
            "environment=" + ",".join(f'{k}="{v}"' for k, v in env.items()),
        ]
        if c.user:
            lines.append(f"user={c.user}")
        lines.append("")
    path = layout.run_dir / "supervisord.conf"
    path.write_text("\n".join(lines))
    return path


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(ch in arg for ch in " ,;") else arg


def _init_postgres(layout: Layout, pg_bin: Path) -> None:
    pg_data = layout.data_dir / "postgres"
    sock = layout.data_dir / "pg-socket"
    pg_uid, pg_gid = pwd.getpwnam("postgres").pw_uid, grp.getgrnam("postgres").gr_gid
    for d in (pg_data, sock):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, pg_uid, pg_gid)
    pg_data.chmod(0o700)
    result = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(pg_bin / "initdb"),
            "-D",
            str(pg_data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            *storage.PRIMARY_INITDB_ARGS,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SandboxError(f"initdb failed: {result.stderr.strip().splitlines()[-1:]}")
    with (pg_data / "pg_hba.conf").open("a") as f:
        f.write("host replication all 127.0.0.1/32 trust\n")


def up(layout: Layout, echo: Any = print, restore_from_backups: bool = False) -> dict[str, Any]:
    """Start the sandbox. With ``restore_from_backups``, PostgreSQL and the validator set come from the latest backups
    in the object store instead of initdb and a new etcd cluster (see ``_restore_from_backups``)."""
    layout.weaknesses = validate(layout.weaknesses)
    if restore_from_backups:
        _check_backups(layout)  # before anything is checked, removed or created
    pg_bin = preflight(layout)
    if layout.run_dir.exists():
        _remove_run_dir(layout)
    manual = frozenset({"api"}) if restore_from_backups else frozenset()
    try:
        for d in (layout.config_dir, layout.log_dir, layout.data_dir / "api"):
            d.mkdir(parents=True, exist_ok=True)
        layout.run_dir.chmod(0o755)
        for i in range(VALIDATORS):
            uid, gid = _ensure_user(ETCD_USER.format(i))
            d = layout.data_dir / f"etcd-{i}"
            d.mkdir(parents=True, exist_ok=True)
            opts = f"size={VOLUME_SIZE},mode=0700,uid={uid},gid={gid}"
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", opts, f"vesandbox-etcd-{i}", str(d)], capture_output=True
            )
            if mounted.returncode != 0:
                raise SandboxError(f"cannot mount the data volume of etcd-{i}: {mounted.stderr.decode().strip()}")
        restored = _restore_from_backups(layout, pg_bin, echo) if restore_from_backups else None
        if restored is None:
            _init_postgres(layout, pg_bin)
        storage.prepare_storage(layout, layout.weaknesses, pg_bin)  # object store, WAL archiving, replication
        comps = components(layout, pg_bin)
        conf = _write_supervisor_conf(layout, comps, manual)
        endpoints = _endpoints(layout, comps)
        if restored is not None:
            endpoints["restored_from"] = restored
        layout.endpoints_file.write_text(json.dumps(endpoints, indent=2))
        supervisord = Path(sys.executable).parent / "supervisord"
        result = subprocess.run([str(supervisord), "-c", str(conf)], capture_output=True, text=True)
        if result.returncode != 0:
            raise SandboxError(f"supervisord failed to start: {result.stderr.strip() or result.stdout.strip()}")
        _wait_healthy(layout, [c for c in comps if c.name not in manual], echo)
        if (sup_pid := _supervisord_pid(layout)) is not None:
            ports.hold(str(layout.run_dir.resolve()), sup_pid)  # the reservation lives as long as the sandbox
        if restored is not None:
            _rejoin_api(layout, [c for c in comps if c.name in manual], restored, echo)
            layout.endpoints_file.write_text(json.dumps(endpoints, indent=2))
    except BaseException:
        down(layout, echo=lambda *_: None)
        raise
    return endpoints


# --------------------------------------------------------------------------------------------------------------------
# up --restore-from-backups: rebuild a lost sandbox from the object store


def _backup_objects(layout: Layout) -> tuple[list[Path], list[Path]]:
    """Complete base backups (their manifest.json) and etcd snapshots in the object store's folder, oldest first."""
    bucket = storage.s3_dir(layout) / storage.BACKUP_BUCKET
    return sorted(bucket.glob("base/*/manifest.json")), sorted(bucket.glob("etcd/*.db"))


def _check_backups(layout: Layout) -> None:
    base, etcd = _backup_objects(layout)
    where = f"(object store {storage.s3_dir(layout)})"
    if not base:
        raise SandboxError(f"no base backup in s3://{storage.BACKUP_BUCKET}/base/ {where}: nothing to restore from")
    if not etcd:
        raise SandboxError(f"no etcd snapshot in s3://{storage.BACKUP_BUCKET}/etcd/ {where}: nothing to restore from")


def _restore_from_backups(layout: Layout, pg_bin: Path, echo: Any) -> dict[str, Any]:
    """Before supervisord starts: PostgreSQL from the latest base backup + archived WAL (recovered to the end of the
    archive and promoted, with a temporary S3 endpoint), every etcd member from the latest snapshot."""
    from vesandbox import restore

    steps: list[dict[str, Any]] = []

    def timed(name: str, t0: float, **detail: Any) -> None:
        steps.append({"name": name, "started_at": t0, "seconds": round(time.time() - t0, 3), **detail})
        echo(f"  {name:<26} {time.time() - t0:6.2f} s")

    storage._write_configs(layout, layout.weaknesses, pg_bin)  # the S3 component's command needs them
    s3_spec = storage.storage_components(layout, layout.weaknesses)[0]
    s3 = storage.s3_settings(layout)
    t0 = time.time()
    s3_proc = _start_temporary(layout, s3_spec["command"], f"tcp:127.0.0.1:{storage.s3_port(layout)}", "s3-restore")
    timed("start object store", t0)
    try:
        t0 = time.time()
        pg_data = layout.data_dir / "postgres"
        try:
            info = restore.restore_base_backup(s3, pg_data, archive=True)
        except restore.RestoreError as exc:
            raise SandboxError(f"PostgreSQL restore failed: {exc}") from exc
        timed("restore base backup", t0, backup_id=info["backup_id"])
        t0 = time.time()
        info["recovered_s"] = _recover_postgres(layout, pg_bin, pg_data)
        timed("replay archived WAL", t0)
        t0 = time.time()
        snapshot = _restore_etcd(layout, s3)
        timed("restore etcd snapshot", t0, snapshot=snapshot)
    finally:
        _stop_temporary(s3_proc)
    return {"postgres": info, "etcd_snapshot": snapshot, "steps": steps, "at": time.time()}


def _start_temporary(layout: Layout, command: list[str], health: str, name: str) -> subprocess.Popen[bytes]:
    log = (layout.log_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 20
    while not _check(health, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_temporary(proc)
            raise SandboxError(f"temporary {name} did not start (see {layout.log_dir / (name + '.log')})")
        time.sleep(0.1)
    return proc


def _stop_temporary(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _recover_postgres(layout: Layout, pg_bin: Path, pg_data: Path) -> float:
    """Start the restored primary once, let it replay the WAL archive to its end and promote, then stop it."""
    from vesandbox import restore

    pw = pwd.getpwnam("postgres")
    sock = layout.data_dir / "pg-socket"
    sock.mkdir(parents=True, exist_ok=True)
    os.chown(sock, pw.pw_uid, pw.pw_gid)
    log_file = layout.log_dir / "postgres-restore.log"
    try:
        restore.start_postgres(pg_data, layout.pg_port, pg_bin=pg_bin, log_file=log_file, socket_dir=sock)
        return restore.wait_recovered(layout.pg_port, timeout=STARTUP_TIMEOUT * 2, data_dir=pg_data, log_file=log_file)
    except restore.RestoreError as exc:
        raise SandboxError(f"PostgreSQL recovery failed: {exc}") from exc
    finally:
        restore.stop_postgres(pg_data, pg_bin)


def _restore_etcd(layout: Layout, s3: dict[str, Any]) -> str:
    """Every member's data from the same (latest) snapshot, into its volume, owned by its user."""
    from vesandbox import restore

    cluster = ",".join(f"etcd-{i}={layout.etcd_peer(i)}" for i in range(VALIDATORS))
    snapshot = restore.list_etcd_snapshots(s3)[-1]["key"]
    for i in range(VALIDATORS):
        scratch = layout.data_dir / f".etcd-{i}.restore"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            restore.restore_etcd_snapshot(
                s3, scratch, name=f"etcd-{i}", peer_url=layout.etcd_peer(i), initial_cluster=cluster, snapshot=snapshot
            )
        except restore.RestoreError as exc:
            raise SandboxError(f"etcd restore failed: {exc}") from exc
        volume = layout.data_dir / f"etcd-{i}"  # a tmpfs mount point: fill it, never replace it
        for entry in scratch.iterdir():
            shutil.move(str(entry), str(volume / entry.name))
        scratch.rmdir()
        user = pwd.getpwnam(ETCD_USER.format(i))
        for dirpath, dirnames, filenames in os.walk(volume):
            os.lchown(dirpath, user.pw_uid, user.pw_gid)
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), user.pw_uid, user.pw_gid)
    return snapshot


def _rejoin_api(layout: Layout, comps: list[Component], restored: dict[str, Any], echo: Any) -> None:
    """Start the API once the nodes have replayed the restored chain; an index ahead of that chain is cleared first.

    The database may be newer than the etcd snapshot (the WAL archive runs seconds behind, snapshots a minute):
    its indexed height would then name blocks the restored chain does not have. The index is derived data, so it
    is rebuilt from the chain instead of trusted.
    """
    import psycopg

    t0 = time.time()
    height = _wait_chain(layout)
    indexed = None
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(
            host="127.0.0.1", port=layout.pg_port, user="postgres", dbname="marketplace", connect_timeout=5
        ) as conn,
    ):
        conn.execute("SET synchronous_commit = local")
        row = conn.execute("SELECT height FROM index_state WHERE id = 1").fetchone()
        indexed = int(row[0]) if row else None
        if indexed is not None and indexed > height:
            conn.execute("DELETE FROM entities")
            conn.execute("UPDATE index_state SET height = 0, updated_at = now() WHERE id = 1")
            conn.commit()
            echo(f"  API index at {indexed} was ahead of the restored chain at {height}: cleared, re-indexing")
    cleared = indexed is not None and indexed > height
    restored.update({"chain_height": height, "indexed_height": indexed, "index_cleared": cleared})
    for c in comps:
        _supervisor(layout).supervisor.startProcess(c.name, True)
    _wait_healthy(layout, comps, echo)
    restored["steps"].append({"name": "rejoin api", "started_at": t0, "seconds": round(time.time() - t0, 3)})


def _wait_chain(layout: Layout) -> int:
    """The restored chain's height once node-0 has replayed it (``catching_up`` false)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            info = httpx.get(f"http://127.0.0.1:{layout.node_rpc_port(0)}/status", timeout=2).json()["result"]
            if not info["sync_info"]["catching_up"]:
                return int(info["sync_info"]["latest_block_height"])
            last = "still catching up"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise SandboxError(f"node-0 did not replay the restored chain within {STARTUP_TIMEOUT:.0f} s ({last})")


def _endpoints(layout: Layout, comps: list[Component]) -> dict[str, Any]:
    return {
        "run_dir": str(layout.run_dir),
        "port_offset": layout.offset,
        "weaknesses": layout.weaknesses,
        "started_at": time.time(),
        "supervisor": f"http://127.0.0.1:{layout.supervisor_port}/RPC2",
        "faultproxy": f"http://127.0.0.1:{layout.faultproxy_port}",
        "node_rpc": layout.proxy_url("node-rpc"),
        "node_rest": layout.proxy_url("node-rest"),
        "api": layout.proxy_url("api"),
        "provider": layout.proxy_url("provider"),
        "nodes": [
            {
                "name": f"node-{i}",
                "rpc": f"http://127.0.0.1:{layout.node_rpc_port(i)}",
                "rest": f"http://127.0.0.1:{layout.node_rest_port(i)}",
                "etcd": f"etcd-{i}",
            }
            for i in range(VALIDATORS)
        ],
        "etcd": [
            {
                "name": f"etcd-{i}",
                "client": layout.etcd_client(i),
                "peer_host": layout.etcd_host(i),
                "peer_port": layout.port(2380),
                "client_port": layout.port(2379),
                "user": ETCD_USER.format(i),
                "uid": pwd.getpwnam(ETCD_USER.format(i)).pw_uid,
            }
            for i in range(VALIDATORS)
        ],
        "volumes": {
            f"node-{i}": {"path": str(layout.data_dir / f"etcd-{i}"), "size_bytes": VOLUME_SIZE, "holds": f"etcd-{i}"}
            for i in range(VALIDATORS)
        },
        "postgres": {
            "host": "127.0.0.1",
            "port": layout.pg_port,
            "user": "postgres",
            "dbname": "marketplace",
            "data_dir": str(layout.data_dir / "postgres"),
        },
        "proxies": {p["name"]: p for p in layout.proxies()},
        **monitoring_endpoints(layout),
        "storage": storage.storage_endpoints(layout),
        "components": {
            c.name: {"labels": c.labels, "endpoint": c.endpoint, "health": c.health, "user": c.user or "root"}
            for c in comps
        },
    }


def _check(health: str, timeout: float = 1.0) -> bool:
    kind, _, target = health.partition(":")
    if kind == "tcp":
        host, port = target.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return True
        except OSError:
            return False
    try:
        return httpx.get(target, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_healthy(layout: Layout, comps: list[Component], echo: Any) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    pending = {c.name: c for c in comps}
    while pending and time.monotonic() < deadline:
        for name, c in list(pending.items()):
            if _check(c.health, timeout=0.5):
                echo(f"  {name:<11} healthy  {c.endpoint}")
                del pending[name]
        if pending:
            time.sleep(0.2)
    if pending:
        details = []
        for name in pending:
            log = layout.log_dir / f"{name}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else ["(no log)"]
            details.append(f"{name}: {' | '.join(tail)}")
        raise SandboxError(
            f"not healthy within {STARTUP_TIMEOUT:.0f} s: {', '.join(pending)}\n  " + "\n  ".join(details)
        )


def status(layout: Layout) -> list[dict[str, Any]]:
    """One row per component: name, state, pid, endpoint, healthy (empty list when not running)."""
    if _supervisord_pid(layout) is None or not layout.endpoints_file.exists():
        return []
    endpoints = json.loads(layout.endpoints_file.read_text())
    try:
        infos = {i["name"]: i for i in _supervisor(layout).supervisor.getAllProcessInfo()}
    except (OSError, xmlrpc.client.Error):
        infos = {}
    rows = []
    for name, comp in endpoints["components"].items():
        info = infos.get(name, {})
        rows.append(
            {
                "name": name,
                "state": info.get("statename", "UNKNOWN"),
                "pid": info.get("pid") or None,
                "endpoint": comp["endpoint"],
                "healthy": _check(comp["health"], timeout=1.0),
                "labels": comp["labels"],
            }
        )
    return rows


def _run_dir_pids(layout: Layout) -> list[int]:
    """PIDs of processes whose command line names the run directory (all of them were started by the sandbox)."""
    # with the trailing slash, /tmp/x never matches a sibling run directory such as /tmp/x-weak; the object store
    # server names its folder (outside the run directory) rather than the run directory
    markers = [(str(layout.run_dir).rstrip("/") + "/").encode(), str(storage.s3_dir(layout)).encode() + b"\x00"]
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if any(m in cmdline for m in markers):
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def down(layout: Layout, echo: Any = print, purge: bool = False) -> bool:
    """Stop everything and remove the run directory. Returns False when there was nothing to stop.

    The object store (the S3 endpoint's folder, outside the run directory) is kept, as an off-site bucket survives a
    data-centre loss; ``purge`` removes it too.
    """
    pid = _supervisord_pid(layout)
    had_something = pid is not None or layout.run_dir.exists()
    if pid is not None:
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            _supervisor(layout).supervisor.shutdown()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    # anything that outlived supervisord (a crash, a SIGKILL): end it by PID
    for _ in range(3):
        pids = _run_dir_pids(layout)
        if not pids:
            break
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.3)
    if layout.run_dir.exists():
        _remove_run_dir(layout)
    ports.release(str(layout.run_dir.resolve()))
    if purge and storage.s3_dir(layout).exists():
        shutil.rmtree(storage.s3_dir(layout), ignore_errors=True)
        echo(f"object store {storage.s3_dir(layout)} removed")
    if had_something:
        echo(f"sandbox stopped; {layout.run_dir} removed")
    return had_something


def _remove_run_dir(layout: Layout) -> None:
    root = str(layout.run_dir.resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m == root or m.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(layout.run_dir, ignore_errors=True)


def logs(layout: Layout, component: str, lines: int) -> str:
    path = layout.log_dir / f"{component}.log"
    if not path.exists():
        known = sorted(p.stem for p in layout.log_dir.glob("*.log")) if layout.log_dir.exists() else []
        raise SandboxError(
            f"no log for {component!r}" + (f"; components: {', '.join(known)}" if known else ": sandbox is not running")
        )
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vesandbox", description="VirtEngine-in-a-box for reliability testing")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("VESANDBOX_PORT_OFFSET", "0")))
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("--weaken", action="append", default=[], metavar="NAME")
    p_up.add_argument(
        "--restore-from-backups",
        action="store_true",
        help="restore PostgreSQL and the validator set from the latest backups in the object store (after a loss)",
    )
    p_down = sub.add_parser("down")
    p_down.add_argument("--purge", action="store_true", help="also remove the object store (backups)")
    p_status = sub.add_parser("status")
    p_status.add_argument("--json", action="store_true")
    p_logs = sub.add_parser("logs")
    p_logs.add_argument("component")
    p_logs.add_argument("-n", "--lines", type=int, default=50)
    sub.add_parser("weaknesses")
    args = parser.parse_args(argv)
    layout = Layout(run_dir=args.run_dir.resolve(), offset=args.port_offset)
    try:
        layout.check_ports()
        if args.cmd == "up":
            layout.weaknesses = args.weaken
            t0 = time.monotonic()
            up(layout, restore_from_backups=args.restore_from_backups)
            print(f"sandbox up in {time.monotonic() - t0:.1f} s; endpoints: {layout.endpoints_file}")
        elif args.cmd == "down":
            if not down(layout, purge=args.purge):
                print("sandbox is not running")
        elif args.cmd == "status":
            rows = status(layout)
            if args.json:
                print(json.dumps(rows, indent=2))
            elif not rows:
                print("sandbox is not running")
            else:
                for r in rows:
                    health = "healthy" if r["healthy"] else "UNHEALTHY"
                    print(f"{r['name']:<11} {r['state']:<9} {health:<9} pid={r['pid'] or '-':<8} {r['endpoint']}")
            return 0 if rows and all(r["healthy"] for r in rows) else 1
        elif args.cmd == "logs":
            print(logs(layout, args.component, args.lines))
        elif args.cmd == "weaknesses":
            for w in WEAKNESSES.values():
                print(f"{w.name:<20} {w.component:<10} {w.doc}")
    except (SandboxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
