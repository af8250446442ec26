"""Pure pieces of the failure-mode flows: the Chaos Mesh partition, load analysis, memory growth, the HTTP reader."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from drillbit.faults.platform import chaosmesh
from drillbit.load.openloop_http import is_loopback, read_response
from drillbit.scenarios.failure.circuit_breaker import overload_summary, per_second
from drillbit.scenarios.failure.resource_exhaustion import growth_rate
from drillbit.scenarios.failure.split_brain import chaos_mesh_partition


@pytest.mark.parametrize(("scenario", "mode", "value"), [("isolate-one", "one", None), ("no-majority", "fixed", "2")])
def test_the_chaos_mesh_partition_is_valid_and_cuts_validators_both_ways(scenario, mode, value):
    manifest = chaos_mesh_partition(scenario, run_id="run-1")
    chaosmesh.validate(manifest)
    spec = manifest["spec"]
    assert manifest["kind"] == "NetworkChaos" and spec["action"] == "partition" and spec["direction"] == "both"
    assert spec["mode"] == mode and spec.get("value") == value
    assert spec["target"]["selector"]["labelSelectors"] == spec["selector"]["labelSelectors"]


def test_overload_summary_grades_rejections_after_the_breaker_opened():
    # 1 s of 10 served requests (slow), then 20 rejections: the first 5 slow (queued behind), the rest fast
    ts = np.concatenate([np.linspace(0, 0.9, 10), np.linspace(1, 2.9, 20)]) + 1000.0
    lat = np.concatenate([np.full(10, 0.8), np.full(5, 0.6), np.full(15, 0.01)])
    status = np.array([200] * 10 + [503] * 20)
    df = pd.DataFrame({"ts": ts, "latency": lat, "status": status})
    s = overload_summary(df, {"offered_rate": 10.0}, rate=10.0, settle=0.5)
    assert s["rejected"] == 20 and s["statuses"] == {"200": 10, "503": 20}
    assert s["first_rejection_at"] == pytest.approx(1001.51)  # the first refusal that came back (a fast one)
    assert s["rejected_after_open"] == 9  # sent ≥ 0.5 s after it: 1002.1 .. 1002.9
    assert s["rejected_after_open_p95_s"] == pytest.approx(0.01)
    assert s["rejected_p95_s"] > 0.5 and s["served_p95_s"] == pytest.approx(0.8)


def test_overload_summary_without_rejections():
    df = pd.DataFrame({"ts": [1.0, 2.0], "latency": [3.0, 4.0], "status": [200, -1]})
    s = overload_summary(df, {}, rate=1.0, settle=1.0)
    assert s["rejected"] == 0 and s["rejected_p95_s"] is None and s["first_rejection_at"] is None


def test_per_second_samples_flag_errors():
    df = pd.DataFrame({"ts": [10.1, 10.5, 11.2], "latency": [0.1, 0.3, 0.2], "status": [503, 0, 200]})
    samples = per_second(df)
    assert [(s.ts, s.ok, s.value) for s in samples] == [(10.0, False, 2.0), (11.0, True, 1.0)]


def test_growth_rate_is_a_least_squares_slope_per_minute():
    ts = np.arange(0, 30, 1.0)
    assert growth_rate(100 + ts, ts) == pytest.approx(60.0)  # 1 MB/s
    noisy = 50 + np.where(np.arange(30) % 2, 0.2, -0.2)
    assert abs(growth_rate(noisy, ts)) < 1
    assert np.isnan(growth_rate(np.array([1.0, 2.0]), np.array([0.0, 1.0])))


def test_only_loopback_is_a_target():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")


def _reader(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


def test_read_response_handles_length_chunked_and_close():
    async def go():
        plain = _reader(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}")
        chunked = _reader(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        closing = _reader(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        return await read_response(plain), await read_response(chunked), await read_response(closing)

    assert asyncio.run(go()) == ((503, True), (200, True), (404, False))
