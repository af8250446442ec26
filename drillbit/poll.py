"""The one poller: wait until a condition holds, bounded in time, naming what was awaited when it never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class PollTimeout(RuntimeError):
    """The awaited condition did not hold within the time allowed."""


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.25,
    *,
    errors: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    raises: type[Exception] = PollTimeout,
) -> Any:
    """Poll ``predicate()`` every ``interval`` seconds until it returns something truthy and return that.

    An exception of a type in ``errors`` counts as "not yet" (the last one is named in the timeout message); any
    other propagates. After ``timeout`` seconds, raises ``raises("no <what> within <timeout> s ...")``.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            value = predicate()
            if value:
                return value
        except errors as exc:
            last = f" (last error: {exc.__class__.__name__}: {str(exc)[:200]})"
        if time.monotonic() >= deadline:
            raise raises(f"no {what} within {timeout:.0f} s{last}")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
