"""Running an experiment's observation: probes in the background, alert and page watchers, abort conditions.

The Observer samples every probe on its own thread into the Timeline while a fault is in place, and records machine
events (alerts that started firing in Alertmanager, pages the on-call pager received) so that grading needs nothing
but the Timeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from drillbit.model import Sample, Timeline
from drillbit.monitor import Monitor


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
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _seen_alerts: set[str] = field(default_factory=set)
    _seen_pages: dict[str, dict] = field(default_factory=dict)
    aborted: str | None = None

    def start(self) -> Observer:
        for m in self.monitors:
            t = threading.Thread(target=m.run, args=(self.timeline.add,), kwargs={"stop": self._stop}, daemon=True)
            t.start()
            self._threads.append(t)
        if self.alertmanager or self.pager:
            t = threading.Thread(target=self._watch, daemon=True)
            t.start()
            self._threads.append(t)
        return self

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
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._poll_watchers()  # a last look, so that nothing seen at the end is missed

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


def probe_monitor(name: str, interval: float, probe: Callable[[], Sample]) -> Monitor:
    return Monitor(name, interval, probe)
