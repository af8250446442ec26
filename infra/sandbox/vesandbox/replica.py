"""The API database's streaming replica (a second "region"), and the slow replication link of a weakness.

``python -m vesandbox.replica --config FILE`` (started as root, runs PostgreSQL as user postgres): on first start
(no ``PG_VERSION`` in ``data_dir``; its parent folder is the replica's own and is given to user postgres) it
waits for the primary, takes ``pg_basebackup -R -X stream -c fast`` into a temporary directory, points
``primary_conninfo`` at ``upstream`` with ``application_name`` and renames it into place; then it drops to user
postgres and execs ``postgres`` (so the supervisor's signals reach the server). A promoted replica
(``pg_ctl promote``) restarts as a primary; delete ``data_dir`` to re-seed it from the primary.

``python -m vesandbox.replica --link --config FILE``: a TCP relay that delivers the primary's bytes ``delay`` seconds
late (weakness ``async-replication-loses-writes``: a slow cross-region link). PostgreSQL replays every byte it has
received before it promotes, so only WAL that has not *arrived* is lost on failover; the relay makes that window
``delay`` seconds wide. Bytes still in the relay when the replica promotes are dropped.

Replica config: ``{"name", "weaknesses", "pg_bin", "data_dir", "socket_dir", "port", "primary": {"host", "port"},
"upstream": {"host", "port"}, "application_name", "wait_primary": 120, "settings": {...}}``.
Link config: ``{"name", "weaknesses", "listen": {"host", "port"}, "upstream": {"host", "port"}, "delay": 5.0}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from vesandbox.common import setup_logging
from vesandbox.wal_archive import conf_quote

CHUNK = 65536


class ReplicaError(Exception):
    """Setup failed; one line."""


def _wait_tcp(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return
        time.sleep(0.2)
    raise ReplicaError(f"primary {host}:{port} not reachable within {timeout:.0f} s")


def _conninfo(config: dict[str, Any]) -> str:
    up = config.get("upstream") or config["primary"]
    return f"host={up['host']} port={up['port']} user=postgres application_name={config['application_name']}"


def seed(config: dict[str, Any], log: Any) -> None:
    """Create ``data_dir`` from a base backup of the primary, as a standby of ``upstream``."""
    data = Path(config["data_dir"])
    pw = pwd.getpwnam("postgres")
    tmp = data.with_name(data.name + ".seeding")
    shutil.rmtree(tmp, ignore_errors=True)
    data.parent.mkdir(parents=True, exist_ok=True)
    os.chown(data.parent, pw.pw_uid, pw.pw_gid)  # a folder of its own: pg_basebackup runs as postgres
    primary = config["primary"]
    _wait_tcp(primary["host"], int(primary["port"]), float(config.get("wait_primary", 120)))
    t0 = time.monotonic()
    cmd = [str(Path(config["pg_bin"]) / "pg_basebackup"), "-h", primary["host"], "-p", str(primary["port"])]
    cmd += ["-U", "postgres", "-D", str(tmp), "-R", "-X", "stream", "-c", "fast", "--no-sync"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, user=pw.pw_uid, group=pw.pw_gid)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ReplicaError(f"pg_basebackup from {primary['host']}:{primary['port']} failed: {tail}")
    settings = {
        "primary_conninfo": _conninfo(config),
        "synchronous_standby_names": "",  # a promoted replica must not wait for a standby of its own
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        **config.get("settings", {}),
    }
    with (tmp / "postgresql.auto.conf").open("a") as f:
        f.write("# vesandbox.replica\n" + "".join(f"{k} = {conf_quote(str(v))}\n" for k, v in settings.items()))
    os.chown(tmp / "postgresql.auto.conf", pw.pw_uid, pw.pw_gid)
    tmp.rename(data)
    log.info("seeded %s from %s:%s in %.1f s", data, primary["host"], primary["port"], time.monotonic() - t0)


def exec_postgres(config: dict[str, Any]) -> None:
    """Become user postgres and replace this process with the server."""
    pw = pwd.getpwnam("postgres")
    sock = Path(config["socket_dir"])
    sock.mkdir(parents=True, exist_ok=True)
    os.chown(sock, pw.pw_uid, pw.pw_gid)
    argv = [str(Path(config["pg_bin"]) / "postgres"), "-D", config["data_dir"], "-h", "127.0.0.1"]
    argv += ["-p", str(config["port"]), "-k", str(sock), "-c", f"cluster_name={config['application_name']}"]
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    os.environ["HOME"] = pw.pw_dir
    sys.stdout.flush()
    os.execv(argv[0], argv)


def run_replica(config: dict[str, Any]) -> int:
    log = setup_logging(config["name"])
    if not (Path(config["data_dir"]) / "PG_VERSION").exists():
        try:
            seed(config, log)
        except (ReplicaError, OSError, subprocess.SubprocessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    exec_postgres(config)
    return 0  # not reached


# ------------------------------------------------------------------------------------------------------ slow link


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy bytes, each chunk delivered ``delay`` seconds after it was read."""
    queue: deque[tuple[float, bytes]] = deque()
    more = asyncio.Event()
    done = False

    async def deliver() -> None:
        while queue or not done:
            if not queue:
                more.clear()
                await more.wait()
                continue
            due, data = queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.popleft()
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(CHUNK):
            queue.append((time.monotonic() + delay, data))
            more.set()
            if sender.done():
                break
        done = True
        more.set()
        await sender
    finally:
        sender.cancel()
        with contextlib.suppress(Exception):
            writer.close()


async def _handle(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, upstream: dict[str, Any], delay: float
) -> None:
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(upstream["host"], int(upstream["port"])), 5)
    except (OSError, TimeoutError):
        client_w.close()
        return
    tasks = [asyncio.create_task(_pump(client_r, up_w, 0.0)), asyncio.create_task(_pump(up_r, client_w, delay))]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    for w in (client_w, up_w):
        with contextlib.suppress(Exception):
            w.close()


async def run_link(config: dict[str, Any]) -> None:
    log = setup_logging(config["name"])
    delay, upstream = float(config.get("delay", 5.0)), config["upstream"]
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, upstream, delay), config["listen"]["host"], int(config["listen"]["port"])
    )
    log.info(
        "link %s:%s -> %s:%s, primary->replica delayed %.1f s",
        config["listen"]["host"],
        config["listen"]["port"],
        upstream["host"],
        upstream["port"],
        delay,
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vesandbox.replica")
    parser.add_argument("--config", required=True)
    parser.add_argument("--link", action="store_true", help="run the delaying replication link instead")
    args = parser.parse_args(argv)
    try:
        config = json.loads(Path(args.config).read_text())
        config.setdefault("weaknesses", [])
        _ = config["name"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.link:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_link(config))
        return 0
    return run_replica(config)


if __name__ == "__main__":
    raise SystemExit(main())
