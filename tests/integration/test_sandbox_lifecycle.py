"""Starting and stopping the sandbox: bad input is refused cleanly, and `down` leaves nothing behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from vesandbox import ports as reservations

from drillbit import sandbox as sbx
from tests.integration.helpers import nft_tables

pytestmark = pytest.mark.integration

OFFSET = 3000
RUN_DIR = Path("/tmp/drillbit-test-sandbox-lifecycle")


def processes_mentioning(marker: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def test_unknown_weakness_is_refused_before_anything_starts():
    result = sbx.launcher(["up", "--weaken", "no-such-thing"], run=RUN_DIR, offset=OFFSET, capture=True)
    assert result.returncode == 2
    assert "unknown weakness no-such-thing" in result.stderr and "no-restart" in result.stderr
    assert not RUN_DIR.exists() and not processes_mentioning(str(RUN_DIR))


def test_port_in_use_is_refused_with_the_port_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 18080 + OFFSET))
        s.listen()
        result = sbx.launcher(["up"], run=RUN_DIR, offset=OFFSET, capture=True)
    assert result.returncode == 2
    assert f"127.0.0.1:{18080 + OFFSET} (api)" in result.stderr
    assert not processes_mentioning(str(RUN_DIR))


def test_down_leaves_nothing_behind_and_twice_is_a_noop():
    tables_before = nft_tables()
    reserved_before = reservations.reserved()
    up = sbx.launcher(["up"], run=RUN_DIR, offset=OFFSET, capture=True)
    try:
        assert up.returncode == 0, up.stderr
        ep = sbx.endpoints(RUN_DIR)
        status = sbx.launcher(["status"], run=RUN_DIR, offset=OFFSET, capture=True)
        assert status.returncode == 0 and "UNHEALTHY" not in status.stdout
        assert processes_mentioning(str(RUN_DIR))
    finally:
        down = sbx.launcher(["down", "--purge"], run=RUN_DIR, offset=OFFSET, capture=True)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not Path(ep["storage"]["s3"]["data_dir"]).exists()
    assert not processes_mentioning(str(RUN_DIR))
    assert not RUN_DIR.exists()
    assert nft_tables() == tables_before
    assert reservations.reserved() == reserved_before  # the ephemeral-range reservation is handed back
    assert not any(str(RUN_DIR) in line for line in Path("/proc/mounts").read_text().splitlines())
    ports = [ep["postgres"]["port"], 18080 + OFFSET, 18443 + OFFSET, 26657 + OFFSET, 8474 + OFFSET, 29001 + OFFSET]
    assert not [p for p in ports if listening("127.0.0.1", p)]
    assert not listening("127.0.0.2", 2379 + OFFSET)
    again = sbx.launcher(["down"], run=RUN_DIR, offset=OFFSET, capture=True)
    assert again.returncode == 0 and "not running" in again.stdout
