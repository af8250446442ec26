"""The testing calendar on a real Prefect server: deployments with the calendar's schedules and parameters, an ad-hoc
run with artifacts, a gameday whose team inputs arrive through the API, and the UI rendering the deployments."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import HEALTHY_RUN_DIR, wait_for

pytestmark = pytest.mark.integration

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory, sandbox):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",  # else the UI calls the default port 4200
    }
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed in the finalizer
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 150, what="the Prefect server")
        yield {"url": url, "ui": f"http://127.0.0.1:{port}", "home": home}
    finally:
        stop(server)
        log.close()


@pytest.fixture(scope="module")
def served(prefect_api, drillbit_home, tmp_path_factory):
    """`drillbit deploy --target sandbox --paused` serving every calendar deployment from a subprocess."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api["url"],
        "PREFECT_HOME": str(prefect_api["home"]),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "DRILLBIT_SANDBOX_DIR": str(HEALTHY_RUN_DIR),
        "DRILLBIT_HOME": str(drillbit_home),
    }
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finalizer
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.app", "deploy", "--target", "sandbox", "--paused"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop(proc, grace=40)
        log.close()


def client_call(api_url: str, fn):
    """Run ``fn(client)`` with a Prefect client bound to the real server (not the session's test harness)."""
    from prefect.client.orchestration import PrefectClient

    async def go():
        async with PrefectClient(api_url) as client:
            return await fn(client)

    return asyncio.run(go())


def expected_deployments():
    from drillbit.calendar import plan
    from drillbit.config import DrillbitConfig

    deploy, _ = plan(DrillbitConfig(), target="sandbox")
    return deploy


def test_every_calendar_deployment_has_its_schedule_and_parameters(prefect_api, served):
    expected = expected_deployments()
    assert len(expected) >= 7

    async def read_all(client):
        return await client.read_deployments()

    deployments = wait_for(
        lambda: (d := client_call(prefect_api["url"], read_all)) and len(d) >= len(expected) and d,
        90,
        what="all deployments registered",
    )
    by_name = {d.name: d for d in deployments}
    for entry, env in expected:
        d = by_name[entry.name]
        assert d.parameters["params"]["environment"] == env
        for key, value in entry.parameters.items():
            assert d.parameters["params"][key] == value, (entry.name, key)
        if entry.cron or entry.rrule:
            (sched,) = d.schedules
            if entry.cron:
                assert sched.schedule.cron == entry.cron and sched.schedule.timezone == "UTC", entry.name
            else:
                assert sched.schedule.rrule.replace("\n", " ").endswith("BYDAY=-1FR"), entry.name
        else:
            assert not d.schedules, entry.name
    assert "production" not in {env for _, env in expected}  # retargeted; production needs an opt-in


def test_an_ad_hoc_run_completes_with_artifacts(prefect_api, served):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_api["url"]}):
        run = run_deployment(
            "synthetic/synthetic-critical",
            parameters={"params": {"environment": "sandbox", "checks": ["chain-query", "market-query"], "rounds": 1}},
            timeout=180,
        )
    assert run.state.is_completed(), run.state

    async def artifacts(client):
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        return await client.read_artifacts(artifact_filter=flt)

    keys = {a.key for a in client_call(prefect_api["url"], artifacts)}
    assert {"synthetic-verdicts", "synthetic-criteria"} <= keys


def test_a_gameday_takes_the_team_inputs_through_the_api(prefect_api, served):
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_api["url"]}):
        run = run_deployment(
            "gameday/gameday-quarterly",
            parameters={"params": {"environment": "sandbox", "interactive": True, "duration": 12}},
            timeout=0,
        )

        async def state(client):
            return (await client.read_flow_run(run.id)).state

        wait_for(lambda: client_call(prefect_api["url"], state).type == StateType.PAUSED, 150, what="gameday paused")
        resume_flow_run(
            run.id,
            run_input={
                "incident_detected_min": 0.1,
                "oncall_paged_min": 0.2,
                "services_restored_min": 0.3,
                "root_cause": "primary database unreachable (injected)",
                "notes": "alert arrived before the first customer report",
                "runbooks_used": True,
            },
        )
        final = wait_for(
            lambda: (s := client_call(prefect_api["url"], state)).is_final() and s, 120, what="gameday finished"
        )
    assert final.is_completed(), final

    async def retro(client):
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["gameday-retrospective"]))
        )

    (artifact,) = client_call(prefect_api["url"], retro)[:1]
    assert "primary database unreachable (injected)" in artifact.data
    assert "incident detected" in artifact.data and "| team |" in artifact.data


def chromium(args: list[str], timeout: float = 120) -> str:
    """Run headless chromium in a session of its own; on a timeout its whole process group goes, helpers included."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by scripts/setup.sh")
def test_the_prefect_ui_shows_drillbit_deployments(prefect_api, served, tmp_path):
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "prefect-ui-deployments.png"
    base = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=20000", "--window-size=1400,900",
    ]  # fmt: skip
    url = f"{prefect_api['ui']}/deployments"
    count = f"{len(expected_deployments())} Deployments"
    # the page renders the list after its API calls return; a loaded machine may need another look
    dom = ""
    for _ in range(3):
        dom = chromium([*base, "--dump-dom", url])
        if count in dom:
            break
    chromium([*base, f"--screenshot={shot}", url])
    assert count in dom  # the UI read every calendar deployment from the server
    assert "chaos-pod-kill-6h" in dom and "dr-drill-quarterly" in dom  # first page, sorted by name
    assert shot.exists() and shot.stat().st_size > 20_000
