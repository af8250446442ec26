"""The sandbox's fault proxy: a TCP proxy with Toxiproxy-style toxics and a Toxiproxy-compatible control API.

Model
-----
Each *proxy* listens on one address and, for every client connection, connects to the first of its ``upstreams`` that
accepts (1 s connect timeout each). It tries the upstream that worked last first, then the others in order, so a dead
first upstream costs one failed attempt, not one per connection: several upstreams behave like a Kubernetes Service
in front of several pods. Bytes are piped both ways with asyncio streams. ``upstream`` is the client→upstream
direction, ``downstream`` the upstream→client direction; a half-close (EOF) is forwarded as a half-close, and the
connection is closed when both directions have ended, or at once when either side fails or resets.

A *toxic* belongs to a proxy and one stream. It applies to the proxy's existing connections as soon as it is added
and to every new one, and stops applying when it is removed. Whether it applies to a given connection is decided
once per connection, with probability ``toxicity`` (re-rolled when the toxic is updated), as in Toxiproxy:

- ``latency`` {latency, jitter, correlation}: every chunk is forwarded ``delay`` ms after it was read, keeping order
  (a chunk never overtakes an earlier one) and without slowing reads (delay is not a throughput limit).
  ``dev_i = c * dev_{i-1} + (1 - c) * U(-jitter, +jitter)`` with ``c = correlation / 100`` and ``dev_{-1}`` drawn from
  ``U(-jitter, +jitter)`` when the toxic is created (netem's correlated random); ``delay_i = max(0, latency + dev_i)``.
  The ``dev`` state is shared by all connections of the toxic (as netem's is per interface), so correlation holds
  across connections too.
- ``bandwidth`` {rate}: at most ``rate`` KB/s (KB = 1000 bytes; 0 = unlimited), sent in slices of 100 ms.
- ``slow_close`` {delay}: the end of the stream (EOF) is forwarded ``delay`` ms late.
- ``timeout`` {timeout}: data is dropped; the connection is closed ``timeout`` ms after the toxic started applying to
  it, or, with 0, when the toxic is removed (a connection that lost data cannot carry on).
- ``reset_peer`` {timeout}: on the first chunk of the stream the data is dropped and, ``timeout`` ms later, both sides
  are closed with a TCP RST (SO_LINGER 0), as Toxiproxy does; idle connections are reset on their next use.
- ``limit_data`` {bytes}: after ``bytes`` bytes of the stream (counted from when the toxic applied) the connection
  is closed.

A disabled proxy (``enabled: false``) stops listening (clients get "connection refused", as from a dead pod) and
aborts its open connections; enabling it listens again. ``POST /reset`` enables every proxy and removes every toxic.
The control API follows Toxiproxy's JSON shapes; errors are ``{"error": "...", "status": code}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vesandbox import common

VERSION = "2.9.0"  # the Toxiproxy API version whose shapes this proxy serves
STREAMS = ("upstream", "downstream")
TOXIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter", "correlation"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "limit_data": ("bytes",),
}
ATTRIBUTE_MAX = {"correlation": 100}
CONNECT_TIMEOUT = 1.0
READ_SIZE = 256 * 1024
STREAM_LIMIT = 512 * 1024
HIGH_WATER = 4 * 1024 * 1024  # delayed bytes per direction before reading pauses
LOW_WATER = 1024 * 1024
BACKLOG = 1024
EOF = object()  # queue marker: forward the end of the stream
CLOSE = object()  # queue marker: close the connection

log = logging.getLogger("faultproxy")


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_address(text: Any, what: str) -> tuple[str, int]:
    """``"host:port"`` → (host, port); ApiError(400) when malformed."""
    if isinstance(text, str) and ":" in text:
        host, _, port = text.rpartition(":")
        if host and port.isdigit() and 0 <= int(port) < 65536:
            return host.strip("[]"), int(port)
    raise ApiError(f"{what} must be 'host:port', got {text!r}")


def format_address(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


# ----------------------------------------------------------------------------------------------------------- toxics


class Toxic:
    """A toxic's definition (shared by all connections of its proxy)."""

    def __init__(self, name: str, kind: str, stream: str, toxicity: float, attributes: dict[str, float]) -> None:
        self.name = name
        self.type = kind
        self.stream = stream
        self.toxicity = toxicity
        self.attributes = attributes
        self.deviation = 0.0
        self.reset_state()

    def reset_state(self) -> None:
        jitter = self.attributes.get("jitter", 0)
        self.deviation = random.uniform(-jitter, jitter)

    def next_delay(self) -> float:
        """The next latency in seconds (see the module docstring for the formula)."""
        latency, jitter = self.attributes["latency"], self.attributes["jitter"]
        if jitter:
            c = self.attributes["correlation"] / 100
            self.deviation = c * self.deviation + (1 - c) * random.uniform(-jitter, jitter)
            return max(0.0, latency + self.deviation) / 1000
        return latency / 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError
    return int(value) if float(value).is_integer() else float(value)


def check_attributes(kind: str, given: Any, base: dict[str, float] | None = None) -> dict[str, float]:
    """Merge ``given`` into ``base`` (defaults 0), rejecting unknown names and non-numeric or out-of-range values."""
    valid = TOXIC_ATTRIBUTES[kind]
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ApiError(f"attributes of a {kind} toxic must be a JSON object")
    merged = dict(base) if base else dict.fromkeys(valid, 0)
    for key, value in given.items():
        if key not in valid:
            raise ApiError(f"unknown attribute {key!r} for a {kind} toxic (valid: {', '.join(valid)})")
        limit = ATTRIBUTE_MAX.get(key, math.inf)
        try:
            number = _number(value)
        except ValueError:
            raise ApiError(f"attribute {key!r} of a {kind} toxic must be a number, got {value!r}") from None
        if not 0 <= number <= limit:
            bound = f"between 0 and {limit}" if math.isfinite(limit) else ">= 0"
            raise ApiError(f"attribute {key!r} of a {kind} toxic must be {bound}, got {value!r}")
        merged[key] = number
    return merged


def check_toxicity(value: Any) -> float:
    try:
        number = float(_number(value))
    except ValueError:
        raise ApiError(f"toxicity must be a number between 0 and 1, got {value!r}") from None
    if not 0 <= number <= 1:
        raise ApiError(f"toxicity must be between 0 and 1, got {value!r}")
    return number


def toxic_from_json(body: Any) -> Toxic:
    """Build a toxic from a ``POST /proxies/{name}/toxics`` body; ApiError(400) on anything invalid."""
    if not isinstance(body, dict):
        raise ApiError("the toxic must be a JSON object")
    kind = body.get("type")
    if kind not in TOXIC_ATTRIBUTES:
        raise ApiError(f"invalid toxic type {kind!r}: expected one of {', '.join(TOXIC_ATTRIBUTES)}")
    stream = body.get("stream") or "downstream"
    if stream not in STREAMS:
        raise ApiError(f"stream was invalid ({stream!r}), can be either upstream or downstream")
    name = body.get("name") or f"{kind}_{stream}"
    if not isinstance(name, str):
        raise ApiError(f"toxic name must be a string, got {name!r}")
    toxicity = check_toxicity(body["toxicity"]) if body.get("toxicity") is not None else 1.0
    return Toxic(name, kind, stream, toxicity, check_attributes(kind, body.get("attributes")))


class Stub:
    """One toxic's state on one connection."""

    __slots__ = ("applied", "free_at", "sent", "timer", "toxic", "triggered")

    def __init__(self, toxic: Toxic) -> None:
        self.toxic = toxic
        self.applied = toxic.toxicity >= 1 or random.random() < toxic.toxicity
        self.free_at = 0.0  # bandwidth: when the (virtual) link is free again
        self.sent = 0  # limit_data: bytes let through
        self.triggered = False  # reset_peer fired / limit_data reached
        self.timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def pace(self, items: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
        """Bandwidth: split into 100 ms slices and release each when the link has carried the previous ones."""
        rate = self.toxic.attributes["rate"] * 1000  # bytes per second
        if rate <= 0:
            return items
        size = max(1, int(rate / 10))
        out = []
        for release, data in items:
            for start in range(0, len(data), size):
                piece = data[start : start + size]
                self.free_at = max(release, self.free_at) + len(piece) / rate
                out.append((self.free_at, piece))
        return out

    def limit(self, items: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
        """limit_data: let through at most ``bytes`` bytes; mark triggered once the limit is reached."""
        left = int(self.toxic.attributes["bytes"]) - self.sent
        out = []
        for release, data in items:
            if left <= 0:
                break
            piece = data[:left]
            left -= len(piece)
            self.sent += len(piece)
            out.append((release, piece))
        return out


# ------------------------------------------------------------------------------------------------------ connections


def holds(stub: Stub) -> bool:
    """True when the stub is a timeout toxic that applies (its connection has been dropping data)."""
    return stub.applied and stub.toxic.type == "timeout"


class Pipe:
    """One direction of a connection: reads chunks from ``reader`` and forwards them (maybe delayed) to ``writer``."""

    def __init__(
        self, conn: Connection, stream: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.queue: deque[tuple[float, Any]] = deque()
        self.pending = 0
        self.release_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.room: asyncio.Event | None = None  # created when reading must wait for the queue to drain
        self.ended = False

    async def run(self) -> None:
        conn, reader, writer, stats = self.conn, self.reader, self.writer, self.conn.proxy.bytes
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                stats[self.stream] += len(data)
                stubs = conn.active[self.stream]
                if stubs or self.queue:
                    self.push(data, stubs)
                    if self.pending > HIGH_WATER:
                        self.room = asyncio.Event()
                        await self.room.wait()
                else:
                    writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            conn.close("reset")  # pass a reset on, as a router in between would
            return
        except Exception:
            log.exception("proxy %s: %s pipe failed", conn.proxy.name, self.stream)
            conn.close("abort")
            return
        self.source_ended()

    def push(self, data: bytes, stubs: list[Stub]) -> None:
        items = [(self.loop.time(), data)]
        close = False
        for stub in stubs:
            kind = stub.toxic.type
            if kind == "timeout":
                return
            if kind == "reset_peer":
                if not stub.triggered:
                    stub.triggered = True
                    self.conn.close_later(stub.toxic.attributes["timeout"] / 1000, "reset")
                return
            if kind == "latency":
                delay = stub.toxic.next_delay()
                items = [(release + delay, piece) for release, piece in items]
            elif kind == "bandwidth":
                items = stub.pace(items)
            elif kind == "limit_data":
                items = stub.limit(items)
                if stub.sent >= stub.toxic.attributes["bytes"] and not stub.triggered:
                    stub.triggered = close = True
        for release, piece in items:
            self.enqueue(release, piece)
        if close:
            self.enqueue(0.0, CLOSE)

    def enqueue(self, release: float, payload: Any) -> None:
        release = max(release, self.release_at)
        self.release_at = release
        self.queue.append((release, payload))
        if isinstance(payload, bytes):
            self.pending += len(payload)
        if self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)

    def flush(self) -> None:
        """Timer callback: write every queued item whose release time has come."""
        self.timer = None
        if self.conn.closed:
            return
        if self.writer.transport.is_closing():  # the destination went away (reset)
            self.conn.close("abort")
            return
        now = self.loop.time()
        queue = self.queue
        while queue and queue[0][0] <= now:
            _, payload = queue.popleft()
            if payload is CLOSE:
                self.conn.close("close")
                return
            if payload is EOF:
                self.forward_eof()
                return
            self.writer.write(payload)
            self.pending -= len(payload)
        if self.room is not None and self.pending <= LOW_WATER:
            self.room.set()
        if queue:
            self.timer = self.loop.call_at(queue[0][0], self.flush)

    def source_ended(self) -> None:
        """EOF from the source: forward it after the queued data, ``slow_close`` ms late."""
        stubs = self.conn.active[self.stream]
        if any(stub.toxic.type == "timeout" for stub in stubs):
            self.conn.close("close")
            return
        delay = sum(stub.toxic.attributes["delay"] for stub in stubs if stub.toxic.type == "slow_close") / 1000
        if delay or self.queue:
            self.enqueue(self.loop.time() + delay, EOF)
        else:
            self.forward_eof()

    def forward_eof(self) -> None:
        self.ended = True
        if self.writer.can_write_eof():
            with contextlib.suppress(OSError):
                self.writer.write_eof()
        self.conn.pipe_ended()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        if self.room is not None:
            self.room.set()


class Connection:
    """A client connection and its upstream connection, with this connection's toxic stubs."""

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.writers = (client[1], upstream[1])
        self.pipes = (Pipe(self, "upstream", client[0], upstream[1]), Pipe(self, "downstream", upstream[0], client[1]))
        self.stubs: dict[str, Stub] = {}
        self.active: dict[str, list[Stub]] = {"upstream": [], "downstream": []}
        self.timers: list[asyncio.TimerHandle] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.done = asyncio.Event()
        for toxic in proxy.toxics.values():
            self.add_toxic(toxic)

    async def run(self) -> None:
        self.tasks = [asyncio.create_task(pipe.run()) for pipe in self.pipes]
        try:
            await self.done.wait()
        finally:
            self.close("abort")
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def add_toxic(self, toxic: Toxic) -> None:
        """Add a toxic, or replace its stub in place (same chain position) when it was updated."""
        old = self.stubs.get(toxic.name)
        if old is not None:
            old.cancel()
        stub = self.stubs[toxic.name] = Stub(toxic)
        if stub.applied and toxic.type == "timeout" and toxic.attributes["timeout"] > 0:
            loop = asyncio.get_running_loop()
            stub.timer = loop.call_later(toxic.attributes["timeout"] / 1000, self.close, "close")
        self.refresh()
        if old is not None and holds(old) and not holds(stub):
            self.close("close")  # it dropped data while held by the timeout toxic

    def remove_toxic(self, name: str) -> None:
        stub = self.stubs.pop(name, None)
        if stub is None:
            return
        stub.cancel()
        self.refresh()
        if holds(stub):
            self.close("close")

    def refresh(self) -> None:
        for stream in STREAMS:
            self.active[stream] = [s for s in self.stubs.values() if s.applied and s.toxic.stream == stream]

    def close_later(self, delay: float, how: str) -> None:
        self.timers.append(asyncio.get_running_loop().call_later(delay, self.close, how))

    def pipe_ended(self) -> None:
        if all(pipe.ended for pipe in self.pipes):
            self.close("close")

    def close(self, how: str) -> None:
        """Close both sides: ``close`` (flush, FIN), ``abort`` (drop buffers) or ``reset`` (RST)."""
        if self.closed:
            return
        self.closed = True
        for stub in self.stubs.values():
            stub.cancel()
        for timer in self.timers:
            timer.cancel()
        for pipe in self.pipes:
            pipe.cancel()
        for writer in self.writers:
            close_writer(writer, how)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.done.set()


def close_writer(writer: asyncio.StreamWriter, how: str) -> None:
    if how == "reset":
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if how == "close":
        writer.close()
    else:
        writer.transport.abort()


# ---------------------------------------------------------------------------------------------------------- proxies


class Proxy:
    def __init__(self, name: str, listen: tuple[str, int], upstreams: list[tuple[str, int]], enabled: bool) -> None:
        self.name = name
        self.listen = listen
        self.upstreams = upstreams
        self.enabled = enabled
        self.preferred = 0  # index of the upstream that accepted last
        self.toxics: dict[str, Toxic] = {}
        self.conns: set[Connection] = set()
        self.server: asyncio.Server | None = None
        self.connections_total = 0
        self.connect_failures = 0
        self.unavailable = 0  # client connections closed because no upstream accepted
        self.bytes = {"upstream": 0, "downstream": 0}
        self.all_down = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": format_address(self.listen),
            "upstream": format_address(self.upstreams[0]),
            "upstreams": [format_address(u) for u in self.upstreams],
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics.values()],
            "active_upstream": format_address(self.upstreams[self.preferred]),
            "connections": len(self.conns),
        }

    async def start(self) -> None:
        if self.enabled and self.server is None:
            try:
                self.server = await asyncio.start_server(
                    self.handle, self.listen[0], self.listen[1], limit=STREAM_LIMIT, backlog=BACKLOG
                )
            except OSError as exc:
                where = format_address(self.listen)
                raise ApiError(f"proxy {self.name}: cannot listen on {where}: {exc}", 500) from exc
            self.listen = self.server.sockets[0].getsockname()[:2]

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.conns):
            conn.close("abort")

    async def set_enabled(self, enabled: bool) -> None:
        if enabled == self.enabled:
            return
        self.enabled = enabled
        log.info("proxy %s %s", self.name, "enabled" if enabled else "disabled")
        if enabled:
            try:
                await self.start()
            except ApiError:
                self.enabled = False
                raise
        else:
            self.stop()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            writer.transport.abort()
            return
        upstream = await self.connect()
        if upstream is None or not self.enabled:
            writer.transport.abort()
            if upstream is not None:
                upstream[1].transport.abort()
            return
        conn = Connection(self, (reader, writer), upstream)
        self.conns.add(conn)
        self.connections_total += 1
        try:
            await conn.run()
        finally:
            self.conns.discard(conn)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Connect to the last upstream that worked, else the others in order; None when none accepts."""
        order = [self.preferred] + [i for i in range(len(self.upstreams)) if i != self.preferred]
        for index in order:
            host, port = self.upstreams[index]
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    streams = await asyncio.open_connection(host, port, limit=STREAM_LIMIT)
            except (OSError, TimeoutError):
                self.connect_failures += 1
                continue
            if index != self.preferred or self.all_down:
                log.info("proxy %s: upstream now %s:%d", self.name, host, port)
            self.preferred, self.all_down = index, False
            return streams
        self.unavailable += 1
        if not self.all_down:
            log.warning("proxy %s: no upstream accepts a connection", self.name)
            self.all_down = True
        return None

    def add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self.toxics:
            raise ApiError(f"toxic {toxic.name!r} already exists on proxy {self.name}", 409)
        self.toxics[toxic.name] = toxic
        for conn in list(self.conns):
            conn.add_toxic(toxic)
        log.info("proxy %s: toxic added %s", self.name, toxic.to_json())

    def toxic(self, name: str) -> Toxic:
        if name not in self.toxics:
            raise ApiError(f"toxic {name!r} not found on proxy {self.name}", 404)
        return self.toxics[name]

    def update_toxic(self, name: str, body: Any) -> Toxic:
        toxic = self.toxic(name)
        if not isinstance(body, dict):
            raise ApiError("the toxic update must be a JSON object")
        for key in ("type", "stream"):
            if body.get(key) not in (None, getattr(toxic, key)):
                raise ApiError(f"cannot change the {key} of toxic {name!r}; delete it and add a new one")
        attributes = check_attributes(toxic.type, body.get("attributes"), toxic.attributes)
        toxicity = check_toxicity(body["toxicity"]) if body.get("toxicity") is not None else toxic.toxicity
        toxic.attributes, toxic.toxicity = attributes, toxicity
        toxic.reset_state()
        for conn in list(self.conns):
            conn.add_toxic(toxic)
        log.info("proxy %s: toxic updated %s", self.name, toxic.to_json())
        return toxic

    def remove_toxic(self, name: str) -> None:
        self.toxic(name)
        del self.toxics[name]
        for conn in list(self.conns):
            conn.remove_toxic(name)
        log.info("proxy %s: toxic removed %s", self.name, name)

    async def reset(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)
        await self.set_enabled(True)


def proxy_from_json(body: Any) -> Proxy:
    if not isinstance(body, dict):
        raise ApiError("the proxy must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(f"proxy name must be a non-empty string, got {name!r}")
    upstreams = body.get("upstreams") or ([body["upstream"]] if body.get("upstream") else [])
    if not isinstance(upstreams, list) or not upstreams:
        raise ApiError(f"proxy {name}: 'upstreams' must be a non-empty list of 'host:port'")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ApiError(f"proxy {name}: 'enabled' must be true or false")
    return Proxy(
        name,
        parse_address(body.get("listen"), f"proxy {name}: listen"),
        [parse_address(u, f"proxy {name}: upstream") for u in upstreams],
        enabled,
    )


# ------------------------------------------------------------------------------------------------------ control API


class FaultProxy:
    """All proxies, by name."""

    def __init__(self, proxies: list[Proxy]) -> None:
        self.proxies: dict[str, Proxy] = {}
        for proxy in proxies:
            if proxy.name in self.proxies:
                raise ApiError(f"proxy {proxy.name!r} is defined twice", 409)
            self.proxies[proxy.name] = proxy

    def get(self, name: str) -> Proxy:
        if name not in self.proxies:
            raise ApiError(f"proxy {name!r} not found", 404)
        return self.proxies[name]

    async def start(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()
            log.info("proxy %s listening on %s", proxy.name, format_address(proxy.listen))

    async def stop(self) -> None:
        """Stop listening, abort every connection and wait (at most 2 s) for their handlers to finish."""
        for proxy in self.proxies.values():
            proxy.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2
        while any(proxy.conns for proxy in self.proxies.values()) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def create(self, body: Any) -> Proxy:
        proxy = proxy_from_json(body)
        if proxy.name in self.proxies:
            raise ApiError(f"proxy {proxy.name!r} already exists", 409)
        await proxy.start()
        self.proxies[proxy.name] = proxy
        log.info("proxy %s created on %s", proxy.name, format_address(proxy.listen))
        return proxy

    def delete(self, name: str) -> None:
        self.get(name).stop()
        del self.proxies[name]
        log.info("proxy %s deleted", name)

    async def update(self, name: str, body: Any) -> Proxy:
        """Change ``enabled`` and/or the upstreams; a client re-posting the whole proxy changes nothing else."""
        proxy = self.get(name)
        if not isinstance(body, dict):
            raise ApiError("the proxy update must be a JSON object")
        if body.get("listen") not in (None, format_address(proxy.listen)):
            raise ApiError("changing the listen address of a proxy is not supported; delete and create it")
        upstreams = body.get("upstreams")
        if upstreams is None and body.get("upstream") not in (None, format_address(proxy.upstreams[0])):
            upstreams = [body["upstream"]]
        if upstreams is not None:
            if not isinstance(upstreams, list) or not upstreams:
                raise ApiError("'upstreams' must be a non-empty list of 'host:port'")
            new = [parse_address(u, f"proxy {name}: upstream") for u in upstreams]
            if new != proxy.upstreams:
                proxy.upstreams, proxy.preferred = new, 0
                log.info("proxy %s: upstreams now %s", name, upstreams)
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise ApiError("'enabled' must be true or false")
            await proxy.set_enabled(body["enabled"])
        return proxy

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            await proxy.reset()
        log.info("reset: all proxies enabled, all toxics removed")


class ProxyCollector:
    """Prometheus collector reading the proxies' counters at scrape time (nothing is counted per chunk but ints)."""

    def __init__(self, fault_proxy: FaultProxy) -> None:
        self.fault_proxy = fault_proxy

    def collect(self) -> Any:
        labels = ["proxy"]
        total = CounterMetricFamily("faultproxy_connections", "Client connections proxied", labels=labels)
        active = GaugeMetricFamily("faultproxy_connections_active", "Open proxied connections", labels=labels)
        data = CounterMetricFamily("faultproxy_bytes", "Bytes read, by stream", labels=["proxy", "stream"])
        toxics = GaugeMetricFamily("faultproxy_toxics_active", "Toxics on the proxy", labels=labels)
        enabled = GaugeMetricFamily("faultproxy_proxy_enabled", "1 when the proxy is enabled", labels=labels)
        failures = CounterMetricFamily(
            "faultproxy_upstream_connect_failures", "Failed upstream connection attempts", labels=labels
        )
        unavailable = CounterMetricFamily(
            "faultproxy_upstream_unavailable", "Client connections closed because no upstream accepted", labels=labels
        )
        for proxy in self.fault_proxy.proxies.values():
            total.add_metric([proxy.name], proxy.connections_total)
            active.add_metric([proxy.name], len(proxy.conns))
            for stream in STREAMS:
                data.add_metric([proxy.name, stream], proxy.bytes[stream])
            toxics.add_metric([proxy.name], len(proxy.toxics))
            enabled.add_metric([proxy.name], 1 if proxy.enabled else 0)
            failures.add_metric([proxy.name], proxy.connect_failures)
            unavailable.add_metric([proxy.name], proxy.unavailable)
        return [total, active, data, toxics, enabled, failures, unavailable]


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return await request.json()
    except ValueError:
        raise ApiError("the request body is not valid JSON") from None


Handler = Callable[[Request], Any]


def api(handler: Handler) -> Handler:
    """Turn ApiError into Toxiproxy's error JSON and dicts into JSON responses."""

    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except ApiError as exc:
            return error_response(exc)
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


def build_app(fault_proxy: FaultProxy) -> Starlette:
    registry = CollectorRegistry()
    registry.register(ProxyCollector(fault_proxy))
    fp = fault_proxy

    async def version(request: Request) -> dict[str, Any]:
        return {"version": VERSION, "implementation": "vesandbox-faultproxy"}

    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "proxies": len(fp.proxies)}

    async def metrics(request: Request) -> Response:
        return common.metrics_response(registry)

    async def reset(request: Request) -> Response:
        await fp.reset()
        return Response(status_code=204)

    async def proxies(request: Request) -> Any:
        if request.method == "POST":
            proxy = await fp.create(await json_body(request))
            return JSONResponse(proxy.to_json(), status_code=201)
        return {name: proxy.to_json() for name, proxy in fp.proxies.items()}

    async def proxy(request: Request) -> Any:
        name = request.path_params["proxy"]
        if request.method == "DELETE":
            fp.delete(name)
            return Response(status_code=204)
        if request.method in ("POST", "PATCH"):
            return (await fp.update(name, await json_body(request))).to_json()
        return fp.get(name).to_json()

    async def toxics(request: Request) -> Any:
        target = fp.get(request.path_params["proxy"])
        if request.method == "POST":
            toxic = toxic_from_json(await json_body(request))
            target.add_toxic(toxic)
            return toxic.to_json()
        return [t.to_json() for t in target.toxics.values()]

    async def toxic(request: Request) -> Any:
        target = fp.get(request.path_params["proxy"])
        name = request.path_params["toxic"]
        if request.method == "DELETE":
            target.remove_toxic(name)
            return Response(status_code=204)
        if request.method in ("POST", "PATCH"):
            return target.update_toxic(name, await json_body(request)).to_json()
        return target.toxic(name).to_json()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await fp.start()
        try:
            yield
        finally:
            await fp.stop()

    routes = [
        Route("/version", api(version)),
        Route("/health", api(health)),
        Route("/metrics", api(metrics)),
        Route("/reset", api(reset), methods=["POST"]),
        Route("/proxies", api(proxies), methods=["GET", "POST"]),
        Route("/proxies/{proxy}", api(proxy), methods=["GET", "POST", "PATCH", "DELETE"]),
        Route("/proxies/{proxy}/toxics", api(toxics), methods=["GET", "POST"]),
        Route("/proxies/{proxy}/toxics/{toxic}", api(toxic), methods=["GET", "POST", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def load(config: dict[str, Any]) -> tuple[FaultProxy, tuple[str, int]]:
    """Validate the config; SystemExit(2) with one line when it is wrong."""
    try:
        listen = config.get("listen") or {}
        if not isinstance(listen, dict):
            raise ApiError("'listen' must be an object {host, port}")
        address = (str(listen.get("host", "127.0.0.1")), int(listen.get("port", 8474)))
        proxies = config.get("proxies", [])
        if not isinstance(proxies, list):
            raise ApiError("'proxies' must be a list")
        return FaultProxy([proxy_from_json(p) for p in proxies]), address
    except (ApiError, ValueError, TypeError) as exc:
        print(f"error: bad faultproxy config: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def main(argv: list[str] | None = None) -> None:
    config = common.load_config(argv)
    logger = common.setup_logging(config["name"])
    fault_proxy, (host, port) = load(config)
    common.serve(build_app(fault_proxy), host, port, logger)


if __name__ == "__main__":
    main()
