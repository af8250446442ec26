"""Drillbit's open-model load engine for Locust (imported by the locustfiles next to it; never by Drillbit).

Locust's users are closed loops: a slow answer delays the next request, so the offered load falls exactly when the
target struggles and the slow period is under-sampled (coordinated omission). Here every Locust user is one
*arrival stream*. A process's streams are merged into one schedule, served by reused worker greenlets (the Locust
users themselves, plus more while requests are in flight, up to the cap; ``dispatch.py``): one worker waits for each
arrival's intended start time and hands the next one on before it sends, so the target rate holds whatever the
response times. Each request is recorded with its intended start, actual send
and completion times; latency from the intended start is the coordinated-omission-corrected latency.

Per process, records go to ``OUT/samples-<tag>.bin`` (packed little-endian, ``RECORD``) and ``OUT/meta-<tag>.json``
(names, error strings, timing, generator health). Drillbit merges the processes, computes HDR histograms and grades.

Everything is bounded: the schedule ends with the profile, in-flight requests are capped (``--drillbit-max-inflight``)
and time out, the drain after the schedule is capped (``--drillbit-drain``), and a watchdog stops the schedule when
the error rate or p95 over the last window passes ``--drillbit-abort-error-rate`` / ``--drillbit-abort-p95``.
Traffic goes only to loopback unless ``--drillbit-allow-remote`` is given.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gevent
from arrivals import Profile, Segment, Stream
from dispatch import Dispatcher
from geventhttpclient.client import HTTPClientPool
from locust import constant, events, task
from locust.contrib.fasthttp import FastHttpUser, insecure_ssl_context_factory
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

log = logging.getLogger("drillbit.openloop")

RECORD = struct.Struct("<BdddBhid")  # name, intended, sent, done, ok, status, error index, value
RECORD_DTYPE = "name:u1,intended:<f8,sent:<f8,done:<f8,ok:u1,status:<i2,err:<i4,value:<f8"
FLUSH_EVERY = 5000
MAX_ERRORS = 500
DONE_MESSAGE = "drillbit_done"


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    g = parser.add_argument_group("drillbit open model")
    g.add_argument("--drillbit-profile", default="", help="JSON list of [phase, seconds, rate_from, rate_to]")
    g.add_argument("--drillbit-rate", type=float, default=10.0, help="target arrivals/s (without a profile)")
    g.add_argument("--drillbit-ramp", type=float, default=0.0, help="ramp seconds (without a profile)")
    g.add_argument("--drillbit-duration", type=float, default=60.0, help="steady seconds (without a profile)")
    g.add_argument("--drillbit-streams", type=int, default=0, help="arrival streams in total (default: -u)")
    g.add_argument("--drillbit-processes", type=int, default=0, help="generator processes in total")
    g.add_argument("--drillbit-out", default="drillbit-load-out", help="directory for samples and meta files")
    g.add_argument("--drillbit-timeout", type=float, default=30.0, help="per-request timeout (s)")
    g.add_argument("--drillbit-max-inflight", type=int, default=1000, help="cap on requests in flight per process")
    g.add_argument("--drillbit-drain", type=float, default=40.0, help="max seconds to finish after the schedule")
    g.add_argument("--drillbit-abort-error-rate", type=float, default=0.0, help="stop when exceeded (0 = off)")
    g.add_argument("--drillbit-abort-p95", type=float, default=0.0, help="stop when p95 (s) exceeds (0 = off)")
    g.add_argument("--drillbit-abort-window", type=float, default=10.0, help="watchdog window (s)")
    g.add_argument("--drillbit-allow-remote", action="store_true", help="allow a non-loopback target")


def option(env: Any, name: str, default: Any = None) -> Any:
    opts = env.parsed_options
    return getattr(opts, name, default) if opts is not None else default


def profile_from_options(env: Any) -> Profile:
    raw = option(env, "drillbit_profile", "")
    if raw:
        return Profile.from_json(json.loads(raw))
    rate = float(option(env, "drillbit_rate", 10.0))
    ramp = float(option(env, "drillbit_ramp", 0.0))
    segments = [Segment("ramp", ramp, 0.0, rate)] if ramp > 0 else []
    segments.append(Segment("steady", float(option(env, "drillbit_duration", 60.0)), rate, rate))
    return Profile(segments)


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise SystemExit(f"drillbit: cannot resolve target host {host!r}: {exc}") from None
    if not addrs or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        raise SystemExit(f"drillbit: target {url} is not on loopback; pass --drillbit-allow-remote to load it")


class Recorder:
    """Packed per-request records of one process, flushed to disk in batches."""

    def __init__(self, out: Path, tag: str) -> None:
        self.out, self.tag = out, tag
        self.path = out / f"samples-{tag}.bin"
        self.names: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.buffer: list[bytes] = []
        self.count = 0
        out.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")

    def record(self, name: str, intended: float, sent: float, done: float, ok: bool, status: int, error: str | None,
               value: float) -> None:  # fmt: skip
        n = self.names.setdefault(name, len(self.names))
        e = -1
        if error:
            key = error[:300]
            if key not in self.errors and len(self.errors) >= MAX_ERRORS:
                key = "other error (too many distinct errors)"
            e = self.errors.setdefault(key, len(self.errors))
        status = max(-32768, min(32767, int(status)))
        self.buffer.append(RECORD.pack(n, intended, sent, done, 1 if ok else 0, status, e, value))
        self.count += 1
        if len(self.buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            with self.path.open("ab") as f:
                f.write(b"".join(self.buffer))
            self.buffer.clear()


class Engine:
    """The per-process state of an open-model run."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.profile = profile_from_options(env)
        self.timeout = float(option(env, "drillbit_timeout", 30.0))
        self.drain = float(option(env, "drillbit_drain", 40.0))
        self.cap = max(1, int(option(env, "drillbit_max_inflight", 1000)))
        self.dispatcher = Dispatcher(self.cap)
        self.dispatcher.on_done = self._schedule_done
        self.tag = f"{socket.gethostname()}-{os.getpid()}"
        self.recorder = Recorder(Path(option(env, "drillbit_out", "drillbit-load-out")), self.tag)
        self.t0: float | None = None
        self.local_streams = 0
        self.streams_done = 0
        self.stopping = False
        self.aborted: str | None = None
        self.finished = False
        self.drainers: list[Callable[[float], None]] = []  # called with a deadline after the schedule
        self.primary: str | None = None  # the operation the watchdog looks at
        self.window: collections.deque = collections.deque()
        self.abort_error_rate = float(option(env, "drillbit_abort_error_rate", 0.0))
        self.abort_p95 = float(option(env, "drillbit_abort_p95", 0.0))
        self.abort_window = float(option(env, "drillbit_abort_window", 10.0))
        self.watchdog: gevent.Greenlet | None = None
        self.extra: dict[str, Any] = {}  # locustfile-specific facts for the meta file (e.g. accounts used)

    # ---- streams
    def start(self, lead: float) -> None:
        if self.t0 is None:
            self.t0 = self.dispatcher.t0 = time.time() + lead
            self.watchdog = gevent.spawn(self._watch)

    def claim_stream(self) -> tuple[int, int]:
        """(global index, total streams) of a new stream of this process."""
        local = self.local_streams
        self.local_streams += 1
        total = int(option(self.env, "drillbit_streams", 0) or option(self.env, "num_users", 0) or 1)
        procs = int(option(self.env, "drillbit_processes", 0) or option(self.env, "processes", 0) or 1)
        procs = max(procs, 1)
        worker = max(int(getattr(self.env.runner, "worker_index", 0) or 0), 0)
        index = local * procs + worker
        if index >= total:
            log.warning("stream %d is beyond --drillbit-streams %d; it repeats stream %d", index, total, index % total)
        return index % total, total

    def stream_done(self) -> None:
        """A closed-loop (``concurrency``) slot ended; the open schedule ends through ``_schedule_done``."""
        self.streams_done += 1
        if self.streams_done >= self.local_streams:
            gevent.spawn(self.finish)

    def _schedule_done(self) -> None:
        """Every arrival of the process's schedule was taken (or the schedule was stopped)."""
        self.streams_done = self.local_streams
        gevent.spawn(self.finish)

    @property
    def max_inflight_seen(self) -> int:
        return self.dispatcher.max_inflight_seen

    # ---- recording
    def record(self, name: str, intended: float, sent: float, done: float, ok: bool, status: int = 0,
               error: str | None = None, value: float = float("nan")) -> None:  # fmt: skip
        self.recorder.record(name, intended, sent, done, ok, status, error, value)
        if name == self.primary and (self.abort_error_rate > 0 or self.abort_p95 > 0):
            self.window.append((done, ok, done - intended))

    def _watch(self) -> None:
        deadline = (self.t0 or time.time()) + self.profile.duration + self.drain + 5
        while not self.finished and time.time() < deadline:
            gevent.sleep(1.0)
            reason = self._violation()
            if reason and not self.stopping:
                self.aborted = reason
                self.stopping = True
                self.dispatcher.stop()
                log.warning("drillbit: stopping the schedule: %s", reason)

    def _violation(self) -> str | None:
        now = time.time()
        while self.window and self.window[0][0] < now - self.abort_window:
            self.window.popleft()
        if len(self.window) < 20:
            return None
        errors = sum(1 for _, ok, _ in self.window if not ok)
        rate = errors / len(self.window)
        if self.abort_error_rate > 0 and rate > self.abort_error_rate:
            return f"error rate {rate:.1%} over the last {self.abort_window:g} s > {self.abort_error_rate:.1%}"
        if self.abort_p95 > 0:
            lat = sorted(x for _, _, x in self.window)
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            if p95 > self.abort_p95:
                return f"p95 {p95:.2f} s over the last {self.abort_window:g} s > {self.abort_p95:g} s"
        return None

    # ---- the end
    def finish(self) -> None:
        """After the schedule: wait (bounded) for in-flight requests and drainers, write the files, then stop."""
        if self.finished:
            return
        deadline = time.time() + self.drain
        self.dispatcher.join(max(self.drain, 0.1))
        for drainer in self.drainers:
            with contextlib.suppress(Exception):
                drainer(deadline)
        self.dispatcher.kill()
        self.write()
        runner = self.env.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message(DONE_MESSAGE, {"tag": self.tag, "records": self.recorder.count})
        elif isinstance(runner, LocalRunner):
            gevent.spawn_later(0.2, runner.quit)

    def write(self) -> None:
        """Flush the records and write the meta file (idempotent; also called when Locust stops early)."""
        if self.finished:
            return
        self.finished = True
        self.recorder.flush()
        meta = {
            "tag": self.tag,
            "pid": os.getpid(),
            "t0": self.t0,
            "finished_at": time.time(),
            "profile": self.profile.to_json(),
            "local_streams": self.local_streams,
            "names": list(self.recorder.names),
            "errors": list(self.recorder.errors),
            "records": self.recorder.count,
            "dtype": RECORD_DTYPE,
            "aborted": self.aborted,
            "max_inflight_seen": self.dispatcher.max_inflight_seen,
            "max_inflight": self.cap,
            "cap_hits": self.dispatcher.cap_hits,
            "cap_wait_s": round(self.dispatcher.cap_wait_s, 3),
            "workers_spawned": self.dispatcher.spawned,
            "samples_file": self.recorder.path.name,
            "extra": self.extra,
        }
        tmp = self.recorder.out / f".meta-{self.tag}.json"
        tmp.write_text(json.dumps(meta))
        tmp.rename(self.recorder.out / f"meta-{self.tag}.json")


ENGINE: Engine | None = None


def engine() -> Engine:
    assert ENGINE is not None, "the drillbit engine starts with Locust's init event"
    return ENGINE


@events.init.add_listener
def _init(environment: Any, **_kw: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _master_watch(environment)


@events.test_start.add_listener
def _test_start(environment: Any, **_kw: Any) -> None:
    """Set the engine up when the test starts: a worker only has the master's options by then."""
    global ENGINE
    if isinstance(environment.runner, MasterRunner):
        return
    if ENGINE is None:
        host = environment.host or ""
        if host and not option(environment, "drillbit_allow_remote", False):
            check_loopback(host)
        ENGINE = Engine(environment)
        fast_connections()
        # one connection pool per process, shared by every stream: connections are reused whichever stream's
        # request finishes, instead of each stream opening its own when requests pile up
        shared = HTTPClientPool(
            concurrency=ENGINE.cap,
            network_timeout=ENGINE.timeout,
            connection_timeout=min(ENGINE.timeout, 10.0),
            ssl_context_factory=insecure_ssl_context_factory,  # as FastHttpUser's default (insecure = True)
        )
        for cls in environment.user_classes or []:
            if issubclass(cls, OpenLoopUser):
                cls.concurrency = ENGINE.cap
                cls.network_timeout = ENGINE.timeout
                cls.connection_timeout = min(ENGINE.timeout, 10.0)
                cls.client_pool = shared
    users = int(option(environment, "num_users", 1) or 1)
    rate = float(option(environment, "spawn_rate", 1) or 1)
    ENGINE.start(lead=min(users / max(rate, 1.0), 5.0) + 0.3)


@events.quitting.add_listener
def _quitting(environment: Any, **_kw: Any) -> None:
    if ENGINE is not None:
        ENGINE.write()


def fast_connections() -> None:
    """Resolve host names in-line (gevent's default hands every lookup to a thread pool of 10, which becomes the
    bottleneck when an open model opens connections fast). Loopback and cluster DNS answer at once; set
    ``GEVENT_RESOLVER`` to choose another resolver."""
    if not os.environ.get("GEVENT_RESOLVER"):
        from gevent.resolver.blocking import Resolver

        hub = gevent.get_hub()
        hub.resolver = Resolver(hub)


def _master_watch(environment: Any) -> None:
    done: set[str] = set()

    def on_done(msg: Any, **_kw: Any) -> None:
        done.add(msg.data.get("tag", str(len(done))))
        runner = environment.runner
        if len(done) >= max(runner.worker_count, 1):
            gevent.spawn_later(0.5, runner.quit)

    environment.runner.register_message(DONE_MESSAGE, on_done)


class OpenLoopUser(FastHttpUser):
    """One arrival stream. Subclasses implement ``arrive(intended)`` and record through ``self.engine.record``."""

    abstract = True
    wait_time = constant(0)
    model = "open"  # "open": arrivals on schedule; "concurrency": back-to-back operations (each user one slot)
    primary = "request"

    def on_start(self) -> None:
        self.engine = engine()
        self.engine.primary = self.engine.primary or self.primary

    @task
    def run_stream(self) -> None:
        eng = self.engine
        eng.start(lead=0.3)
        index, total = eng.claim_stream()
        if self.model == "concurrency":
            try:
                self._closed_slot(eng, index, total)
            finally:
                eng.stream_done()
        else:
            # the stream joins the process's schedule, and this user serves it as one of its workers
            if not eng.dispatcher.add(Stream(eng.profile, index, total).offsets(), self._arrival):
                log.warning("stream %d started after the schedule ended; it sends nothing", index)
            eng.dispatcher.work()
        raise StopUser()

    def _closed_slot(self, eng: Engine, index: int, total: int) -> None:
        """Keep one operation in flight until the profile ends; slots start staggered over the first segment."""
        first = eng.profile.segments[0]
        start = eng.t0 + (first.seconds * index / total if first.phase == "ramp" else 0.0)
        end = eng.t0 + eng.profile.duration
        count, bound = 0, 1_000_000
        while not eng.stopping and time.time() < end and count < bound:
            if time.time() < start:
                gevent.sleep(start - time.time())
                continue
            self._arrival(time.time())
            count += 1

    def _arrival(self, intended: float) -> None:
        try:
            self.arrive(intended)
        except Exception as exc:  # an operation never kills its stream: it is a failed sample
            now = time.time()
            self.engine.record(self.primary, intended, intended, now, False, 0, f"{type(exc).__name__}: {exc}")

    def arrive(self, intended: float) -> None:
        raise NotImplementedError

    # ---- helpers for subclasses
    def call(self, name: str, method: str, url: str, *, ok: Callable[[Any], str | None] | None = None,
             poll: bool = False, **kwargs: Any) -> tuple[bool, int, str | None, Any, float]:  # fmt: skip
        """One HTTP request through Locust's client; ``ok(response)`` returns an error string or None.

        Returns (ok, status, error, response, seconds). ``poll``: a "not yet" answer is expected (a status poll), so
        Locust's own stats count it as a success.
        """
        t = time.perf_counter()
        if ok is None and not poll:  # the plain path: Locust judges the status itself (cheaper per request)
            r = self.client.request(method, url, name=name, **kwargs)
            status = int(getattr(r, "status_code", 0) or 0)
            return_error = _status_error(r, status)
            return return_error is None, status, return_error, r, time.perf_counter() - t
        with self.client.request(method, url, name=name, catch_response=True, **kwargs) as r:
            status = int(getattr(r, "status_code", 0) or 0)
            error = _status_error(r, status)
            if error is None and ok is not None:
                try:
                    error = ok(r)
                except Exception as exc:
                    error = f"unreadable response: {type(exc).__name__}: {exc}"
            if error and not (poll and status):
                r.failure(error)
            else:
                r.success()
        return error is None, status, error, r, time.perf_counter() - t


def _status_error(r: Any, status: int) -> str | None:
    if getattr(r, "error", None) is not None and not status:
        return f"{type(r.error).__name__}: {r.error}"
    if not 200 <= status < 300:
        return f"HTTP {status}" + (f": {(r.text or '')[:120]}" if r.text else "")
    return None
