"""Fault safety on the real machine: ledger, revert, TTL reaper, cleanup after SIGKILL (no sandbox needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drillbit.faults.base import cleanup, revert
from drillbit.faults.disk import DiskPressure
from drillbit.faults.ledger import Ledger
from drillbit.faults.port_block import PortBlock
from tests.integration.helpers import nft_tables, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("DRILLBIT_HOME", str(tmp_path / "home"))
    led = Ledger(tmp_path / "ledger")
    yield led
    cleanup(led)  # never leave a fault behind, whatever the test did


def test_port_block_is_recorded_before_injection_and_reverted(ledger):
    fault = PortBlock(port=54999)
    handle = fault.inject(ttl=60, ledger=ledger)
    try:
        assert fault.table in nft_tables()
        assert [h.id for h in ledger.pending()] == [handle.id]
        assert handle.reaper_pid and Path(f"/proc/{handle.reaper_pid}").exists()
    finally:
        revert(handle, ledger)
    assert fault.table not in nft_tables()
    assert ledger.pending() == []
    wait_for(lambda: not Path(f"/proc/{handle.reaper_pid}").exists() or _zombie(handle.reaper_pid), 5, what="reaper")
    revert(handle, ledger)  # idempotent


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_ttl_expiry_reverts_without_anyone_calling_cleanup(ledger):
    fault = PortBlock(port=54998)
    fault.inject(ttl=1.5, ledger=ledger)
    assert fault.table in nft_tables()
    wait_for(lambda: fault.table not in nft_tables(), timeout=15, what="the reaper to revert the expired fault")
    wait_for(lambda: ledger.pending() == [], timeout=5, what="the ledger entry to be cleared")


def test_cleanup_reverts_what_a_sigkilled_runner_left(ledger, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from drillbit.faults.ledger import Ledger
        from drillbit.faults.port_block import PortBlock
        f = PortBlock(port=54997)
        f.inject(ttl=300, ledger=Ledger(Path({str(ledger.root)!r})))
        print(f.table, flush=True)
        time.sleep(300)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        table = proc.stdout.readline().strip()
        assert table in nft_tables()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert table in nft_tables(), "the fault outlives its killed runner until cleanup"
    results = cleanup(ledger)
    assert [r for _, r in results] == ["reverted"]
    assert table not in nft_tables() and ledger.pending() == []


def test_disk_pressure_fills_a_bounded_volume_and_reverts(ledger, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(vol)], check=True)
    try:
        fault = DiskPressure(str(vol), fill_percent=80, workers=1, io_bytes=4 << 20, duration=30)
        handle = fault.inject(ttl=60, ledger=ledger)
        st = os.statvfs(vol)
        used = 1 - st.f_bavail / st.f_blocks
        assert used >= 0.75, used
        stress = handle.detail["stress_pid"]
        assert Path(f"/proc/{stress}").exists()
        revert(handle, ledger)
        st = os.statvfs(vol)
        assert 1 - st.f_bavail / st.f_blocks < 0.05
        assert not Path(f"/proc/{stress}").exists() or _zombie(stress)
        assert not list(vol.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(vol)], check=False)


def test_disk_pressure_refuses_an_unbounded_filesystem(ledger, tmp_path):
    from drillbit.faults.base import FaultError

    with pytest.raises(FaultError, match="bounded volumes"):
        DiskPressure(str(tmp_path), max_filesystem_bytes=1 << 20).inject(ttl=10, ledger=ledger)
    assert ledger.pending() == []
