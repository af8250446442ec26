"""Session-wide fixtures for every test directory (unit, sandbox, integration)."""

from __future__ import annotations

import os

import pytest
from vesandbox import ports
from vesandbox.launcher import Layout

from tests.integration.helpers import HEALTHY_RUN_DIR, TEST_OFFSETS

# the sandbox component tests' own stacks (tests/sandbox: test_monitoring 500 / 600, test_storage 600 / 700)
COMPONENT_TEST_OFFSETS = (500, 600, 700)


@pytest.fixture(scope="session", autouse=True)
def reserved_test_ports():
    """Every test sandbox's ports stay out of the ephemeral range for the whole session, from its first test on, so
    that no client connection of an earlier test (the sandbox component tests' included: they run first and leave
    keep-alive connections) holds one as its source port when a later test starts its sandbox (each sandbox also
    reserves its own on up). A clean-clone run had the storage component tests refused with "ports in use:
    127.0.0.1:56042" (offset 600) after the integration tests."""
    owner = f"drillbit-tests-{os.getpid()}"
    offsets = [*TEST_OFFSETS, *COMPONENT_TEST_OFFSETS]
    wanted = {port for off in offsets for _, port, _ in Layout(HEALTHY_RUN_DIR, off).listeners()}
    ports.reserve(owner, wanted)
    try:
        yield
    finally:
        ports.release(owner)
