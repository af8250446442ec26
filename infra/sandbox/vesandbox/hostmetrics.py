"""A tiny node-exporter for the sandbox: per-component process metrics, filesystems, cgroups, text files.

``python -m vesandbox.hostmetrics --config FILE``. Config: ``{"name", "weaknesses", "listen": {"host", "port"},
"supervisor_url": "http://127.0.0.1:29001/RPC2", "filesystems": [{"path", "component"}] (or plain paths),
"cgroup_root": "/sys/fs/cgroup/memory", "cgroups": ["vesandbox*"], "textfile_dir": "DIR"}`` (all but ``listen``
optional). Everything is read at scrape time (``GET /metrics``):

- per supervised program (``supervisor.getAllProcessInfo``), summed over its process tree:
  ``virtengine_process_resident_memory_bytes{component}`` (Σ RssAnon + RssFile, plus the largest RssShmem: shared
  memory such as postgres' buffers counted once), ``virtengine_process_cpu_seconds_total{component}``,
  ``virtengine_process_count{component}``, ``virtengine_process_running{component}`` (1 when RUNNING),
  ``virtengine_process_start_time_seconds{component}``; ``virtengine_hostmetrics_supervisor_up``;
- per configured path (``os.statvfs``; a missing path is skipped): ``virtengine_filesystem_avail_bytes``,
  ``..._size_bytes``, ``..._used_ratio`` (1 - avail / size), labelled ``{path, component}``;
- per cgroup v1 memory cgroup under ``cgroup_root`` matching a ``cgroups`` glob, when it exists:
  ``virtengine_cgroup_memory_usage_bytes``, ``..._limit_bytes``, ``..._oom_kills_total``, labelled
  ``{cgroup, component}`` (component = the cgroup's last path element);
- every ``*.prom`` file in ``textfile_dir`` (node-exporter's textfile collector: a helper writes e.g.
  ``virtengine_backup_last_success_timestamp_seconds`` there); ``virtengine_textfile_scrape_error{file}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import xmlrpc.client
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vesandbox.common import load_config, metrics_response, serve, setup_logging

log = setup_logging("hostmetrics")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SUPERVISOR_TIMEOUT = 1.0


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cpu_seconds: float


def read_proc(pid: int) -> Proc | None:
    """One process from /proc/PID/stat, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state) of proc(5)
    return Proc(pid, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)


def memory_of(pid: int) -> tuple[int, int]:
    """(RssAnon + RssFile, RssShmem) in bytes from /proc/PID/status ((0, 0) if it is gone)."""
    private = shared = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                private += int(value.split()[0]) * 1024
            elif key == "RssShmem":
                shared = int(value.split()[0]) * 1024
    return private, shared


def tree_resident_bytes(tree: list[Proc]) -> int:
    """Resident memory of a process tree with shared memory counted once (postgres backends share a segment)."""
    private = shared = 0
    for proc in tree:
        own, shm = memory_of(proc.pid)
        private, shared = private + own, max(shared, shm)
    return private + shared


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (proc := read_proc(int(entry.name))) is not None:
            table[proc.pid] = proc
    return table


def process_tree(root: int, table: dict[int, Proc]) -> list[Proc]:
    """The root and all its descendants that are in the table."""
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    out, todo, seen = [], [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        out.append(table[pid])
        todo.extend(children.get(pid, []))
    return out


async def supervisor_processes(url: str) -> list[dict[str, Any]] | None:
    """``supervisor.getAllProcessInfo`` over XML-RPC, or None when supervisord does not answer."""
    body = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo")
    try:
        async with httpx.AsyncClient(timeout=SUPERVISOR_TIMEOUT) as client:
            response = await client.post(url, content=body, headers={"Content-Type": "text/xml"})
        response.raise_for_status()
        (infos,), _ = xmlrpc.client.loads(response.content)
    except (httpx.HTTPError, xmlrpc.client.Error, ValueError, ExpatError) as exc:
        log.debug("supervisor at %s unavailable: %s", url, exc)
        return None
    return list(infos)


def process_families(infos: list[dict[str, Any]] | None) -> list[Metric]:
    up = GaugeMetricFamily("virtengine_hostmetrics_supervisor_up", "1 when supervisord answered XML-RPC")
    up.add_metric([], 0 if infos is None else 1)
    labels = ["component"]
    rss = GaugeMetricFamily(
        "virtengine_process_resident_memory_bytes", "RSS of the process tree, shared memory once", labels=labels
    )
    cpu = CounterMetricFamily("virtengine_process_cpu_seconds", "User+system CPU of the process tree", labels=labels)
    count = GaugeMetricFamily("virtengine_process_count", "Processes in the tree", labels=labels)
    running = GaugeMetricFamily("virtengine_process_running", "1 when supervisord says RUNNING", labels=labels)
    started = GaugeMetricFamily("virtengine_process_start_time_seconds", "Start time (unix)", labels=labels)
    table = process_table() if infos else {}
    for info in infos or []:
        name = str(info.get("name", ""))
        is_running = info.get("statename") == "RUNNING" and int(info.get("pid") or 0) > 0
        running.add_metric([name], 1 if is_running else 0)
        if not is_running:
            continue
        tree = process_tree(int(info["pid"]), table)
        rss.add_metric([name], tree_resident_bytes(tree))
        cpu.add_metric([name], sum(p.cpu_seconds for p in tree))
        count.add_metric([name], len(tree))
        started.add_metric([name], float(info.get("start") or 0))
    return [up, rss, cpu, count, running, started]


def filesystem_families(filesystems: Iterable[dict[str, str]]) -> list[Metric]:
    labels = ["path", "component"]
    avail = GaugeMetricFamily("virtengine_filesystem_avail_bytes", "Bytes available to non-root", labels=labels)
    size = GaugeMetricFamily("virtengine_filesystem_size_bytes", "Filesystem size", labels=labels)
    ratio = GaugeMetricFamily("virtengine_filesystem_used_ratio", "1 - avail / size", labels=labels)
    for fs in filesystems:
        try:
            st = os.statvfs(fs["path"])
        except OSError:
            continue
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        values = [fs["path"], fs["component"]]
        avail.add_metric(values, free)
        size.add_metric(values, total)
        ratio.add_metric(values, 1 - free / total if total else 0.0)
    return [avail, size, ratio]


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _oom_kills(path: Path) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


def cgroup_families(root: str | None, patterns: Iterable[str]) -> list[Metric]:
    labels = ["cgroup", "component"]
    usage = GaugeMetricFamily("virtengine_cgroup_memory_usage_bytes", "memory.usage_in_bytes", labels=labels)
    limit = GaugeMetricFamily("virtengine_cgroup_memory_limit_bytes", "memory.limit_in_bytes", labels=labels)
    ooms = CounterMetricFamily("virtengine_cgroup_memory_oom_kills", "oom_kill of memory.oom_control", labels=labels)
    base = Path(root) if root else None
    if base is not None and base.is_dir():
        found = sorted({p for pattern in patterns for p in base.glob(pattern) if p.is_dir()})
        for cg in found:
            used = _read_int(cg / "memory.usage_in_bytes")
            if used is None:
                continue
            values = [str(cg.relative_to(base)), cg.name]
            usage.add_metric(values, used)
            limit.add_metric(values, _read_int(cg / "memory.limit_in_bytes") or 0)
            ooms.add_metric(values, _oom_kills(cg / "memory.oom_control"))
    return [usage, limit, ooms]


def textfile_families(directory: str | None) -> list[Metric]:
    errors = GaugeMetricFamily("virtengine_textfile_scrape_error", "1 when a .prom file did not parse", labels=["file"])
    out: list[Metric] = []
    for path in sorted(Path(directory).glob("*.prom")) if directory else []:
        try:
            families = list(text_string_to_metric_families(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("textfile %s: %s", path, exc)
            errors.add_metric([path.name], 1)
            continue
        errors.add_metric([path.name], 0)
        out += families
    return [*out, errors]


class Snapshot:
    """A collector that yields families computed for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def normalise_filesystems(raw: Any) -> list[dict[str, str]]:
    out = []
    for item in raw or []:
        if isinstance(item, str):
            out.append({"path": item, "component": "sandbox"})
        else:
            out.append({"path": str(item["path"]), "component": str(item.get("component", "sandbox"))})
    return out


class HostMetrics:
    def __init__(self, config: dict[str, Any]) -> None:
        self.supervisor_url: str | None = config.get("supervisor_url")
        self.filesystems = normalise_filesystems(config.get("filesystems"))
        self.cgroup_root: str | None = config.get("cgroup_root")
        self.cgroups: list[str] = list(config.get("cgroups") or [])
        self.textfile_dir: str | None = config.get("textfile_dir")

    def collect_sync(self, infos: list[dict[str, Any]] | None) -> list[Metric]:
        return [
            *process_families(infos),
            *filesystem_families(self.filesystems),
            *cgroup_families(self.cgroup_root, self.cgroups),
            *textfile_families(self.textfile_dir),
        ]

    async def registry(self) -> CollectorRegistry:
        infos = await supervisor_processes(self.supervisor_url) if self.supervisor_url else None
        families = await asyncio.to_thread(self.collect_sync, infos)
        registry = CollectorRegistry()
        registry.register(Snapshot(families))
        return registry


def build_app(host_metrics: HostMetrics) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return metrics_response(await host_metrics.registry())

    return Starlette(routes=[Route("/health", health), Route("/metrics", metrics)])


def main(argv: list[str] | None = None) -> None:
    config = load_config(argv)
    try:
        host, port = str(config["listen"]["host"]), int(config["listen"]["port"])
        host_metrics = HostMetrics(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"error: bad hostmetrics config ({exc!r})") from exc
    serve(build_app(host_metrics), host, port, log)


if __name__ == "__main__":
    main()
