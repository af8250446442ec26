"""Session fixtures: one healthy sandbox and one Prefect test server for all integration tests that need them."""

from __future__ import annotations

import os

import pytest

from tests.integration.helpers import HEALTHY_OFFSET, HEALTHY_RUN_DIR, running_sandbox


@pytest.fixture(scope="session")
def sandbox():
    """The healthy sandbox (offset ports, own run dir); tests that break it must repair it."""
    with running_sandbox(HEALTHY_RUN_DIR, HEALTHY_OFFSET) as ep:
        yield ep


@pytest.fixture(scope="session")
def drillbit_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("drillbit-home")
    old = os.environ.get("DRILLBIT_HOME")
    os.environ["DRILLBIT_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("DRILLBIT_HOME", None)
    else:
        os.environ["DRILLBIT_HOME"] = old


@pytest.fixture(scope="session")
def prefect_server(sandbox, drillbit_home):
    """A temporary Prefect server for flow runs, with the sandbox as the default environment."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DRILLBIT_SANDBOX_DIR"] = str(HEALTHY_RUN_DIR)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
