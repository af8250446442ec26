"""Drillbit's open-model load generator, measured side by side in one run on the sandbox.

Starts its own sandbox (port offset ``$DRILLBIT_BENCH_OFFSET``, default 10000; run directory
``/tmp/drillbit-bench-load-<offset>``; removed at the end) and loads node-0's CometBFT RPC ``/health`` directly (the
cheapest endpoint the sandbox serves). Prints:

1. achieved / target rate at 50, 100 and 1000 operations per second;
2. a 1 s stall injected into the target at 100/s (node-0 is stopped with SIGSTOP for 1 s, then continued): the
   true p99 (from the schedule and the measured stall window), Drillbit's coordinated-omission-corrected and
   uncorrected p99 (with its default in-flight cap and with a 10-slot cap, like a 10-connection closed pool), and
   what plain Locust (10 users x 10/s, closed loop) reports;
3. requests per CPU-second of Drillbit's generator vs a bare Locust FastHttpUser locustfile on the same endpoint,
   both with 20 requests in flight (an open model past the target's capacity would otherwise open a connection per
   waiting request, and measure connection churn instead of the generator).

The target shares the machine with the generator: compare ratios, not absolute numbers, and run it on a quiet
machine (a starved target holds every in-flight slot, and the "cap waits" column then says the target, not the
generator, set the pace). ``--local`` uses a tiny asyncio HTTP server instead of the sandbox (its stall is served by
the target itself). Not run in CI; every run is bounded (about 5 minutes in all, plus the sandbox's start).

    .venv/bin/python benchmarks/load_generator.py [--quick] [--local]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drillbit import sandbox as sbx  # noqa: E402
from drillbit.load import results as res  # noqa: E402
from drillbit.load.runner import LOCUSTFILE_DIR, free_port, locust_executable  # noqa: E402

# ------------------------------------------------------------------------------------------------ the target


async def _serve(port: int) -> None:
    state = {"stall_at": 0.0, "stall_for": 0.0, "served": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                body = b"ok"
                if path.startswith("/stall"):
                    q = dict(p.split("=") for p in path.partition("?")[2].split("&") if "=" in p)
                    state["stall_at"], state["stall_for"] = float(q["at"]), float(q["seconds"])
                elif path.startswith("/stats"):
                    body = json.dumps(state).encode()
                else:
                    now = time.time()
                    end = state["stall_at"] + state["stall_for"]
                    if state["stall_at"] <= now < end:  # the stall: everything arriving now waits for its end
                        await asyncio.sleep(end - now)
                    state["served"] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await asyncio.sleep(900)  # bounded: the benchmark stops it long before


class Target:
    """The trivial target in its own process (stopped by pid)."""

    def __enter__(self) -> Target:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.port)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/stats", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the target did not start")

    def stall(self, at: float, seconds: float) -> None:
        httpx.get(f"{self.url}/stall?at={at}&seconds={seconds}", timeout=5)

    def stall_window(self) -> tuple[float, float]:
        stats = httpx.get(f"{self.url}/stats", timeout=5).json()
        return stats["stall_at"], stats["stall_at"] + stats["stall_for"]

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class SandboxTarget:
    """Node-0's RPC ``/health`` on a sandbox of the benchmark's own; a stall is SIGSTOP / SIGCONT of node-0."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.run_dir = Path(f"/tmp/drillbit-bench-load-{offset}")
        self.window = (0.0, 0.0)
        self.thread: threading.Thread | None = None

    def __enter__(self) -> SandboxTarget:
        sbx.launcher(["down", "--purge"], run=self.run_dir, offset=self.offset, capture=True)  # a crashed run's
        try:
            up = sbx.launcher(["up"], run=self.run_dir, offset=self.offset, capture=True)
            if up.returncode != 0:
                raise RuntimeError(f"sandbox up failed:\n{up.stdout}\n{up.stderr}")
            ep = sbx.endpoints(self.run_dir)
            self.base = ep["nodes"][0]["rpc"]
            self.url = self.base  # the generators GET --drillbit-path / DRILLBIT_PLAIN_PATH on it
            supervisor = xmlrpc.client.ServerProxy(ep["supervisor"]).supervisor
            self.pid = int(supervisor.getProcessInfo(ep["nodes"][0]["name"])["pid"])
            httpx.get(f"{self.base}/health", timeout=10).raise_for_status()
        except BaseException:
            self.__exit__()
            raise
        return self

    def stall(self, at: float, seconds: float) -> None:
        def freeze() -> None:
            time.sleep(max(at - time.time(), 0.0))
            t0 = time.time()
            os.kill(self.pid, signal.SIGSTOP)
            try:
                time.sleep(seconds)
            finally:
                os.kill(self.pid, signal.SIGCONT)
            self.window = (t0, time.time())

        self.thread = threading.Thread(target=freeze, daemon=True)
        self.thread.start()

    def stall_window(self) -> tuple[float, float]:
        if self.thread is not None:
            self.thread.join(timeout=120)
        return self.window

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "pid", None):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)  # never leave node-0 stopped
        sbx.launcher(["down", "--purge"], run=self.run_dir, offset=self.offset, capture=True)


# --------------------------------------------------------------------------------------------- the generators


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run(cmd: list[str], cwd: Path, timeout: float, window: tuple[float, float] | None = None) -> tuple[float, float]:
    """Run a Locust command to its end. With ``window`` (seconds after start), also measure the CPU seconds the
    process used in it (leaving out Locust's start-up and shut-down); returns (cpu in window, window start time)."""
    with (cwd / "locust.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        cpu, w0 = 0.0, 0.0
        try:
            if window:
                time.sleep(window[0])
                w0, c0 = time.time(), cpu_seconds(proc.pid)
                time.sleep(window[1] - window[0])
                cpu = cpu_seconds(proc.pid) - c0
                cpu_window[:] = [w0, time.time()]
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    return cpu, w0


cpu_window: list[float] = [0.0, 0.0]  # wall-clock bounds of the last CPU measurement


PATH = {"path": "/"}  # the endpoint's path on the target (set by main)


def drillbit_gen(
    url: str, rate: float, seconds: float, streams: int, cap: int, out: Path, window: tuple[float, float] | None = None
) -> tuple[res.LoadData, float]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [*locust_executable(), "-f", str(LOCUSTFILE_DIR / "http_get.py"), "--headless", "--only-summary"]
    cmd += ["--loglevel", "WARNING", "-u", str(streams), "-r", "1000", "-t", f"{int(seconds + 25)}s", "--host", url]
    cmd += ["--drillbit-rate", str(rate), "--drillbit-duration", str(seconds), "--drillbit-streams", str(streams)]
    cmd += ["--drillbit-out", str(out), "--drillbit-max-inflight", str(cap), "--drillbit-timeout", "10"]
    cmd += ["--drillbit-drain", "11", "--json-file", str(out / "locust"), "--drillbit-path", PATH["path"]]
    cpu, _ = run(cmd, out, timeout=seconds + 60, window=window)
    return res.read(out), cpu


def plain_locust(
    url: str, users: int, rps_per_user: float, seconds: float, out: Path, window: tuple[float, float] | None = None
) -> tuple[dict, float]:
    """Plain Locust; with ``window``, also the requests it completed in the CPU window (from its stats history)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [*locust_executable(), "-f", str(LOCUSTFILE_DIR / "plain_fasthttp.py"), "--headless", "--only-summary"]
    cmd += ["--loglevel", "WARNING", "-u", str(users), "-r", "1000", "-t", f"{int(seconds)}s", "--host", url]
    cmd += ["--json-file", str(out / "locust"), "--csv", str(out / "plain"), "--csv-full-history"]
    os.environ["DRILLBIT_PLAIN_RPS_PER_USER"] = str(rps_per_user)
    os.environ["DRILLBIT_PLAIN_PATH"] = PATH["path"]
    try:
        cpu, _ = run(cmd, out, timeout=seconds + 60, window=window)
    finally:
        os.environ.pop("DRILLBIT_PLAIN_RPS_PER_USER", None)
        os.environ.pop("DRILLBIT_PLAIN_PATH", None)
    stats = res.locust_summary(json.loads((out / "locust.json").read_text())).get(PATH["path"], {})
    if window:
        stats["in_window"] = history_count(out / "plain_stats_history.csv", *cpu_window)
    return stats, cpu


def history_count(path: Path, start: float, end: float) -> int:
    """Requests Locust completed between two times, from its per-second cumulative stats history."""
    import csv

    rows = [r for r in csv.DictReader(path.open()) if r["Name"] == "Aggregated"]
    times = np.array([float(r["Timestamp"]) for r in rows])
    counts = np.array([float(r["Total Request Count"]) for r in rows])
    return int(np.interp(end, times, counts) - np.interp(start, times, counts))


def steady_rate(data: res.LoadData) -> tuple[float, float]:
    """(sent per second, ok per second) over the schedule."""
    df = data.select("http-get")
    start, end = data.phases[0][1], data.phases[-1][2]
    return res.offered(df, start, end), float(df["ok"].sum()) / (end - start)


# ---------------------------------------------------------------------------------------------------- measures


def rates(url: str, tmp: Path, seconds: float) -> None:
    print(f"\n1. achieved / target rate ({seconds:g} s each, open model)")
    print(
        f"   {'target/s':>9} {'sent/s':>9} {'ok/s':>9} {'achieved':>9} {'p99 corrected':>14} {'late > 1 s':>10} "
        f"{'cap waits':>9}"
    )
    for rate in (50, 100, 1000):
        data, _ = drillbit_gen(url, rate, seconds, max(1, rate // 50), 1000, tmp / f"rate-{rate}")
        sent, ok = steady_rate(data)
        p99 = res.latency_summary(data.select("http-get"))["corrected"]["p99_s"]
        late = res.lateness(data.select("http-get"))["late_fraction"]
        waits = sum(m.get("cap_hits", 0) for m in data.metas)  # sends delayed by the in-flight cap (a slow target)
        row = f"{rate:>9} {sent:>9.1f} {ok:>9.1f} {sent / rate:>9.1%} {p99 * 1000:>11.1f} ms {late:>10.2%}"
        print(f"   {row} {waits:>9}")


def stall(target: Target | SandboxTarget, tmp: Path, seconds: float) -> None:
    print(f"\n2. a 1 s stall at 100/s ({seconds:g} s runs, stall {seconds / 2:g} s in): p99 latency")
    rows = []
    for label, cap in (("drillbit (default cap 1000)", 1000), ("drillbit (10 slots)", 10)):
        target.stall(time.time() + 3 + seconds / 2, 1.0)
        data, _ = drillbit_gen(target.url, 100, seconds, 10, cap, tmp / f"stall-{cap}")
        df = data.select("http-get")
        s = res.latency_summary(df)
        window = target.stall_window()
        truth, backlog, resume = true_latencies(df, *window)
        p99s = [s["corrected"]["p99_s"], s["uncorrected"]["p99_s"], *np.percentile([truth, backlog], 99, axis=1)]
        rows.append((label, *map(float, p99s), resume))
    target.stall(time.time() + 3 + seconds / 2, 1.0)
    plain, _ = plain_locust(target.url, 10, 10.0, seconds, tmp / "stall-plain")
    target.stall_window()  # the stall is over before anything else runs
    print(
        f"   {'generator':<30} {'corrected':>10} {'uncorrected':>12} {'true':>9} {'vs true':>8} "
        f"{'true+backlog':>13} {'first answer / last after resume':>33}"
    )
    for label, corrected, uncorrected, true, backlog, (first, last) in rows:
        print(
            f"   {label:<30} {corrected * 1000:>7.0f} ms {uncorrected * 1000:>9.0f} ms {true * 1000:>6.0f} ms "
            f"{corrected / true - 1:>+8.1%} {backlog * 1000:>10.0f} ms {first * 1000:>18.0f} ms / {last * 1000:.0f} ms"
        )
    print(f"   {'plain Locust (10 users x 10/s)':<30} {'':>10} {plain.get('p99_s', 0) * 1000:>9.0f} ms {'':>9}")
    print(f"   plain Locust sent {plain.get('requests', 0)} requests (schedule: {int(100 * seconds)})")
    print(
        "   true = for each scheduled arrival, the rest of the stall if it came during it, plus the median service time"
        " outside it: a lower bound, it leaves out what the target does when it resumes (wake up, accept and answer"
        " the requests queued during the stall, one after the other). true+backlog adds that: the requests that came"
        " during the stall (and any queued behind them) are answered first come first served from the first answer"
        " after the resume to the last one (the drain rate the run itself saw, so it is an estimate, not an"
        " independent truth). With many connections (default cap: one per request in flight) the target answers"
        " its queue in no fixed order, so the earliest arrivals of the stall (the p99) may be answered last: corrected"
        " then lies between true+backlog and true + last; above true + last the generator added delay of its own."
    )


def true_latencies(df, stall_start: float, stall_end: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """What each scheduled operation would wait at the target.

    Returns (no backlog, with backlog, (first, last) answer after the resume, in s after the stall end).
    No backlog: the rest of the stall when it arrives during it, plus the target's normal service time (the median
    uncorrected latency outside the stall). With backlog: the target resumes, answers its first queued request
    ``first`` s after the stall end, then works the queue off first come first served at the drain rate seen in the
    run (the requests that arrived during the stall, answered between ``first`` and ``last``), so an arrival's
    answer is no earlier than its predecessor's plus one drain step."""
    intended = df["ts"].to_numpy(float)
    done = df["done"].to_numpy(float)
    outside = (intended < stall_start - 0.5) | (intended > stall_end + 0.5)
    service = float(np.median(df["value"].to_numpy(float)[outside]))
    stalled = (intended >= stall_start) & (intended < stall_end)
    wait = np.where(stalled, stall_end - intended, 0.0)
    simple = wait + service
    if not stalled.any():
        return simple, simple, (0.0, 0.0)
    first = max(float(done[stalled].min()) - stall_end, service)
    last = max(float(done[stalled].max()) - stall_end, first)
    step = (last - first) / max(int(stalled.sum()) - 1, 1)  # one queued request answered per step
    order = np.argsort(intended, kind="stable")
    backlog = np.empty_like(simple)
    prev = -np.inf
    for i in order:  # FIFO single queue: answered at the earliest of its own time and one step after the previous
        t = intended[i]
        earliest = stall_end + first if stalled[i] else t + service
        answer = max(earliest, prev + step) if prev > stall_end else earliest
        backlog[i] = answer - t
        prev = answer
    return simple, np.maximum(backlog, simple), (first, last)


def per_core(url: str, tmp: Path, seconds: float, rounds: int = 2) -> None:
    window = (4.0, 4.0 + seconds * 0.6)  # after Locust's start-up, before the schedule ends
    print(
        f"\n3. requests per CPU-second of the generator process (as fast as it goes, 20 connections each; CPU "
        f"counted over a {window[1] - window[0]:g} s window after start-up; {rounds} alternating rounds, median)"
    )
    ours, theirs = [], []
    for i in range(rounds):  # alternate, so that a noisy neighbour hurts both sides alike
        # the same concurrency for both (20 in flight): what is compared is the cost per request, not connections
        data, cpu = drillbit_gen(url, 20_000, seconds, 20, 20, tmp / f"max-drillbit-{i}", window=window)
        df = data.select("http-get")
        w0, w1 = cpu_window
        done = int(((df["done"] >= w0) & (df["done"] < w1)).sum())
        ours.append((done, cpu))
        plain, plain_cpu = plain_locust(url, 20, 0.0, seconds, tmp / f"max-plain-{i}", window=window)
        theirs.append((plain.get("in_window", 0), plain_cpu))
    for label, runs in (("drillbit open model", ours), ("bare Locust FastHttpUser", theirs)):
        cells = ", ".join(f"{n} req / {c:.2f} CPU s" for n, c in runs)
        print(f"   {label:<26} {cells} → {np.median([n / max(c, 1e-9) for n, c in runs]):8.0f} rps/core")
    ratio = np.median([n / max(c, 1e-9) for n, c in ours]) / np.median([n / max(c, 1e-9) for n, c in theirs])
    print(f"   ratio drillbit / bare Locust: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--local", action="store_true", help="a tiny local asyncio target instead of the sandbox")
    parser.add_argument("--sections", default="1,2,3", help="which measures to run (default: 1,2,3)")
    parser.add_argument(
        "--offset",
        type=int,
        default=int(os.environ.get("DRILLBIT_BENCH_OFFSET", "10000")),
        help="the benchmark sandbox's port offset (default $DRILLBIT_BENCH_OFFSET or 10000)",
    )
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    seconds = 6.0 if args.quick else 10.0
    target_cm = Target() if args.local else SandboxTarget(args.offset)
    PATH["path"] = "/" if args.local else "/health"
    with tempfile.TemporaryDirectory(prefix="drillbit-bench-") as tmp, target_cm as target:
        what = "asyncio, one process" if args.local else f"sandbox node-0 RPC, offset {args.offset}"
        print(f"target: {target.url}{PATH['path']} ({what}); cores: {os.cpu_count()}")
        sections = {x.strip() for x in args.sections.split(",")}
        if "1" in sections:
            rates(target.url, Path(tmp), seconds)
        if "2" in sections:
            stall(target, Path(tmp), 2 * seconds)
        if "3" in sections:
            per_core(target.url, Path(tmp), seconds)


if __name__ == "__main__":
    main()
