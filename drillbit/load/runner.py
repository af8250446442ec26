"""Run a scenario's locustfile as a bounded subprocess (Locust is never imported here: gevent breaks Prefect)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from drillbit.load.results import HOST_SAMPLES
from drillbit.load.scenarios import LOCUSTFILES, Scenario
from drillbit.model import Sample
from drillbit.observe import HostSampler

LOCUSTFILE_DIR = Path(
    os.environ.get("DRILLBIT_LOCUSTFILES", str(Path(__file__).resolve().parents[2] / "infra" / "load" / "locustfiles"))
)
STARTUP_S = 15.0  # Locust's own start and stop, on top of the schedule and the drain


class LoadStartError(RuntimeError):
    """Locust exited without recording anything (it never started): safe to retry, no load was offered."""


class LoadRunError(RuntimeError):
    """Locust recorded samples but not how to read them (killed before writing its meta file): not retried."""


@dataclass(frozen=True)
class Urls:
    """Where the generator sends traffic: ``host`` is the node RPC (tx, deployments) or the API (market-query)."""

    host: str
    rest: str | None = None
    provider: str | None = None


@dataclass
class LocustRun:
    returncode: int
    seconds: float
    out_dir: str
    command: list[str]
    timed_out: bool = False


def locust_executable() -> list[str]:
    exe = Path(sys.executable).parent / "locust"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "locust"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drain_seconds(scenario: Scenario) -> float:
    """How long the generator may take after the schedule to finish in-flight work (bounded)."""
    if scenario.target == "deployments":
        return 120.0
    return scenario.request_timeout_s + (31.0 if scenario.target == "tx" else 1.0)


def max_inflight(scenario: Scenario, processes: int = 1) -> int:
    """Per-process cap on operations in flight: enough for the peak rate with every operation taking the whole
    timeout (so the cap never shapes the load before timeouts do), within [100, 10000]."""
    peak = max(max(s[2], s[3]) for s in scenario.profile())
    need = peak * scenario.request_timeout_s * 1.1 / max(processes, 1)
    return int(min(max(need, 100), 10_000))


def command(scenario: Scenario, urls: Urls, out_dir: Path, processes: int = 1) -> list[str]:
    """The Locust command line for a scenario (headless, bounded run time, JSON stats in ``out_dir/locust.json``)."""
    workers = scenario.concurrency or scenario.workers
    streams = max(workers, processes)
    drain = drain_seconds(scenario)
    run_time = int(scenario.total_s + drain + STARTUP_S)
    cmd = [
        *locust_executable(),
        "-f",
        str(LOCUSTFILE_DIR / LOCUSTFILES[scenario.target]),
        "--headless",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "-u",
        str(streams),
        "-r",
        str(max(streams, 100)),
        "-t",
        f"{run_time}s",
        "--stop-timeout",
        "5",
        "--host",
        urls.host,
        "--json-file",
        str(out_dir / "locust"),
        "--drillbit-profile",
        json.dumps(scenario.profile()),
        "--drillbit-streams",
        str(streams),
        "--drillbit-processes",
        str(processes),
        "--drillbit-out",
        str(out_dir),
        "--drillbit-timeout",
        f"{scenario.request_timeout_s:g}",
        "--drillbit-drain",
        f"{drain:g}",
        "--drillbit-max-inflight",
        str(max_inflight(scenario, processes)),
        "--drillbit-abort-error-rate",
        f"{scenario.abort_error_rate:g}",
    ]
    if processes > 1:  # a local master and forked workers, on a free loopback port (runs never clash)
        port = str(free_port())
        cmd += ["--processes", str(processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", port]
        cmd += ["--master-host", "127.0.0.1", "--master-port", port]
    if scenario.target == "deployments":
        cmd += ["--drillbit-rest", urls.rest or "", "--drillbit-provider", urls.provider or ""]
        cmd += ["--drillbit-provision-timeout", f"{scenario.p95_budget:g}"]
    return cmd


def run(cmd: list[str], out_dir: Path, timeout: float, extra: list[str] | None = None) -> LocustRun:
    """Run Locust to completion, bounded by ``timeout`` (then SIGTERM, then SIGKILL, by its own process group)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    old_files = [*out_dir.glob("samples-*.bin"), *out_dir.glob("meta-*.json"), *out_dir.glob("locust.json")]
    for old in [*old_files, *out_dir.glob(HOST_SAMPLES)]:
        old.unlink()  # a retry starts clean (only retried when nothing was recorded)
    cmd = [*cmd, *(extra or [])]
    t0 = time.monotonic()
    timed_out = False
    # the same sampler the experiment Observer runs, beside the generator: this process's tree includes Locust's
    host: list[Sample] = []
    stop = threading.Event()
    sampler = HostSampler(root_pid=os.getpid())
    watcher = threading.Thread(target=sampler.run, args=(host.append, stop), daemon=True)
    if sampler.available():
        watcher.start()
    try:
        with (out_dir / "locust.log").open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=out_dir)
            sampler.also.add(proc.pid)  # Locust and its workers are the harness too (their own session)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop(proc)
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(timeout=5)
        write_host_samples(out_dir / HOST_SAMPLES, list(host))
    result = LocustRun(proc.returncode, time.monotonic() - t0, str(out_dir), cmd, timed_out)
    if not list(out_dir.glob("meta-*.json")):
        tail = (out_dir / "locust.log").read_text(errors="replace")[-2000:]
        if any(p.stat().st_size for p in out_dir.glob("samples-*.bin")):
            raise LoadRunError(f"locust stopped without its meta file (exit {proc.returncode}); log tail:\n{tail}")
        raise LoadStartError(f"locust recorded nothing (exit {proc.returncode}); log tail:\n{tail}")
    return result


def write_host_samples(path: Path, samples: list[Sample]) -> None:
    path.write_text(json.dumps([asdict(s) for s in samples]))


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)  # the group Locust leads (its --processes children included), nothing else
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_scenario(scenario: Scenario, urls: Urls, out_dir: Path, processes: int = 1) -> LocustRun:
    cmd = command(scenario, urls, out_dir, processes)
    limit = scenario.total_s + drain_seconds(scenario) + STARTUP_S + 30
    return run(cmd, out_dir, timeout=limit)
