"""Monitors: the seed's Monitor (name, interval, check) producing Results as Samples; ``monitor()`` is the one way to
build one from a check.

A monitor runs its probe every ``interval`` seconds (a slow check delays the next one instead of overlapping it) and
stops by itself after ``duration`` seconds or ``count`` checks, whichever comes first. Samples are streamed to a
callback, so a monitor that runs for days holds no growing state.

**A probe that never answers is a failure at its deadline, not a missing sample.** A monitor with a ``deadline``
(seconds; set by the scenario from its criterion's limit, by default from the probe's own timeout plus a margin)
runs each check on a worker thread and waits for it at most ``deadline`` seconds:

- a check that has not answered by its deadline is a FAILED sample at that moment: ``ts`` = when the check started
  (so it belongs to the phase the check started in), ``latency`` = the deadline, error ``"no answer within N s"``;
- the check is then abandoned and the next one starts on schedule (a user who got no answer tries again); when the
  abandoned check answers late, its sample goes to ``on_late`` (evidence only), never a second sample for it;
- every check gets exactly one sample: the end of the observation (``stop``) does not cut a check short; the
  monitor waits for the check in flight until it answers or reaches its deadline, so the wait is bounded by the
  deadline (checks without a deadline are waited for as the caller decides, see ``Observer.stop``);
- Python cannot kill a thread: an abandoned check's thread ends when its probe's own timeout ends it. At most
  ``max_abandoned`` abandoned checks per monitor are in flight; at that cap the monitor waits for one of them to
  end (or for ``stop``) before starting another, so a stuck target never piles up threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from drillbit.model import Sample
from drillbit.probes import Check, Probe, as_probe

MAX_ABANDONED = 4  # abandoned (past-deadline) checks of one monitor still running, at most


def no_answer(name: str, ts: float, deadline: float) -> Sample:
    """The failed sample of a check that had not answered ``deadline`` seconds after it started at ``ts``."""
    return Sample(name, ts, False, float(deadline), error=f"no answer within {deadline:g} s")


def default_deadline(check: Check) -> float | None:
    """A check's own timeout (the ``timeout`` attribute probes set) plus a margin for its last calls: 5 s + 10 %."""
    own = getattr(check, "timeout", None)
    if own is None:
        return None
    return float(own) + 5.0 + 0.1 * float(own)


@dataclass
class Monitor:
    name: str
    interval: float
    probe: Probe
    deadline: float | None = None  # seconds a check may take before it is a failed sample (see the module doc)
    max_abandoned: int = MAX_ABANDONED
    # when the check in flight started (unix seconds), None between checks: what ``Observer.stop`` reports of a
    # check that has not answered when the observation ends
    in_flight_since: float | None = field(default=None, init=False, repr=False, compare=False)

    def run(
        self,
        on_sample: Callable[[Sample], None],
        *,
        duration: float | None = None,
        count: int | None = None,
        stop: threading.Event | None = None,
        on_late: Callable[[Sample], None] | None = None,
    ) -> int:
        """Run until duration / count / stop; returns how many checks ran. At least one bound is required.

        ``on_late`` receives the sample of a check that answered after its deadline (already recorded as failed)."""
        if duration is None and count is None and stop is None:
            raise ValueError("a monitor needs a bound: duration, count or a stop event")
        if self.interval <= 0:
            raise ValueError(f"monitor {self.name}: interval must be positive, got {self.interval}")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError(f"monitor {self.name}: deadline must be positive, got {self.deadline}")
        stop = stop or threading.Event()
        deadline = time.monotonic() + duration if duration is not None else float("inf")
        slots = threading.BoundedSemaphore(self.max_abandoned + 1)  # the check in flight + the abandoned ones
        n = 0
        next_at = time.monotonic()
        while not stop.is_set() and (count is None or n < count) and time.monotonic() < deadline:
            if self.deadline is None:
                self.in_flight_since = time.time()
                sample = self.probe()
                self.in_flight_since = None
                on_sample(sample)
            else:
                if not _acquire(slots, stop, deadline):
                    break
                self._check_by_deadline(self.deadline, on_sample, on_late, slots)
            n += 1
            if count is not None and n >= count:
                break  # the last check: no interval to wait for
            next_at = max(next_at + self.interval, time.monotonic())
            wait = min(next_at, deadline) - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
        return n

    def once(self) -> Sample:
        """One check, by its deadline when the monitor has one (a steady-state look never hangs on a stuck probe)."""
        got: list[Sample] = []
        self.run(got.append, count=1)
        return got[0]

    def _check_by_deadline(
        self,
        limit: float,
        on_sample: Callable[[Sample], None],
        on_late: Callable[[Sample], None] | None,
        slots: threading.BoundedSemaphore,
    ) -> None:
        """One check on a worker thread; exactly one sample: its own, or the failure at its deadline."""
        ts = time.time()
        lock = threading.Lock()
        answered = threading.Event()
        state: dict[str, object] = {"abandoned": False}

        def work() -> None:
            try:
                s = self.probe()
                with lock:
                    late = state["abandoned"]
                    state["sample"] = s
                answered.set()
                if late and on_late is not None:
                    on_late(replace(s, ts=ts))  # the same check as its failed sample: the same start
            finally:
                slots.release()

        self.in_flight_since = ts
        threading.Thread(target=work, name=f"check-{self.name}", daemon=True).start()
        answered.wait(limit)  # not cut short by stop: the check in flight is waited for until its deadline
        self.in_flight_since = None
        with lock:
            sample = state.get("sample")
            if sample is None:
                state["abandoned"] = True
        on_sample(sample if isinstance(sample, Sample) else no_answer(self.name, ts, limit))


def _acquire(slots: threading.BoundedSemaphore, stop: threading.Event, until: float) -> bool:
    """A slot for the next check; False when stopped (or the run's time is up, ``until`` on the monotonic clock)
    while every slot is held by abandoned checks."""
    while not slots.acquire(timeout=0.5):
        if stop.is_set() or time.monotonic() >= until:
            return False
    return True


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


def monitor(name: str, interval: float, check: Check, deadline: float | None = None) -> Monitor:
    """A monitor named ``name`` running ``check`` every ``interval`` seconds; its samples carry the same name.

    ``deadline``: seconds after which a check that has not answered is a failed sample (the criterion's limit);
    by default the check's own timeout plus a margin, when the probe declares one (``check.timeout``)."""
    return Monitor(name, interval, as_probe(name, check), deadline if deadline is not None else default_deadline(check))
