"""Monitors: the seed's Monitor (name, interval, check) producing Results as Samples; ``monitor()`` is the one way to
build one from a check.

A monitor runs its probe every ``interval`` seconds (a slow check delays the next one instead of overlapping it) and
stops by itself after ``duration`` seconds or ``count`` checks, whichever comes first. Samples are streamed to a
callback, so a monitor that runs for days holds no growing state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from drillbit.model import Sample
from drillbit.probes import Check, Probe, as_probe


@dataclass
class Monitor:
    name: str
    interval: float
    probe: Probe

    def run(
        self,
        on_sample: Callable[[Sample], None],
        *,
        duration: float | None = None,
        count: int | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Run until duration / count / stop; returns how many checks ran. At least one bound is required."""
        if duration is None and count is None and stop is None:
            raise ValueError("a monitor needs a bound: duration, count or a stop event")
        if self.interval <= 0:
            raise ValueError(f"monitor {self.name}: interval must be positive, got {self.interval}")
        stop = stop or threading.Event()
        deadline = time.monotonic() + duration if duration is not None else float("inf")
        n = 0
        next_at = time.monotonic()
        while not stop.is_set() and (count is None or n < count) and time.monotonic() < deadline:
            on_sample(self.probe())
            n += 1
            next_at = max(next_at + self.interval, time.monotonic())
            wait = min(next_at, deadline) - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
        return n


def run_monitors(
    monitors: list[Monitor],
    *,
    duration: float | None = None,
    count: int | None = None,
    stop: threading.Event | None = None,
    on_sample: Callable[[Sample], None] | None = None,
) -> list[Sample]:
    """Run monitors side by side (one thread each) and return every sample, in time order."""
    samples: list[Sample] = []
    lock = threading.Lock()

    def collect(s: Sample) -> None:
        with lock:
            samples.append(s)
        if on_sample:
            on_sample(s)

    with ThreadPoolExecutor(max_workers=max(1, len(monitors)), thread_name_prefix="monitor") as pool:
        futures = [pool.submit(m.run, collect, duration=duration, count=count, stop=stop) for m in monitors]
        for f in futures:
            f.result()
    return sorted(samples, key=lambda s: s.ts)


def monitor(name: str, interval: float, check: Check) -> Monitor:
    """A monitor named ``name`` running ``check`` every ``interval`` seconds; its samples carry the same name."""
    return Monitor(name, interval, as_probe(name, check))
