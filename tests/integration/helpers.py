"""Helpers that run the real sandbox (real processes on loopback) for integration tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drillbit import sandbox as sbx
from drillbit.client import VirtEngineClient

# tests never share ports with a developer's sandbox (offset 0). Offsets are multiples of 1000: no two of the
# sandbox's base ports differ by a multiple of 1000 below 10000, so sandboxes at different offsets never clash.
# (override both to run a second test session beside another one on the same machine)
HEALTHY_OFFSET = int(os.environ.get("DRILLBIT_TEST_HEALTHY_OFFSET", "1000"))
HEALTHY_RUN_DIR = Path(os.environ.get("DRILLBIT_TEST_HEALTHY_RUN_DIR", "/tmp/drillbit-test-sandbox"))
WEAK_OFFSET = 2000
# every offset a test or benchmark starts a sandbox at (lifecycle 3000, failure modes 5000, DR 6000/7000,
# benchmarks 8000, verify 9000); their ports are reserved against ephemeral use for the session (conftest.py)
TEST_OFFSETS = sorted({HEALTHY_OFFSET, WEAK_OFFSET, 3000, 4000, 5000, 6000, 7000, 8000, 9000})


@contextlib.contextmanager
def running_sandbox(run_dir: Path, offset: int, weaknesses: list[str] = ()) -> Iterator[dict[str, Any]]:
    args = ["up"]
    for w in weaknesses:
        args += ["--weaken", w]
    sbx.launcher(["down", "--purge"], run=run_dir, offset=offset, capture=True)  # leftovers of a crashed earlier run
    try:
        result = sbx.launcher(args, run=run_dir, offset=offset, capture=True)
        assert result.returncode == 0, f"sandbox up failed:\n{result.stdout}\n{result.stderr}"
        yield sbx.endpoints(run_dir)
    finally:
        sbx.launcher(["down", "--purge"], run=run_dir, offset=offset, capture=True)


def client_for(ep: dict[str, Any], timeout: float = 10.0) -> VirtEngineClient:
    return VirtEngineClient(ep["node_rpc"], ep["node_rest"], ep["api"], ep["provider"], timeout=timeout)


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail with `what`: tests.support.wait_for (which retries
    on any Exception), in the argument order the integration tests call it with."""
    from tests.support import wait_for as poll

    return poll(predicate, timeout, what=what, interval=interval)


@contextlib.contextmanager
def blocked_port(port: int, table: str = "drillbit_test") -> Iterator[None]:
    """Drop TCP traffic to a loopback port with an nftables table of the test's own (deleted afterwards)."""
    rules = f"""
table inet {table} {{
  chain output {{
    type filter hook output priority -10; policy accept;
    oifname "lo" tcp dport {port} drop
  }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


@contextlib.contextmanager
def toxic(ep: dict[str, Any], proxy: str, type_: str, **attributes: Any) -> Iterator[dict[str, Any]]:
    """Add a toxic on one of the sandbox's fault-proxy links; removed afterwards."""
    import httpx

    base = f"{ep['faultproxy']}/proxies/{proxy}/toxics"
    r = httpx.post(base, json={"type": type_, "attributes": attributes}, timeout=5)
    r.raise_for_status()
    created = r.json()
    try:
        yield created
    finally:
        httpx.delete(f"{base}/{created['name']}", timeout=5)
