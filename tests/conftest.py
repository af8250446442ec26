"""Session-wide fixtures for every test directory (unit, sandbox, integration)."""

from __future__ import annotations

import os

import pytest
from vesandbox import ports
from vesandbox.launcher import Layout

from tests.integration.helpers import HEALTHY_RUN_DIR, TEST_OFFSETS


@pytest.fixture(scope="session", autouse=True)
def reserved_test_ports():
    """Every test sandbox's ports stay out of the ephemeral range for the whole session, from its first test on, so
    that no client connection of an earlier test (the sandbox component tests' included: they run first and leave
    keep-alive connections) holds one as its source port when a later test starts its sandbox (each sandbox also
    reserves its own on up)."""
    owner = f"drillbit-tests-{os.getpid()}"
    wanted = {port for off in TEST_OFFSETS for _, port, _ in Layout(HEALTHY_RUN_DIR, off).listeners()}
    ports.reserve(owner, wanted)
    try:
        yield
    finally:
        ports.release(owner)
