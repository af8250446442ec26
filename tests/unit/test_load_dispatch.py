"""The open-model engine's schedule (merged streams) and its worker greenlets (leader / followers, in-flight cap).

The dispatcher needs gevent: it runs in a subprocess (this process must never be monkey-patched). No timing
thresholds: the checks are counts, orders and bounds, which hold however slow the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.test_load_stats import LOCUSTFILES, _arrivals


def test_streams_offsets_are_the_profile_inverse():
    a = _arrivals()
    profiles = [
        [["ramp", 3, 0, 20], ["steady", 5, 20, 20], ["down", 2, 20, 0]],
        [["a", 1.5, 7, 7], ["idle", 2, 0, 0], ["b", 3, 2, 9]],
        [["s", 4, 13.7, 1]],
    ]
    for raw in profiles:
        p = a.Profile.from_json(raw)
        for of in (1, 3, 4):
            for i in range(of):
                expected = []
                for k in range(10_000):
                    t = p.time_at(i + k * of + 0.5)
                    if t is None or t >= p.duration:
                        break
                    expected.append(t)
                assert list(a.Stream(p, i, of).offsets()) == expected


def test_schedule_merges_streams_in_time_order():
    a = _arrivals()
    p = a.Profile([a.Segment("ramp", 4, 0, 30), a.Segment("steady", 6, 30, 30)])
    s = a.Schedule()
    for i in range(5):
        s.add(a.Stream(p, i, 5).offsets(), f"stream-{i}")
    assert s.streams == 5 and s.peek() is not None
    taken = []
    for _ in range(10_000):  # bounded
        item = s.take()
        if item is None:
            break
        taken.append(item)
    times = [t for t, _ in taken]
    assert times == sorted(times) and len(times) == round(p.total)
    expected = sorted((t, f"stream-{i}") for i in range(5) for t in a.Stream(p, i, 5).offsets())
    assert sorted(taken) == expected  # each arrival exactly once, with its own stream
    assert s.take() is None and len(s) == 0 and s.taken == len(taken)
    s.add([], "empty")  # an exhausted stream adds nothing
    s.add([0.5, 0.25], "late")  # a stream added late starts at its first arrival, already due
    assert s.take() == (0.5, "late")


DRIVER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import gevent
from dispatch import Dispatcher

def scenario(cap, workers, streams, per_stream, spacing, service, stop_after=None):
    d = Dispatcher(cap)
    d.t0 = time.time() + 0.05
    started, inflight, peak = [], [0], [0]
    def owner(stream):
        def run(intended):
            started.append((stream, intended, time.time()))
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
            try:
                gevent.sleep(service)
            finally:
                inflight[0] -= 1
            if stop_after is not None and len(started) >= stop_after:
                d.stop()
        return run
    for i in range(streams):
        d.add([(i + k * streams) * spacing for k in range(per_stream)], owner(i))
    done = []
    d.on_done = lambda: done.append(time.time())
    users = [gevent.spawn(d.work) for _ in range(workers)]
    gevent.joinall(users, timeout=60)
    d.join(60)
    late_add = d.add([0.0], owner(99))
    return {
        "started": started, "t0": d.t0, "peak": peak[0], "max_inflight_seen": d.max_inflight_seen,
        "cap_hits": d.cap_hits, "spawned": d.spawned, "done": len(done), "workers_left": len(d.workers),
        "inflight": d.inflight, "late_add": late_add, "users_ended": all(g.dead for g in users),
    }

print(json.dumps({
    # slow operations, spaced arrivals, a generous cap: nothing waits for an answer
    "open": scenario(cap=100, workers=2, streams=3, per_stream=20, spacing=0.002, service=0.05),
    # the cap binds: arrivals go late but every one is still sent, never more than the cap at once
    "capped": scenario(cap=3, workers=5, streams=4, per_stream=15, spacing=0.001, service=0.02),
    # stopped after 10 operations: no arrival starts afterwards
    "stopped": scenario(cap=50, workers=4, streams=2, per_stream=50, spacing=0.002, service=0.001, stop_after=10),
}))
"""


def _run_driver() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(LOCUSTFILES)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


def test_dispatcher_runs_every_arrival_once_on_schedule_within_the_cap():
    r = _run_driver()
    for name in ("open", "capped"):
        s = r[name]
        expected = {3: 60, 4: 60}[len({st for st, _, _ in s["started"]})]
        intended = [i for _, i, _ in s["started"]]
        assert len(intended) == expected == len(set(intended)), name  # every arrival exactly once
        assert all(at >= i for _, i, at in s["started"]), name  # never before its intended start
        assert intended == sorted(intended), name  # taken in schedule order
        assert s["done"] == 1 and s["inflight"] == 0 and s["workers_left"] == 0 and s["users_ended"], name
        assert s["late_add"] is False, name  # a stream after the end is refused
        assert s["peak"] == s["max_inflight_seen"], name
    # open: operations overlap (arrivals do not wait for answers); workers beyond the callers were added
    assert r["open"]["peak"] > 2 and r["open"]["spawned"] > 0
    # capped: never more than the cap in flight, the extra callers left at once, late arrivals were counted
    capped = r["capped"]
    assert capped["peak"] <= 3 and capped["spawned"] == 0 and capped["cap_hits"] > 0
    stopped = r["stopped"]
    assert 10 <= len(stopped["started"]) < 100 and stopped["done"] == 1 and stopped["inflight"] == 0


def test_the_engine_uses_the_dispatcher_for_open_streams():
    source = (LOCUSTFILES / "openloop.py").read_text()
    assert "from dispatch import Dispatcher" in source and "gevent.pool" not in source
    assert (Path(LOCUSTFILES) / "dispatch.py").exists()
