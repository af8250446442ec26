"""An open-model HTTP/1.1 load generator: ``python -m drillbit.load.openloop_http --url URL --rate R ...``.

Run as a subprocess only (the flow process never imports it). Requests start at a fixed arrival rate whatever the
response times: request ``i`` is due at ``t0 + i / rate`` and its latency counts from that *intended* start, so time
spent waiting for a free connection counts against the target (no coordinated omission). Raw asyncio sockets with
keep-alive connections (a pool of at most ``--connections``): an HTTP client library would cost more CPU than the
server under test.

Bounded in every way: scheduling stops at ``--duration`` seconds or ``--max-requests``, whichever comes first; every
request times out ``--timeout`` s after its intended start; the drain after the schedule is capped; SIGTERM (or
SIGINT) stops the schedule, drains for at most a second and still writes the results. Only loopback targets.

Output: ``OUT`` has one CSV line per request, ``intended_start_unix,latency_s,status`` (status: the HTTP code;
0 connection error; -1 timed out; -3 cut off by SIGTERM), flushed every half second; ``OUT.meta.json`` is written
at start (``"state": "running"``) and at the end (counts, achieved offered rate, scheduler lateness: the largest,
and the distribution of every arrival's lateness and of its wait until sent — the harness's own share of latency).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import ipaddress
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TIMED_OUT, CONN_ERROR, CUT_OFF = -1, 0, -3
IDLE_MAX_S = 2.0  # servers close idle keep-alive connections (uvicorn after 5 s)
# upper bounds (s) of the lateness / wait histograms in the meta file (the last bucket: anything later)
WAIT_EDGES = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, float("inf"))
LATE_S = 0.01  # an arrival this late (or a request waiting this long to be sent) counts as late


class WaitHistogram:
    """Counts of waits by bucket (``WAIT_EDGES``): constant memory whatever the request count."""

    def __init__(self) -> None:
        self.counts = [0] * len(WAIT_EDGES)
        self.n = 0
        self.late = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        i = 0
        while seconds > WAIT_EDGES[i]:
            i += 1
        self.counts[i] += 1
        self.n += 1
        self.late += seconds >= LATE_S
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float | None:
        """The upper edge of the bucket holding quantile ``q`` (the max for the last bucket); None when empty."""
        if not self.n:
            return None
        seen = 0
        for edge, count in zip(WAIT_EDGES, self.counts, strict=True):
            seen += count
            if seen >= q * self.n:
                return round(min(edge, self.max), 4)
        return round(self.max, 4)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "p50_s": self.quantile(0.5),
            "p95_s": self.quantile(0.95),
            "p99_s": self.quantile(0.99),
            "max_s": round(self.max, 4),
            f"share_over_{LATE_S * 1000:g}ms": round(self.late / self.n, 4) if self.n else None,
            "edges_s": [e if e != float("inf") else None for e in WAIT_EDGES],
            "counts": list(self.counts),
        }


@dataclass
class Config:
    host: str
    port: int
    path: str
    method: str
    body: bytes
    headers: list[str]
    rate: float
    duration: float
    max_requests: int
    connections: int
    timeout: float
    out: Path


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m drillbit.load.openloop_http", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--method", default="GET")
    p.add_argument("--body", default="", help="request body (sent with Content-Type: application/json)")
    p.add_argument("--header", action="append", default=[], help="extra header line, e.g. 'X-Test: 1'")
    p.add_argument("--rate", type=float, required=True, help="requests per second (arrivals)")
    p.add_argument("--duration", type=float, required=True, help="seconds of scheduling")
    p.add_argument("--max-requests", type=int, required=True, help="never more requests than this")
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds from intended start to give up")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    url = urlsplit(a.url)
    if url.scheme != "http" or not url.hostname:
        p.error(f"--url must be http://host:port/path, got {a.url!r}")
    if not is_loopback(url.hostname):
        p.error(f"refusing to load {url.hostname}: only loopback targets (127.0.0.0/8)")
    if not 0 < a.rate <= 50_000 or not 0 < a.duration <= 3600 or a.max_requests < 1 or a.connections < 1:
        p.error("rate must be within (0, 50000], duration within (0, 3600], max-requests and connections ≥ 1")
    if not 0 < a.timeout <= 60:
        p.error("timeout must be within (0, 60] seconds")
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return Config(
        url.hostname,
        url.port or 80,
        path,
        a.method.upper(),
        a.body.encode(),
        list(a.header),
        a.rate,
        a.duration,
        a.max_requests,
        a.connections,
        a.timeout,
        Path(a.out),
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request_bytes(cfg: Config) -> bytes:
    lines = [f"{cfg.method} {cfg.path} HTTP/1.1", f"Host: {cfg.host}:{cfg.port}", "Connection: keep-alive"]
    if cfg.body or cfg.method in ("POST", "PUT", "PATCH"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(cfg.body)}"]
    lines += cfg.headers
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + cfg.body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns (status, keep the connection)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    keep = headers.get("connection", "").lower() != "close" and head[0].startswith("HTTP/1.1")
    return status, keep


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used_at: float = 0.0

    def stale(self, now: float) -> bool:
        """Closed by the server, or idle long enough that its keep-alive timeout may close it under us."""
        return self.writer.is_closing() or self.reader.at_eof() or now - self.used_at > IDLE_MAX_S

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class Pool:
    """Keep-alive connections, at most ``limit`` open; a request waits (FIFO) when all are busy."""

    host: str
    port: int
    limit: int
    idle: list[Conn] = field(default_factory=list)
    opened: int = 0
    peak: int = 0
    waiters: collections.deque[asyncio.Future[Conn | None]] = field(default_factory=collections.deque)

    async def get(self) -> Conn:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.stale(now):
                return conn
            self.discard(conn)
        if self.opened >= self.limit:
            fut: asyncio.Future[Conn | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                handed = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._return(fut.result())
                raise
            if handed is not None:
                return handed
        else:
            self.opened += 1  # a slot to open a new connection (a waiter handed None got the releaser's slot)
        self.peak = max(self.peak, self.opened)
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except BaseException:
            self.release_slot()
            raise
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(reader, writer, time.monotonic())

    def _return(self, conn: Conn | None) -> None:
        if conn is None:
            self.release_slot()
        else:
            self.put(conn)

    def put(self, conn: Conn) -> None:
        conn.used_at = time.monotonic()
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self, conn: Conn) -> None:
        conn.close()
        self.release_slot()

    def release_slot(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to the waiter, which opens a connection
                return
        self.opened -= 1

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class Generator:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.raw = request_bytes(cfg)
        self.pool = Pool(cfg.host, cfg.port, cfg.connections)
        self.records: list[tuple[float, float, int]] = []
        self.written = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.stop = asyncio.Event()
        self.scheduled = 0
        self.max_lateness = 0.0
        self.arrival_lateness = WaitHistogram()  # how late each request was created after it was due
        self.send_wait = WaitHistogram()  # from due to written: lateness + pool wait + connect (client-side)
        self.mono0 = 0.0
        self.wall0 = 0.0
        self.stopped_by = "schedule"

    def to_unix(self, mono: float) -> float:
        return self.wall0 + (mono - self.mono0)

    async def one(self, intended: float) -> None:
        loop = asyncio.get_running_loop()
        conn: Conn | None = None
        status, keep = TIMED_OUT, False
        try:
            async with asyncio.timeout_at(intended + self.cfg.timeout):
                conn = await self.pool.get()
                conn.writer.write(self.raw)
                self.send_wait.add(max(0.0, loop.time() - intended))
                status, keep = await read_response(conn.reader)
        except TimeoutError:
            status = TIMED_OUT
        except asyncio.CancelledError:
            status = CUT_OFF
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            status = CONN_ERROR
        finally:
            if conn is not None:
                self.pool.put(conn) if keep and status > 0 else self.pool.discard(conn)
        self.records.append((self.to_unix(intended), loop.time() - intended, status))
        self.statuses[status] += 1

    async def schedule(self, tasks: set[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        self.mono0, self.wall0 = loop.time(), time.time()
        limit = min(self.cfg.max_requests, int(self.cfg.rate * self.cfg.duration) + 1)
        while not self.stop.is_set():
            if self.scheduled >= limit:
                self.stopped_by = "max_requests" if limit == self.cfg.max_requests else "schedule"
                return
            intended = start + self.scheduled / self.cfg.rate
            if intended - start >= self.cfg.duration:
                return
            delay = intended - loop.time()
            if delay > 0.0005:
                await asyncio.sleep(min(delay, 0.1))  # a plain timer (wait_for costs a task per arrival)
                continue
            self.max_lateness = max(self.max_lateness, -delay)
            self.arrival_lateness.add(max(0.0, -delay))
            task = asyncio.create_task(self.one(intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.scheduled += 1

    def flush(self, out: Any) -> None:
        new = self.records[self.written :]
        if new:
            out.write("".join(f"{t:.6f},{lat:.6f},{s}\n" for t, lat, s in new))
            out.flush()
            self.written += len(new)

    async def flusher(self, out: Any) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.flush(out)

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        tasks: set[asyncio.Task[None]] = set()
        meta_path = Path(f"{self.cfg.out}.meta.json")
        write_json(meta_path, {"state": "running", "pid": os.getpid(), "started_at_unix": time.time()})
        with open(self.cfg.out, "w") as out:
            flusher = asyncio.create_task(self.flusher(out))
            await self.schedule(tasks)
            scheduled_until = loop.time()
            drain = 1.0 if self.stop.is_set() else self.cfg.timeout + 0.5
            if tasks:
                await asyncio.wait(set(tasks), timeout=drain)
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(set(tasks), timeout=1.0)
            flusher.cancel()
            self.flush(out)
        self.pool.close()
        span = max(1e-9, scheduled_until - self.mono0)
        meta = {
            "state": "finished",
            "pid": os.getpid(),
            "target": f"{self.cfg.method} http://{self.cfg.host}:{self.cfg.port}{self.cfg.path}",
            "rate": self.cfg.rate,
            "duration": self.cfg.duration,
            "max_requests": self.cfg.max_requests,
            "timeout": self.cfg.timeout,
            "connections": self.cfg.connections,
            "started_at_unix": self.wall0,
            "scheduled_until_unix": self.to_unix(scheduled_until),
            "ended_at_unix": time.time(),
            "scheduled": self.scheduled,
            "recorded": self.written,
            "offered_rate": round(self.scheduled / span, 2),
            "max_lateness_s": round(self.max_lateness, 4),
            "arrival_lateness": self.arrival_lateness.summary(),
            "send_wait": self.send_wait.summary(),
            "peak_connections": self.pool.peak,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "stopped_by": self.stopped_by,
        }
        write_json(meta_path, meta)
        return meta

    def _on_signal(self) -> None:
        self.stopped_by = "signal"
        self.stop.set()


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    gc.freeze()  # fewer, shorter collections while millions of small objects come and go
    meta = asyncio.run(Generator(cfg).run())
    print(json.dumps(meta), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
