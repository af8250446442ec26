"""split-brain's "blocks resume": height checks that were asked and never answered before the heal are the
system's silence (FAIL); only no check at all is the harness's (INCONCLUSIVE)."""

from __future__ import annotations

from drillbit.model import Outcome, Sample, Timeline
from drillbit.scenarios.failure.split_brain import blocks_resume


def timeline(answered_before: bool, asked_before: bool = True) -> Timeline:
    tl = Timeline()
    for i in range(10):
        if asked_before:
            tl.add(Sample("height:n0", float(i), answered_before, None, 5.0 if answered_before else None, "timeout"))
    tl.events.append({"ts": 10.0, "kind": "revert", "detail": "heal"})
    for i in range(10, 15):
        tl.add(Sample("height:n0", float(i), True, None, float(i)))
    return tl


def test_blocks_resume_silence_before_the_heal_is_a_fail_not_inconclusive():
    crit = blocks_resume("blocks resume", ["n0"], within=30)
    v = crit.grade(timeline(answered_before=False))
    assert v.outcome == Outcome.FAIL and v.evidence["height_checks_before_heal"] == 10
    assert "no node answered any of 10 height checks" in v.reason
    v = crit.grade(timeline(answered_before=False, asked_before=False))
    assert v.outcome == Outcome.INCONCLUSIVE and v.evidence["height_checks_before_heal"] == 0
    assert crit.grade(timeline(answered_before=True)).outcome == Outcome.PASS
