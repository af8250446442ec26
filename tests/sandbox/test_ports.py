"""Port reservation against the ephemeral range: several owners, only own additions removed (on a stand-in file)."""

from __future__ import annotations

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
