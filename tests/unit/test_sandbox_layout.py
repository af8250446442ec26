"""The sandbox's port plan: no two listeners clash within one sandbox or across sandboxes at test offsets."""

from pathlib import Path

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
