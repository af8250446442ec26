"""Arrival schedules for an open load model (stdlib only: the locustfiles and the tests share it).

A profile is a list of segments ``(phase, seconds, rate_from, rate_to)``: the target arrival rate (per second) moves
linearly from ``rate_from`` to ``rate_to`` during the segment. ``Stream`` gives the intended start times of one of
``n`` interleaved streams whose union is the whole profile, evenly spaced (stream ``i`` takes arrivals ``i``,
``i + n``, ``i + 2n`` ... of the global schedule, at cumulative count ``k + 0.5``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass


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
        k = 0
        bound = int(self.profile.total) + self.of if limit is None else limit  # every loop is bounded
        while k <= bound:
            t = self.profile.time_at(self.index + k * self.of + 0.5)
            if t is None or t >= self.profile.duration:
                return
            yield t
            k += 1
