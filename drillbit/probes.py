"""Probes: look at the target once, return a Sample. Synthetic checks, steady-state checks and canaries are probes.

A check (the seed's ``CheckFunc``) raises on failure; ``as_probe`` times it and turns it into a Sample.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from drillbit.client import ClientError, VirtEngineClient
from drillbit.model import Sample
from drillbit.poll import wait_until

Check = Callable[[], float | None]  # raises on failure; may return a measured value
Probe = Callable[[], Sample]


POLL_ERRORS = (ClientError, httpx.HTTPError)  # what a poll of the VirtEngine client treats as "not yet"


class CheckFailed(Exception):
    pass


def as_probe(name: str, check: Check) -> Probe:
    def probe() -> Sample:
        ts = time.time()
        t0 = time.perf_counter()
        try:
            value = check()
        except Exception as exc:  # a probe never raises: a failure is a sample
            return Sample(name, ts, False, time.perf_counter() - t0, error=f"{exc.__class__.__name__}: {exc}"[:500])
        return Sample(name, ts, True, time.perf_counter() - t0, value=value)

    probe.__name__ = name
    return probe


def http_ok(url: str, timeout: float = 5.0, client: httpx.Client | None = None) -> Check:
    """The URL answers 2xx within the timeout."""

    def check() -> None:
        r = (client or httpx).get(url, timeout=timeout)
        if r.status_code >= 300:
            raise CheckFailed(f"HTTP {r.status_code} from {url}")

    return check


# ----------------------------------------------------------------------------------------- the seed's synthetic checks


def tx_submission(client: VirtEngineClient, signer: str = "drillbit-synthetic", timeout: float = 30.0) -> Check:
    """Submit a transaction and wait for its confirmation (seed: confirmed within 30 s). Value: block height."""

    def check() -> float:
        msg = {
            "owner": signer,
            "host_uri": "https://synthetic.drillbit.invalid",
            "attributes": [{"key": "heartbeat", "value": str(time.time())}],
        }
        result = client.submit("provider/update", signer, msg, confirm_timeout=timeout)
        return float(result.height)

    check.timeout = timeout  # type: ignore[attr-defined]  # the monitor's default deadline (drillbit.monitor)
    return check


def chain_query(client: VirtEngineClient, limit: float = 2.0) -> Check:
    """Read the chain's status through the node RPC (SLO-NODE-006: query response under 2 s). Value: height."""

    def check() -> float:
        t0 = time.perf_counter()
        height = client.height()
        took = time.perf_counter() - t0
        if took > limit:
            raise CheckFailed(f"query took {took:.2f} s (limit {limit:g} s)")
        return float(height)

    return check


def market_query(client: VirtEngineClient, limit: float = 2.0) -> Check:
    """Query open orders on the marketplace API (seed: answered in under 2 s). Value: number of orders."""

    def check() -> float:
        t0 = time.perf_counter()
        r = client.api_get("/api/v1/market/orders", state="open", limit=50)
        took = time.perf_counter() - t0
        if r.status_code != 200:
            raise CheckFailed(f"HTTP {r.status_code}: {r.text[:120]}")
        if took > limit:
            raise CheckFailed(f"query too slow: {took:.2f} s (limit {limit:g} s)")
        return float(len(r.json().get("items", [])))

    return check


_dseq = itertools.count(int(time.time() * 1000) % 10**12)


def next_dseq() -> int:
    return next(_dseq)


@dataclass
class LifecycleTimes:
    """Per-step durations (seconds) of one deployment lifecycle, filled as it goes."""

    steps: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


def deployment_provisioning(
    client: VirtEngineClient, owner: str = "drillbit-synthetic", timeout: float = 300.0, bid_timeout: float = 30.0
) -> Check:
    """Create a deployment, accept a bid, wait until the workload runs; always close it (seed: running within 5 min).

    Value: seconds from creation to running.
    """

    def check() -> float:
        dseq = next_dseq()
        t0 = time.monotonic()
        client.create_deployment(owner, dseq)
        try:
            bids = wait_until(
                lambda: client.bids(owner=owner, dseq=dseq, state="open"),
                bid_timeout,
                "a bid",
                errors=POLL_ERRORS,
                raises=CheckFailed,
            )
            client.create_lease(bids[0]["id"])
            remaining = max(1.0, timeout - (time.monotonic() - t0))
            wait_until(
                lambda: _running(client, bids[0]["id"]),
                remaining,
                "the workload to run",
                errors=POLL_ERRORS,
                raises=CheckFailed,
            )
            return time.monotonic() - t0
        finally:
            with contextlib.suppress(ClientError):  # best effort here; the E2E flow grades closing explicitly
                client.close_deployment(owner, dseq)

    check.timeout = max(timeout, bid_timeout)  # type: ignore[attr-defined]  # the monitor's default deadline
    return check


def _running(client: VirtEngineClient, lease_id: dict[str, Any]) -> bool:
    status = client.lease_status(lease_id)
    return bool(status and status.get("state") == "running")


# ----------------------------------------------------------------------------------------- probes for experiments


def api_read(client: VirtEngineClient, path: str = "/api/v1/market/orders", limit: float = 2.0) -> Check:
    """A marketplace API read; value 1.0 when it was served from the API's cache (``X-Cache: stale|hit``)."""

    def check() -> float:
        t0 = time.perf_counter()
        r = client.api_get(path, limit=20)
        if r.status_code != 200:
            raise CheckFailed(f"HTTP {r.status_code}: {r.text[:120]}")
        if time.perf_counter() - t0 > limit:
            raise CheckFailed(f"read took {time.perf_counter() - t0:.2f} s (limit {limit:g} s)")
        return 1.0 if r.headers.get("x-cache") in ("stale", "hit") else 0.0

    return check


def api_read_doc(client: VirtEngineClient, path: str = "/api/v1/market/orders", limit: int = 20) -> dict[str, Any]:
    """One marketplace read as a user makes it (the query ``api_read`` makes), with what it says about its own age:
    ``{"path", "status", "x_cache", "source", "indexed_height", "items"}`` (``indexed_height`` None if absent)."""
    r = client.api_get(path, limit=limit)
    doc: dict[str, Any] = {"path": path, "status": r.status_code, "x_cache": r.headers.get("x-cache")}
    body = r.json() if r.status_code == 200 else {}
    height = body.get("indexed_height")
    doc.update(source=body.get("source"), indexed_height=height if isinstance(height, int) else None)
    doc["items"] = len(body.get("items", []))
    return doc


class WriteCanary:
    """Writes monotonically numbered records through the API and remembers every acknowledged one.

    ``verify()`` later reads each acknowledged key back: an acknowledged write that is missing is a lost write.
    """

    def __init__(self, client: VirtEngineClient, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self.seq = 0
        self.acked: dict[str, float] = {}  # key → ack time
        self.queued: set[str] = set()
        self.attempts: list[dict[str, Any]] = []  # every write made: key, seq, value, outcome (ok | fail | info)
        self._lock = threading.Lock()

    def check(self) -> float:
        with self._lock:
            self.seq += 1
            seq = self.seq
        key = f"{self.prefix}-{seq:08d}"
        value = {"seq": seq, "ts": time.time()}
        attempt: dict[str, Any] = {"key": key, "seq": seq, "value": value, "outcome": "info"}
        with self._lock:
            self.attempts.append(attempt)
        r = self.client.api_post("/api/v1/records", {"key": key, "value": value})  # raising: the outcome is unknown
        if r.status_code not in (201, 202):
            # refused (4xx, or 503: not applied and not queued) is a definite no; any other answer leaves it unknown
            attempt["outcome"] = "fail" if r.status_code < 500 or r.status_code == 503 else "info"
            raise CheckFailed(f"write {key}: HTTP {r.status_code}: {r.text[:120]}")
        with self._lock:
            attempt["outcome"] = "ok"
            self.acked[key] = time.time()
            if r.status_code == 202:
                self.queued.add(key)
        return float(seq)

    def history(self) -> list[dict[str, Any]]:
        """A copy of every write made so far (key, seq, value, outcome), in the order they were made."""
        with self._lock:
            return [dict(a) for a in self.attempts]

    def read_back(self, limit: int = 1000) -> dict[str, Any]:
        """The canary's records as a client reads them through the API's listing (``?prefix=``), plus a direct read
        of each key made that the listing did not show when it came back full. Returns ``{"records": [doc],
        "listed": n, "truncated": bool}``; a record doc as the API serves it (key, value, version, applied_at)."""
        r = self.client.api_get("/api/v1/records", prefix=f"{self.prefix}-", limit=limit)
        if r.status_code != 200:
            raise CheckFailed(f"records listing: HTTP {r.status_code}: {r.text[:120]}")
        records = {doc["key"]: doc for doc in r.json().get("items", [])}
        truncated = len(records) >= limit
        if truncated:
            with self._lock:
                keys = [a["key"] for a in self.attempts]
            for key in keys:
                if key not in records:
                    got = self.client.api_get(f"/api/v1/records/{key}")
                    if got.status_code == 200:
                        records[key] = got.json()
        return {"records": list(records.values()), "listed": len(r.json().get("items", [])), "truncated": truncated}

    def verify(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait (bounded) for every acknowledged write to be readable; report the missing ones."""
        deadline = time.monotonic() + timeout
        missing = sorted(self.acked)
        while missing and time.monotonic() < deadline:
            still = []
            for key in missing:
                try:
                    ok = self.client.api_get(f"/api/v1/records/{key}").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    still.append(key)
            missing = still
            if missing:
                time.sleep(0.5)
        return {"acknowledged": len(self.acked), "queued": len(self.queued), "missing": missing}


def component_health(url: str, timeout: float = 2.0) -> Check:
    """A component's own health endpoint (not through any proxy): is this very process serving?"""
    client = httpx.Client(timeout=timeout)

    def check() -> None:
        r = client.get(url)
        if r.status_code >= 300:
            raise CheckFailed(f"HTTP {r.status_code}")

    return check


def prometheus_value(url: str, query: str, timeout: float = 3.0) -> Check:
    """An instant PromQL query that must return one finite number (the sample's value)."""
    client = httpx.Client(timeout=timeout)

    def check() -> float:
        r = client.get(f"{url}/api/v1/query", params={"query": query})
        body = r.json()
        if body.get("status") != "success":
            raise CheckFailed(f"query failed: {body.get('error', r.text[:120])}")
        result = body["data"]["result"]
        if not result:
            raise CheckFailed("no data")
        value = float(result[0]["value"][1])
        if value != value or value in (float("inf"), float("-inf")):
            raise CheckFailed(f"not a number: {value}")
        return value

    return check


def bid_placement(client: VirtEngineClient, owner: str = "drillbit-bidprobe", timeout: float = 30.0) -> Check:
    """Create a deployment and time until a provider's bid is on chain; always close it. Value: seconds to bid."""

    def check() -> float:
        dseq = next_dseq()
        client.create_deployment(owner, dseq)
        t0 = time.monotonic()
        try:
            wait_until(
                lambda: client.bids(owner=owner, dseq=dseq),
                timeout,
                "a bid",
                interval=0.1,
                errors=POLL_ERRORS,
                raises=CheckFailed,
            )
            return time.monotonic() - t0
        finally:
            with contextlib.suppress(ClientError):
                client.close_deployment(owner, dseq)

    check.timeout = timeout  # type: ignore[attr-defined]  # the monitor's default deadline (drillbit.monitor)
    return check
