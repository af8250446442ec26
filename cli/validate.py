"""``drillbit validate PATH...``: check one's own Chaos Mesh v2 manifests before applying them — offline (CRD schema,
admission webhook, what Chaos Mesh refuses later, Drillbit's rules) and, with ``--env``, against that environment's
cluster. The checks are ``drillbit.manifests``'; this prints them.

Output: one line per problem or note, ``FILE[#DOC] KIND/NAME FIELD: REASON`` (``#DOC``, from 0, for files of several
documents), then a summary line. Exit 0 when there is no problem (notes are none), 1 when there is one, 2 with one
red line for a known error (a missing path, a folder without YAML, an unknown environment, an unreachable cluster).
"""

from __future__ import annotations

import typer

from cli.common import console, fail


def validate_cmd(
    paths: list[str] = typer.Argument(..., help="Manifest files or folders (folders: every *.yaml / *.yml within)"),
    env: str | None = typer.Option(
        None, "--env", help="Also check against this environment's cluster (a kubernetes environment in drillbit.yaml)"
    ),
    config_path: str | None = typer.Option(None, "--config", help="Path to drillbit.yaml"),
) -> None:
    """Check Chaos Mesh v2 manifests: one line per problem, then a summary; exit 1 if any problem."""
    from drillbit import manifests
    from drillbit.config import ConfigError
    from drillbit.faults.errors import FaultError

    try:
        report = manifests.validate_paths(paths)
        if env:
            manifests.check_cluster(report, _connection(env, config_path))
    except ConfigError as exc:
        raise fail(f"{exc.source}: {'; '.join(exc.problems)}") from None
    except (manifests.PathError, FaultError) as exc:
        raise fail(str(exc)) from None
    for line in report.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"[{'red' if report.errors else 'green'}]{report.summary()}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if report.errors else 0)


def _connection(env: str, config_path: str | None):
    """How to reach the cluster of environment ``env`` (a kubernetes one)."""
    from drillbit import config as cfg
    from drillbit.faults.platform.kubernetes import KubeConnection

    config = cfg.load(config_path)
    spec = config.environments.get(env)
    if spec is not None and spec.platform != "kubernetes":  # checked first: resolving a sandbox needs it running
        raise fail(f"environment {env!r} is on platform {spec.platform}; --env needs a kubernetes environment")
    return KubeConnection.for_environment(config.environment(env).spec.kubernetes)
