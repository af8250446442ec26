"""The sandbox's port plan: no two listeners clash within one sandbox or across sandboxes at test offsets."""

from pathlib import Path

import pytest
from vesandbox.launcher import Layout

TEST_OFFSETS = [0, *range(1000, 10000, 1000)]


def listeners(offset: int) -> list[tuple[str, int, str]]:
    return Layout(run_dir=Path("/tmp/x"), offset=offset).listeners()


def test_one_sandbox_binds_each_address_once():
    for offset in TEST_OFFSETS:
        addrs = [(h, p) for h, p, _ in listeners(offset)]
        assert len(addrs) == len(set(addrs)), offset
        assert all(0 < p < 65536 for _, p in addrs)


def test_sandboxes_at_different_test_offsets_never_share_a_port():
    seen: dict[tuple[str, int], tuple[int, str]] = {}
    for offset in TEST_OFFSETS:
        for host, port, owner in listeners(offset):
            other = seen.get((host, port))
            assert other is None, f"{host}:{port} of {owner}@{offset} clashes with {other[1]}@{other[0]}"
            seen[(host, port)] = (offset, owner)


def test_an_offset_past_the_port_range_is_refused_naming_the_component_and_the_largest_valid_offset():
    top = max(p for _, p, _ in listeners(0))
    largest = 65535 - top
    Layout(run_dir=Path("/tmp/x"), offset=largest).check_ports()  # the largest valid offset is accepted
    with pytest.raises(ValueError) as err:
        Layout(run_dir=Path("/tmp/x"), offset=21000).check_ports()
    owner = next(o for _, p, o in listeners(0) if p == top)
    assert str(err.value) == (
        f"port offset 21000 puts {owner} on port {top + 21000} (ports end at 65535); "
        f"the largest valid offset is {largest}"
    )
    with pytest.raises(ValueError, match=r"the smallest valid offset is -\d+"):
        Layout(run_dir=Path("/tmp/x"), offset=-60000).check_ports()
