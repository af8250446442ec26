"""Running an experiment's observation: probes in the background, alert and page watchers, abort conditions.

The Observer samples every probe on its own thread into the Timeline while a fault is in place, and records machine
events (alerts that started firing in Alertmanager, pages the on-call pager received) so that grading needs nothing
but the Timeline.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from drillbit.model import Sample, Timeline
from drillbit.monitor import Monitor
from drillbit.soundness import HARNESS_CPU, HARNESS_LATENESS, HOST_CPU

PROC_STAT = "/proc/stat"
HOST_SAMPLE_INTERVAL = 0.5  # seconds between two looks at the host's CPU (and the sampler's own lateness)


def read_cpu_times(path: str = PROC_STAT) -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores from the first line of /proc/stat; None where there is none."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def read_tree_ticks(root: int, also: Iterable[int] = (), proc: str = "/proc") -> int | None:
    """CPU jiffies (user + system) used by process ``root`` and its live descendants in its own session, plus those
    of the children it has reaped (cutime + cstime of ``root``), plus the whole trees of the ``also`` pids: the
    harness's own share, from /proc/<pid>/stat. A descendant that started a session of its own (a fault's stress
    process, a sandbox) is not the harness unless named in ``also`` (the load generator). None: no /proc."""
    stats: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, session, ticks)
    own_reaped = 0
    try:
        pids = [int(d) for d in os.listdir(proc) if d.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"{proc}/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue  # exited meanwhile
        fields = raw[raw.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session ...
        if len(fields) < 15:
            continue
        stats[pid] = (int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]))  # utime + stime
        if pid == root:
            own_reaped = int(fields[13]) + int(fields[14])  # cutime + cstime
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    session = stats[root][1]
    total, seen = own_reaped, set()
    todo = [(root, True)] + [(p, False) for p in also if p in stats]
    while todo:
        pid, same_session_only = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][2]
        todo += [
            (c, same_session_only) for c in children.get(pid, []) if not same_session_only or stats[c][1] == session
        ]
    return total


@dataclass
class HostSampler:
    """The harness's own health while it measures: every ``interval`` s a ``host-cpu`` sample (value: busy share of
    all cores since the last look) and a ``harness-lateness`` sample (value: seconds this thread woke after it was
    due, the scheduling lateness the probes of this process suffer too). Both always ok: they grade nothing
    themselves; ``drillbit.soundness`` reads them to tell a slow system from a slow harness."""

    interval: float = HOST_SAMPLE_INTERVAL
    path: str = PROC_STAT
    root_pid: int | None = None  # whose process tree is the harness (``harness-cpu``); None: this process
    also: set[int] = field(default_factory=set)  # pids whose whole trees count too (a load generator's own session)
    proc: str = "/proc"

    def available(self) -> bool:
        return read_cpu_times(self.path) is not None

    def run(self, on_sample: Callable[[Sample], None], stop: threading.Event) -> None:
        prev = read_cpu_times(self.path)
        root = self.root_pid or os.getpid()
        prev_tree = read_tree_ticks(root, set(self.also), self.proc)
        due = time.monotonic() + self.interval
        while prev is not None and not stop.wait(max(0.0, due - time.monotonic())):
            now = time.monotonic()
            late = max(0.0, now - due)
            cur = read_cpu_times(self.path)
            if cur is None:
                return
            busy, total = cur[0] - prev[0], cur[1] - prev[1]
            ts = time.time()
            if total > 0:
                on_sample(Sample(HOST_CPU, ts, True, None, round(busy / total, 4)))
            tree = read_tree_ticks(root, set(self.also), self.proc)
            if total > 0 and tree is not None and prev_tree is not None:  # a child gone unreaped: its ticks vanish
                on_sample(Sample(HARNESS_CPU, ts, True, None, round(min(1.0, max(0, tree - prev_tree) / total), 4)))
            on_sample(Sample(HARNESS_LATENESS, ts, True, None, round(late, 4)))
            prev, prev_tree = cur, tree
            due = due + self.interval if late < self.interval else now + self.interval  # never a burst to catch up


@dataclass
class AbortPolicy:
    """Stop the fault at once when the recent availability of the guarded probes falls below ``min_availability``."""

    probes: list[str]
    min_availability: float
    window: int = 10  # most recent samples per probe

    def breached(self, timeline: Timeline) -> str | None:
        recent: dict[str, list[bool]] = {}
        for s in list(timeline._rows)[-2000:]:
            if s.probe in self.probes:
                recent.setdefault(s.probe, []).append(bool(s.ok))
        for probe, oks in recent.items():
            last = oks[-self.window :]
            if len(last) >= self.window and sum(last) / len(last) < self.min_availability:
                return f"{probe} availability {sum(last) / len(last):.0%} over the last {len(last)} checks"
        return None


@dataclass
class Observer:
    timeline: Timeline
    monitors: list[Monitor]
    alertmanager: str | None = None
    pager: str | None = None
    abort: AbortPolicy | None = None
    watch_interval: float = 1.0
    host: HostSampler | None = field(default_factory=HostSampler)  # None: no host-cpu / lateness samples
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _seen_alerts: set[str] = field(default_factory=set)
    _seen_pages: dict[str, dict] = field(default_factory=dict)
    aborted: str | None = None
    _closed: bool = False

    def start(self) -> Observer:
        for m in self.monitors:
            t = threading.Thread(target=self._run_monitor, args=(m,), daemon=True)
            t.start()
            self._threads.append(t)
        if self.host is not None and self.host.available():
            t = threading.Thread(target=self.host.run, args=(self.timeline.add, self._stop), daemon=True)
            t.start()
            self._threads.append(t)
        if self.alertmanager or self.pager:
            t = threading.Thread(target=self._watch, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run_monitor(self, m: Monitor) -> None:
        """One monitor until the stop; a monitor that crashes is an event the report shows, not a silent gap."""
        try:
            m.run(self._add, stop=self._stop, on_late=self._late_answer)
        except Exception as exc:
            self.timeline.event("monitor_failed", m.name, probe=m.name, error=f"{type(exc).__name__}: {exc}"[:300])
            raise

    def wait(self, seconds: float) -> str | None:
        """Observe for ``seconds`` (or until an abort condition); returns the abort reason, if any."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.abort and (reason := self.abort.breached(self.timeline)):
                self.aborted = reason
                self.timeline.event("abort", reason)
                return reason
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        return None

    def stop(self, timeout: float = 40.0) -> None:
        """End the observation. A check in flight is waited for until it answers or reaches its monitor's deadline
        (then it is a failed sample at the deadline: a probe that never answers is a failure, not a missing sample);
        a check of a monitor without a deadline is waited for ``timeout`` seconds, then abandoned and recorded as a
        ``check_unanswered`` event (probe, when it started, how long it had run), the evidence criteria read."""
        self._stop.set()
        longest = max([timeout] + [m.deadline + 1.0 for m in self.monitors if m.deadline is not None])
        end = time.monotonic() + longest
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        self._closed = True  # from here on, a sample or late answer of an abandoned check is dropped
        now = time.time()
        for m in self.monitors:
            since = m.in_flight_since
            if since is not None:
                self.timeline.event(
                    "check_unanswered", m.name, probe=m.name, started=since, running_s=round(now - since, 3)
                )
        self._poll_watchers()  # a last look, so that nothing seen at the end is missed

    def _add(self, sample: Sample) -> None:
        """A monitor's sample; one arriving after the observation ended (a check abandoned at ``stop``, already
        recorded as ``check_unanswered``) is dropped: the timeline is being graded."""
        if not self._closed:
            self.timeline.add(sample)

    def _late_answer(self, sample: Sample) -> None:
        """A check answered after its deadline (already a failed sample): evidence only, never a second sample."""
        if self._closed:  # the timeline is being graded: an abandoned check ending now changes nothing
            return
        self.timeline.event(
            "late_answer",
            sample.probe,
            probe=sample.probe,
            started=sample.ts,
            latency_s=None if sample.latency is None else round(sample.latency, 3),
            ok=sample.ok,
            error=sample.error,
        )

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_interval):
            self._poll_watchers()

    def _poll_watchers(self) -> None:
        if self.alertmanager:
            try:
                alerts = httpx.get(f"{self.alertmanager}/api/v2/alerts", timeout=3).json()
            except (httpx.HTTPError, ValueError):
                alerts = []
            for a in alerts:
                labels = a.get("labels", {})
                key = a.get("fingerprint") or repr(sorted(labels.items()))
                if key not in self._seen_alerts and a.get("status", {}).get("state", "active") == "active":
                    self._seen_alerts.add(key)
                    self.timeline.event(
                        "alert_firing",
                        labels.get("alertname", "?"),
                        alertname=labels.get("alertname"),
                        component=labels.get("component"),
                        severity=labels.get("severity"),
                        starts_at=a.get("startsAt"),
                    )
        if self.pager:
            try:
                pages = httpx.get(f"{self.pager}/api/v1/pages", timeout=3).json().get("pages", [])
            except (httpx.HTTPError, ValueError):
                pages = []
            for p in pages:
                pid = str(p.get("id"))
                before = self._seen_pages.get(pid)
                if before is None:
                    self.timeline.event(
                        "page",
                        p.get("alertname", "?"),
                        page_id=pid,
                        alertname=p.get("alertname"),
                        component=p.get("component"),
                        received_at=p.get("received_at"),
                        acknowledged_at=p.get("acknowledged_at"),
                    )
                elif p.get("acknowledged_at") and not before.get("acknowledged_at"):
                    self.timeline.event("page_ack", p.get("alertname", "?"), page_id=pid, by=p.get("acknowledged_by"))
                self._seen_pages[pid] = p


def probe_monitor(name: str, interval: float, probe: Callable[[], Sample], deadline: float | None = None) -> Monitor:
    return Monitor(name, interval, probe, deadline)
