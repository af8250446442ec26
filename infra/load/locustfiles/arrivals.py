"""Arrival schedules for an open load model (stdlib only: the locustfiles and the tests share it).

A profile is a list of segments ``(phase, seconds, rate_from, rate_to)``: the target arrival rate (per second) moves
linearly from ``rate_from`` to ``rate_to`` during the segment. ``Stream`` gives the intended start times of one of
``n`` interleaved streams whose union is the whole profile, evenly spaced (stream ``i`` takes arrivals ``i``,
``i + n``, ``i + 2n`` ... of the global schedule, at cumulative count ``k + 0.5``). ``Schedule`` merges a process's
streams back into one time-ordered sequence of arrivals, which the engine's worker greenlets take in turn.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Segment:
    phase: str
    seconds: float
    rate_from: float
    rate_to: float

    def count(self, tau: float) -> float:
        """Arrivals expected in the first ``tau`` seconds of the segment."""
        tau = min(max(tau, 0.0), self.seconds)
        slope = (self.rate_to - self.rate_from) / self.seconds if self.seconds else 0.0
        return self.rate_from * tau + 0.5 * slope * tau * tau

    @property
    def total(self) -> float:
        return self.count(self.seconds)

    def time_at(self, n: float) -> float:
        """Seconds into the segment at which ``n`` arrivals (0 <= n <= total) are expected."""
        if n <= 0:
            return 0.0
        a = 0.5 * (self.rate_to - self.rate_from) / self.seconds if self.seconds else 0.0
        b = self.rate_from
        if abs(a) < 1e-12:
            return n / b if b > 0 else self.seconds
        disc = max(b * b + 4 * a * n, 0.0)
        # numerically stable root of a t^2 + b t - n = 0
        return (2 * n) / (b + math.sqrt(disc)) if b + math.sqrt(disc) > 0 else self.seconds


class Profile:
    """A rate profile: segments back to back, starting at offset 0."""

    def __init__(self, segments: list[Segment]) -> None:
        if not segments:
            raise ValueError("a profile needs at least one segment")
        for s in segments:
            if s.seconds <= 0 or s.rate_from < 0 or s.rate_to < 0:
                raise ValueError(f"bad segment {s}: seconds must be > 0 and rates >= 0")
        self.segments = segments
        self.starts: list[float] = []
        self.counts: list[float] = []  # cumulative arrivals at each segment start
        t = n = 0.0
        for s in segments:
            self.starts.append(t)
            self.counts.append(n)
            t += s.seconds
            n += s.total

    @classmethod
    def from_json(cls, data: list) -> Profile:
        return cls([Segment(str(p), float(sec), float(r0), float(r1)) for p, sec, r0, r1 in data])

    def to_json(self) -> list:
        return [[s.phase, s.seconds, s.rate_from, s.rate_to] for s in self.segments]

    @property
    def duration(self) -> float:
        return self.starts[-1] + self.segments[-1].seconds

    @property
    def total(self) -> float:
        return self.counts[-1] + self.segments[-1].total

    def rate(self, t: float) -> float:
        for s, start in zip(self.segments, self.starts, strict=True):
            if start <= t < start + s.seconds:
                return s.rate_from + (s.rate_to - s.rate_from) * (t - start) / s.seconds
        return 0.0

    def phase(self, t: float) -> str | None:
        for s, start in zip(self.segments, self.starts, strict=True):
            if start <= t < start + s.seconds:
                return s.phase
        return None

    def time_at(self, n: float) -> float | None:
        """Offset (s) at which the cumulative expected count reaches ``n``; None when the profile ends first."""
        if n > self.total:
            return None
        for i in range(len(self.segments) - 1, -1, -1):
            if n >= self.counts[i]:
                seg = self.segments[i]
                if n - self.counts[i] > seg.total:  # only for a zero-rate tail: skip forward
                    continue
                return self.starts[i] + seg.time_at(n - self.counts[i])
        return 0.0


class Stream:
    """Stream ``index`` of ``of`` interleaved streams over a profile: intended offsets of its arrivals."""

    def __init__(self, profile: Profile, index: int, of: int) -> None:
        if of < 1 or not 0 <= index < of:
            raise ValueError(f"stream index {index} of {of} is out of range")
        self.profile, self.index, self.of = profile, index, of

    def offsets(self, limit: int | None = None) -> Iterator[float]:
        """``profile.time_at(index + k * of + 0.5)`` for k = 0, 1, ... (walking the segments forward instead of
        searching them for every arrival: this runs once per request)."""
        p = self.profile
        segs, starts, counts = p.segments, p.starts, p.counts
        last, total, duration = len(segs) - 1, p.total, p.duration
        i = k = 0
        bound = int(total) + self.of if limit is None else limit  # every loop is bounded
        while k <= bound:
            n = self.index + k * self.of + 0.5
            if n > total:
                return
            while i < last and n >= counts[i + 1]:
                i += 1
            t = starts[i] + segs[i].time_at(n - counts[i])
            if t >= duration:
                return
            yield t
            k += 1


class Schedule:
    """Several streams' arrivals merged in intended-time order (one process's share of a profile).

    ``add(offsets, owner)`` registers a stream (its offsets ascending, as ``Stream.offsets`` gives them); ``take()``
    returns the earliest arrival not taken yet as ``(offset, owner)``, or None when every stream is exhausted. A
    stream added late starts with its earliest arrival, even if that is already in the past (it is then simply due).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Iterator[float], Any]] = []
        self._seq = 0  # ties: the stream added first goes first
        self.streams = 0
        self.taken = 0

    def add(self, offsets: Iterable[float], owner: Any) -> None:
        it = iter(offsets)
        self.streams += 1
        self._push(it, owner)

    def _push(self, it: Iterator[float], owner: Any) -> None:
        t = next(it, None)
        if t is not None:
            self._seq += 1
            heapq.heappush(self._heap, (t, self._seq, it, owner))

    def peek(self) -> float | None:
        """The offset of the next arrival, without taking it."""
        return self._heap[0][0] if self._heap else None

    def take(self) -> tuple[float, Any] | None:
        if not self._heap:
            return None
        t, _, it, owner = self._heap[0]
        nxt = next(it, None)
        if nxt is None:
            heapq.heappop(self._heap)
        else:
            self._seq += 1
            heapq.heapreplace(self._heap, (nxt, self._seq, it, owner))
        self.taken += 1
        return t, owner

    def __len__(self) -> int:
        """Streams that still have arrivals."""
        return len(self._heap)
