"""Resolve the environment a flow runs against (config + running sandbox), with safety checks, before anything runs."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from drillbit import client, config
from drillbit.client import VirtEngineClient
from drillbit.config import ResolvedEnvironment


@task(cache_policy=NO_CACHE, name="resolve-environment", retries=2, retry_delay_seconds=1)
def resolve_environment(
    name: str | None, config_path: str | None = None, destructive: bool = False
) -> ResolvedEnvironment:
    return config.load(config_path).environment(name, destructive=destructive)


def client_for(env: ResolvedEnvironment, timeout: float = 10.0) -> VirtEngineClient:
    return client.client_for(env, timeout)
