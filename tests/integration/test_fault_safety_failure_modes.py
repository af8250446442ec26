"""Fault safety of the failure-mode faults on the real machine (no sandbox): Partition (nftables), MemoryPressure
(cgroup v1 + stress-ng) and Overload (a load generator process) — inject, revert, nothing left; a SIGKILLed runner's
faults are reverted by ``cleanup`` from the ledger alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCServer

import numpy as np
import pytest

from drillbit.faults.base import FaultError, cleanup, revert
from drillbit.faults.ledger import Ledger
from drillbit.faults.memory import CGROUP_ROOT, MemoryPressure, memory_cgroup, oom_kills
from drillbit.faults.overload import Overload, meta_state, read_results
from drillbit.faults.partition import Partition, partition_rules
from tests.integration.helpers import nft_tables, wait_for

pytestmark = pytest.mark.integration

MEMBERS = [  # stand-ins for the sandbox's etcd members: rules only, on ports nothing uses
    {"name": "etcd-0", "uid": 64000, "peer_host": "127.0.0.2", "peer_port": 54980},
    {"name": "etcd-1", "uid": 64001, "peer_host": "127.0.0.3", "peer_port": 54980},
    {"name": "etcd-2", "uid": 64002, "peer_host": "127.0.0.4", "peer_port": 54980},
]


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("DRILLBIT_HOME", str(tmp_path / "home"))
    led = Ledger(tmp_path / "ledger")
    yield led
    cleanup(led)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def drillbit_groups() -> list[str]:
    return sorted(p.name for p in CGROUP_ROOT.glob("vesandbox-drillbit-*"))


# ------------------------------------------------------------------------------------------------ partition


def test_partition_rules_cut_both_directions_per_isolated_member():
    rules = partition_rules("t", MEMBERS[2:])
    assert 'oifname "lo" meta skuid 64002 tcp dport 54980 drop' in rules
    assert 'oifname "lo" ip daddr 127.0.0.4 tcp dport 54980 drop' in rules
    assert "64000" not in rules and "127.0.0.2" not in rules


def test_partition_is_one_table_reverted_in_one_call(ledger):
    fault = Partition(MEMBERS, ["etcd-1", "etcd-2"])
    handle = fault.inject(ttl=60, ledger=ledger)
    try:
        listed = subprocess.run(["nft", "list", "table", "inet", fault.table], capture_output=True, text=True).stdout
        assert listed.count(" drop") == 4 and "skuid 64001" in listed and "127.0.0.3" in listed
        assert handle.detail["quorum_remains"] is False
        assert [h.id for h in ledger.pending()] == [handle.id]
    finally:
        revert(handle, ledger)
    assert fault.table not in nft_tables() and ledger.pending() == []
    revert(handle, ledger)  # idempotent


def test_partition_refuses_unknown_members_and_too_many(ledger):
    with pytest.raises(FaultError, match="unknown member"):
        Partition(MEMBERS, ["etcd-9"]).inject(ttl=10, ledger=ledger)
    with pytest.raises(FaultError, match="blast radius"):
        Partition(MEMBERS, ["etcd-0", "etcd-1", "etcd-2"], max_isolated=2).inject(ttl=10, ledger=ledger)
    assert ledger.pending() == [] and "drillbit_part_" not in nft_tables()


# ------------------------------------------------------------------------------------------------ memory pressure


class FakeSupervisor:
    """Answers ``supervisor.getProcessInfo`` for one program (a sleeping process the test started)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
        self.server.register_function(self.info, "supervisor.getProcessInfo")
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/RPC2"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def info(self, name: str) -> dict:
        return {"name": name, "statename": "RUNNING", "pid": self.pid}


@pytest.fixture
def victim() -> Iterator[tuple[subprocess.Popen, FakeSupervisor]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    sup = FakeSupervisor(proc.pid)
    sup.thread.start()
    try:
        yield proc, sup
    finally:
        sup.server.shutdown()
        sup.server.server_close()
        proc.kill()
        proc.wait(10)


def test_memory_pressure_fills_a_group_of_its_own_and_reverts(ledger, victim):
    proc, sup = victim
    home = memory_cgroup(proc.pid)
    fault = MemoryPressure(sup.url, "node-x", 64 << 20, duration=30)
    handle = fault.inject(ttl=60, ledger=ledger)
    stress = handle.detail["stress_pid"]
    try:
        assert fault.path.name.startswith("vesandbox-drillbit-")  # hostmetrics exports vesandbox* groups
        assert memory_cgroup(proc.pid) == f"/{fault.name}" and memory_cgroup(stress) == f"/{fault.name}"
        usage = int((fault.path / "memory.usage_in_bytes").read_text())
        limit = int((fault.path / "memory.limit_in_bytes").read_text())
        assert usage >= 0.97 * (64 << 20) and 0.9 < usage / limit < 1.0, (usage, limit)
        assert oom_kills(fault.path) == 0
        assert [s["driver"] for s in handle.undo] == ["cgroup", "process"]
    finally:
        revert(handle, ledger)
    assert not fault.path.exists() and fault.name not in drillbit_groups()
    assert memory_cgroup(proc.pid) == home, "the victim is back in the group it came from"
    assert proc.poll() is None, "the victim survived"
    wait_for(lambda: _gone(stress), 10, what="stress-ng to end")
    assert ledger.pending() == []
    revert(handle, ledger)  # idempotent


def test_memory_pressure_refuses_more_than_the_host_can_spare(ledger, victim):
    _, sup = victim
    with pytest.raises(FaultError, match="available on this host"):
        MemoryPressure(sup.url, "node-x", 1 << 50, duration=10).inject(ttl=10, ledger=ledger)
    assert ledger.pending() == [] and drillbit_groups() == []


# ------------------------------------------------------------------------------------------------ overload


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def http_target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/bid-engine/evaluate"
    finally:
        server.shutdown()
        server.server_close()


def test_overload_generator_is_bounded_records_every_request_and_is_ended_on_revert(ledger, tmp_path, http_target):
    fault = Overload(http_target, rate=100, duration=1.5, out_dir=tmp_path / "load", body={"order_id": {}})
    handle = fault.inject(ttl=60, ledger=ledger)
    pid = handle.detail["generator_pid"]
    wait_for(lambda: meta_state(fault.results) == "finished", 15, what="the generator to finish by itself")
    df, meta = read_results(fault.results)
    assert meta["scheduled"] == len(df) == 150 and set(df["status"]) == {503}
    intended = np.sort(df["ts"].to_numpy())
    assert np.allclose(np.diff(intended), 1 / 100, atol=1e-4), "arrivals on the schedule, whatever the latencies"
    assert (df["latency"] >= 0).all()
    revert(handle, ledger)
    assert _gone(pid) and ledger.pending() == []

    long = Overload(http_target, rate=50, duration=300, out_dir=tmp_path / "long")
    handle = long.inject(ttl=60, ledger=ledger)
    t0 = time.monotonic()
    revert(handle, ledger)  # SIGTERM: the generator stops, still writes its results
    assert time.monotonic() - t0 < 8 and _gone(handle.detail["generator_pid"])
    assert meta_state(long.results) == "finished" and read_results(long.results)[1]["stopped_by"] == "signal"


def test_overload_refuses_a_non_loopback_target(ledger, tmp_path):
    with pytest.raises(FaultError, match="only loopback"):
        Overload("http://10.1.2.3/x", rate=10, duration=1, out_dir=tmp_path).inject(ttl=10, ledger=ledger)
    assert ledger.pending() == []


# ------------------------------------------------------------------------------------------------ SIGKILLed runner


def test_cleanup_reverts_partition_pressure_and_load_of_a_sigkilled_runner(ledger, tmp_path, victim, http_target):
    proc, sup = victim
    home = memory_cgroup(proc.pid)
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from drillbit.faults.ledger import Ledger
        from drillbit.faults.memory import MemoryPressure
        from drillbit.faults.overload import Overload
        from drillbit.faults.partition import Partition
        led = Ledger(Path({str(ledger.root)!r}))
        p = Partition({MEMBERS!r}, ["etcd-2"])
        p.inject(ttl=300, ledger=led)
        m = MemoryPressure({sup.url!r}, "node-x", 32 << 20, duration=300)
        hm = m.inject(ttl=300, ledger=led)
        o = Overload({http_target!r}, rate=20, duration=300, out_dir=Path({str(tmp_path / "killed")!r}))
        ho = o.inject(ttl=300, ledger=led)
        print(json.dumps([p.table, m.name, hm.detail["stress_pid"], ho.detail["generator_pid"]]), flush=True)
        time.sleep(300)
        """
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        import json

        table, group, stress, generator = json.loads(runner.stdout.readline())
        assert table in nft_tables() and group in drillbit_groups()
        assert not _gone(stress) and not _gone(generator)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    assert table in nft_tables() and group in drillbit_groups(), "the faults outlive their killed runner"
    results = cleanup(ledger)
    assert [r for _, r in results] == ["reverted"] * 3, results
    assert table not in nft_tables() and group not in drillbit_groups()
    assert memory_cgroup(proc.pid) == home and proc.poll() is None
    wait_for(lambda: _gone(stress) and _gone(generator), 10, what="stress-ng and the generator to end")
    assert ledger.pending() == []
