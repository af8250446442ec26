"""Run arrivals at their intended times with reused worker greenlets (gevent only; the engine in ``openloop.py``
uses it, and the unit tests run it without Locust).

Leader / followers: of the worker greenlets that are not running an operation, one, the *leader*, takes the next
arrival from the merged ``Schedule`` and sleeps until its intended time; the others wait, idle. When the leader wakes
it hands the lead on (to the most recently idle worker, else to a new worker while there are fewer than ``cap``)
and runs the operation itself. So the schedule holds whatever the response times: a slow operation only ever holds
its own worker. A worker that finishes its operation leads again if nobody does, otherwise it waits idle.

Only when ``cap`` operations are in flight is nobody leading: the next arrival then goes out as soon as one of them
finishes (late; its latency counts from its intended time, and ``cap_hits`` / ``cap_wait_s`` say so). As fast as the
target goes, every worker thus takes the next due arrival as soon as its answer is in, with no greenlet created and
no hand-over per request, which costs the same as a closed-loop Locust user. Compared with a new greenlet per
arrival in a ``gevent.pool.Pool`` (and one arrival-stream greenlet waking per request), it saves the spawn, the links
and about two switches per operation.

Everything is bounded: the schedule is finite, ``stop()`` ends the lead, and a worker either takes an arrival, waits
to lead, or returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from arrivals import Schedule
from gevent.hub import Waiter, get_hub
from greenlet import getcurrent


class Dispatcher:
    """Arrivals of several streams, each run by ``owner(intended)`` in a worker greenlet, at most ``cap`` at once."""

    def __init__(self, cap: int, clock: Callable[[], float] = time.time) -> None:
        self.cap = max(1, int(cap))
        self.clock = clock
        self.t0 = 0.0  # intended = t0 + the stream's offset
        self.schedule = Schedule()
        self.workers: set[Any] = set()  # greenlets inside work()
        self.spawned = 0  # workers this dispatcher created (the rest are callers of work(), e.g. Locust users)
        self.inflight = 0
        self.max_inflight_seen = 0
        self.leading = False  # the lead is held (or being handed over)
        self.idle: list[Waiter] = []  # waiting workers, most recently idle last
        self.stopping = False
        self.done = False
        self.on_done: Callable[[], None] | None = None
        self.cap_hits = 0  # arrivals sent late because ``cap`` operations were in flight
        self.cap_wait_s = 0.0
        self._capped_at: float | None = None  # when the lead was dropped at the cap
        self.hub = get_hub()

    def add(self, offsets: Iterable[float], owner: Callable[[float], None]) -> bool:
        """Register a stream; False (ignored) when the schedule is already over."""
        if self.done:
            return False
        self.schedule.add(offsets, owner)
        return True

    def stop(self) -> None:
        """No arrival starts after this (those in flight finish)."""
        self.stopping = True

    # ---- workers
    def work(self, lead: bool = False) -> None:
        """Serve the schedule until it ends (returns at once when ``cap`` workers are already at it)."""
        me = getcurrent()
        if not lead and len(self.workers) >= self.cap:
            return
        self.workers.add(me)
        holding = lead
        try:
            while True:
                if not holding:
                    if self.leading:
                        holding = self._follow()
                        if not holding:
                            return
                    else:
                        self.leading = holding = True
                if self.stopping or self.done:
                    holding = False
                    self._end()
                    return
                item = self.schedule.take()
                if item is None:
                    holding = False
                    self._end()
                    return
                offset, owner = item
                intended = self.t0 + offset
                now = self.clock()
                if intended > now:
                    gevent.sleep(intended - now)
                elif self._capped_at is not None:  # due while every slot was busy: it went late for the cap
                    self.cap_hits += 1
                    self.cap_wait_s += now - max(intended, self._capped_at)
                self._capped_at = None
                if self.stopping:
                    holding = False
                    self._end()
                    return
                self._hand_on()
                holding = False
                self.inflight += 1
                if self.inflight > self.max_inflight_seen:
                    self.max_inflight_seen = self.inflight
                try:
                    owner(intended)
                finally:
                    self.inflight -= 1
        finally:
            self.workers.discard(me)
            if holding:  # killed while leading: pass the lead on, or nobody would ever take the next arrival
                self._hand_on()

    def _hand_on(self) -> None:
        if self.idle:
            self.hub.loop.run_callback(self.idle.pop().switch, True)
        elif len(self.workers) < self.cap and not self.done:
            self.spawned += 1
            gevent.spawn(self.work, True)  # starts holding the lead
        else:
            self.leading = False
            self._capped_at = self.clock()

    def _follow(self) -> bool:
        """Wait idle until handed the lead (True) or the schedule ends (False)."""
        waiter = Waiter()
        self.idle.append(waiter)
        try:
            return bool(waiter.get())
        finally:
            if waiter in self.idle:  # only when killed while waiting
                self.idle.remove(waiter)

    def _end(self) -> None:
        self.leading = False
        if self.done:
            return
        self.done = True
        while self.idle:
            self.hub.loop.run_callback(self.idle.pop().switch, False)
        if self.on_done is not None:
            self.on_done()

    # ---- the end
    def join(self, timeout: float) -> bool:
        """Wait (bounded) until no operation is in flight; True when none is."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while self.inflight and time.monotonic() < deadline:
            gevent.sleep(0.05)
        return not self.inflight

    def kill(self) -> None:
        """Stop every worker (a worker that is a Locust user ends as Locust ends a user)."""
        self.stop()
        me = getcurrent()
        gevent.killall([g for g in self.workers if g is not me], block=False)
