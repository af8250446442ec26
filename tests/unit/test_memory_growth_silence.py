"""The memory-growth criterion of resource-exhaustion: a node whose memory can no longer be read because its process
is gone is a FAIL (the system failed), not a missing measurement; too few readings with none failed stays
inconclusive (the harness did not look long enough); a flat node passes and a leaking one fails."""

from __future__ import annotations

from drillbit.model import Outcome, Sample, Timeline
from drillbit.scenarios.failure.resource_exhaustion import memory_growth


def timeline(values: list[float | None]) -> Timeline:
    tl = Timeline()
    for i, v in enumerate(values):
        ok = v is not None
        tl.add(Sample("node-rss", 5.0 * i, ok, 0.01, v, None if ok else "ConnectError: connection refused"))
    return tl


def test_readings_that_failed_because_the_node_is_gone_fail_the_criterion():
    v = memory_growth("node memory growth", 5.0).check(timeline([100.0, 120.0, None, None, None]))
    assert v.outcome is Outcome.FAIL
    assert v.evidence["failed_readings"] == 3 and v.evidence["readings"] == 2
    assert "connection refused" in v.evidence["example_error"]


def test_too_few_readings_none_failed_is_inconclusive():
    v = memory_growth("node memory growth", 5.0).check(timeline([100.0, 101.0]))
    assert v.outcome is Outcome.INCONCLUSIVE and v.evidence == {"readings": 2, "failed_readings": 0}


def test_flat_memory_passes_and_a_leak_fails():
    assert memory_growth("m", 5.0).check(timeline([100.0] * 6)).outcome is Outcome.PASS
    leak = memory_growth("m", 5.0).check(timeline([100.0 + 20 * i for i in range(6)]))
    assert leak.outcome is Outcome.FAIL and leak.evidence["mb_per_min"] == 240.0
