"""Port reservation against the ephemeral range: several owners, only own additions removed (on a stand-in file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from vesandbox import ports


@pytest.fixture
def sysctl(tmp_path, monkeypatch):
    f = tmp_path / "ip_local_reserved_ports"
    f.write_text("8080,9000-9001\n")
    monkeypatch.setattr(ports, "SYSCTL", f)
    monkeypatch.setattr(ports, "STATE_DIR", tmp_path / "state")
    return f


def test_parse_and_render_are_inverse():
    assert ports.parse("8080,9000-9002\n") == {8080, 9000, 9001, 9002}
    assert ports.parse("\n") == set()
    assert ports.render({5, 1, 2, 3, 9}) == "1-3,5,9"
    assert ports.parse(ports.render({40000, 40001, 41317})) == {40000, 40001, 41317}


def test_owners_add_and_remove_only_their_own_ports(sysctl):
    assert ports.reserve("a", [9001, 41080, 41081]) == [41080, 41081]  # 9001 was reserved before: not a's
    assert ports.reserve("b", [41081, 42000]) == [42000]
    assert ports.parse(sysctl.read_text()) == {8080, 9000, 9001, 41080, 41081, 42000}
    assert ports.release("a") == [41080]  # 41081 is still b's
    assert ports.parse(sysctl.read_text()) == {8080, 9000, 9001, 41081, 42000}
    assert sorted(ports.release("b")) == [41081, 42000]
    assert ports.parse(sysctl.read_text()) == {8080, 9000, 9001}
    assert ports.release("b") == []  # twice is a no-op


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_an_owner_whose_holder_died_is_pruned_by_the_next_reservation(sysctl):
    holder = _sleeper()
    try:
        assert ports.reserve("killed-session", [41080, 41081], holder=holder.pid) == [41080, 41081]
        assert ports.reserve("b", [42000]) == [42000]  # holder alive: nothing pruned
        assert {41080, 41081} <= ports.parse(sysctl.read_text())
    finally:
        holder.kill()
        holder.wait()
    assert ports.prune() == {"killed-session": [41080, 41081]}
    assert ports.parse(sysctl.read_text()) == {8080, 9000, 9001, 42000}
    assert ports.release("b") == [42000]


def test_pruning_happens_on_reserve_and_release_too(sysctl):
    for call in (lambda: ports.reserve("c", [43000]), lambda: ports.release("c")):
        holder = _sleeper()
        ports.reserve("gone", [41080], holder=holder.pid)
        holder.kill()
        holder.wait()
        call()
        assert 41080 not in ports.parse(sysctl.read_text())
    assert 43000 not in ports.parse(sysctl.read_text())


def test_a_recycled_pid_does_not_keep_a_dead_owners_ports(sysctl):
    ports.reserve("old", [41080])
    state_file = ports.STATE_DIR / "reserved-ports.json"
    state = json.loads(state_file.read_text())
    assert state["old"]["holder"]["pid"] == os.getpid()
    state["old"]["holder"]["start"] -= 1  # same pid, another process (started at another time)
    state_file.write_text(json.dumps(state))
    assert ports.prune() == {"old": [41080]}


def test_hold_hands_the_reservation_to_another_process(sysctl):
    supervisor = _sleeper()
    try:
        ports.reserve("sandbox", [41080])  # held by the launcher (this process) while it starts the sandbox
        assert ports.hold("sandbox", supervisor.pid)
        assert ports.prune() == {}
    finally:
        supervisor.kill()
        supervisor.wait()
    assert ports.prune() == {"sandbox": [41080]}  # the sandbox died without `down`
    assert not ports.hold("sandbox", os.getpid())  # nothing left to hand over


def test_owners_of_the_first_state_format_are_kept_until_released(sysctl):
    ports.STATE_DIR.mkdir()
    (ports.STATE_DIR / "reserved-ports.json").write_text(json.dumps({"legacy": [9000]}))
    assert ports.prune() == {}
    assert 9000 in ports.parse(sysctl.read_text())
    assert ports.release("legacy") == [9000]
    assert ports.parse(sysctl.read_text()) == {8080, 9001}


def test_unwritable_sysctl_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(ports, "SYSCTL", tmp_path / "missing")
    assert ports.reserve("a", [41080]) == []
    assert ports.release("a") == []


@pytest.mark.skipif(not ports.available(), reason="needs root and a writable ip_local_reserved_ports")
def test_the_kernel_set_returns_to_what_it_was_even_when_it_becomes_empty():
    """On the real sysctl: writing nothing is a no-op there (unlike a file), so releasing the last port must still
    clear it."""
    before = ports.reserved()
    port = next(p for p in range(47990, 48100) if p not in before)
    owner = f"test-ports-{port}"
    try:
        assert ports.reserve(owner, [port]) == [port]
        assert port in ports.reserved()
    finally:
        ports.release(owner)
    assert ports.reserved() == before
    if not before:  # the case that broke: the last reserved port removed
        assert ports.SYSCTL.read_text().strip() == ""
