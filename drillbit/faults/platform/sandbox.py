"""The sandbox platform's plumbing: real processes under a supervisor, a TCP fault proxy, nftables on loopback.

- supervisor (XML-RPC): which programs run, and a program's PID;
- fault proxy (Toxiproxy API): its links, adding a toxic (the ``toxic`` undo driver in ``undo`` removes it);
- nftables: every rule Drillbit adds lives in a table of its own with one output-hook chain, so that reverting is
  one ``nft delete table`` (the ``nft_table`` undo driver).

The undo drivers of these steps are local step kinds and live in ``drillbit.faults.undo``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xmlrpc.client
from typing import Any

import httpx

from drillbit.faults.errors import FaultError

# ------------------------------------------------------------------------------------------------ supervisor


def supervisor(url: str) -> Any:
    """The supervisor's XML-RPC namespace (``getAllProcessInfo``, ``getProcessInfo``, ...)."""
    return xmlrpc.client.ServerProxy(url).supervisor


def running_programs(url: str) -> set[str]:
    """Names of the supervised programs now RUNNING; FaultError if the supervisor does not answer."""
    try:
        return {i["name"] for i in supervisor(url).getAllProcessInfo() if i["statename"] == "RUNNING"}
    except (OSError, xmlrpc.client.Error) as exc:
        raise FaultError(f"cannot reach the sandbox supervisor: {exc}") from exc


def running_pid(url: str, program: str) -> int:
    """The PID of a RUNNING supervised program; FaultError if it is not running or the supervisor does not answer."""
    try:
        info = supervisor(url).getProcessInfo(program)
    except (OSError, xmlrpc.client.Error) as exc:
        raise FaultError(f"cannot ask the supervisor about {program}: {exc}") from exc
    if info.get("statename") != "RUNNING" or int(info.get("pid") or 0) <= 0:
        raise FaultError(f"{program} is not running ({info.get('statename')})")
    return int(info["pid"])


# ------------------------------------------------------------------------------------------------ fault proxy


def proxies(api: str) -> dict[str, Any]:
    """The fault proxy's links, by name; FaultError if it does not answer."""
    try:
        return httpx.get(f"{api}/proxies", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise FaultError(f"fault proxy at {api} is not reachable: {exc}") from exc


def add_toxic(api: str, proxy: str, toxic: dict[str, Any]) -> None:
    """Add a toxic (``name``, ``type``, ``stream``, ``toxicity``, ``attributes``) to one link; FaultError if refused."""
    r = httpx.post(f"{api}/proxies/{proxy}/toxics", json=toxic, timeout=5)
    if r.status_code >= 300:
        what = toxic.get("type", "a toxic")
        raise FaultError(f"adding {what} to {proxy} failed: HTTP {r.status_code} {r.text[:200]}")


def toxic_step(api: str, proxy: str, toxic: str) -> dict[str, Any]:
    """The undo step removing a toxic (driver ``toxic``)."""
    return {"driver": "toxic", "api": api, "proxy": proxy, "toxic": toxic}


# ------------------------------------------------------------------------------------------------ nftables


def require_nft(needs: str) -> None:
    """FaultError unless ``nft`` is installed and we are root (``needs``: what for, e.g. "blocking a port")."""
    if shutil.which("nft") is None:
        raise FaultError("nft not found: install nftables (apt-get install -y nftables)")
    if os.geteuid() != 0:
        raise FaultError(f"{needs} needs root (nftables)")


def output_table(table: str, rules: list[str]) -> str:
    """The nft script of an ``inet`` table of Drillbit's own: one output-hook chain (before the default filters)."""
    lines = [f"table inet {table} {{", "  chain output {", "    type filter hook output priority -10; policy accept;"]
    return "\n".join([*lines, *(f"    {rule}" for rule in rules), "  }", "}", ""])


def nft_apply(script: str) -> None:
    """Load an nft script (``nft -f -``); FaultError with nft's message if it refuses."""
    r = subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        raise FaultError(f"nft failed: {r.stderr.strip()}")


def nft_table_step(table: str) -> dict[str, Any]:
    """The undo step deleting a whole table (driver ``nft_table``)."""
    return {"driver": "nft_table", "family": "inet", "table": table}
