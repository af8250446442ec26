"""Helpers shared by the test suites: the one poller every test waits with, loopback port checks, and the stop of
a child process a test started itself."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from vesandbox.procs import pid_alive

__all__ = ["pid_alive"]  # the sandbox's own check (tests may import the sandbox; never the reverse)

T = TypeVar("T")

_NOT_CALLED = object()


def _short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str = "condition",
    interval: float = 0.1,
    errors: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that value.

    An exception of one of the ``errors`` types counts as "not yet" and the polling goes on; any other exception
    propagates at once (``errors=()`` retries on nothing). The deadline is checked after each call, so the predicate
    is called at least once and once more after the last sleep. On timeout an AssertionError names ``what``, the
    timeout, and the last value and the last error the predicate gave.
    """
    deadline = time.monotonic() + timeout
    last_value: object = _NOT_CALLED
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except errors as exc:
            last_error = exc
        else:
            if value:
                return value
            last_value = value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    seen = [f"last value: {_short(last_value)}"] if last_value is not _NOT_CALLED else []
    seen += [f"last error: {_short(last_error)}"] if last_error is not None else []
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} ({', '.join(seen)})")


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (TCP, with SO_REUSEADDR as the servers under test use it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel hands out as free on ``host`` (released again before it is returned)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0, kill_timeout: float = 5.0) -> None:
    """SIGTERM a child that still runs and wait ``timeout`` seconds for it; then SIGKILL it and wait again."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(kill_timeout)


def stop_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """End a child started in a session of its own, with its process group (its own children): SIGTERM, wait
    ``timeout`` seconds, then SIGKILL and wait again."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
