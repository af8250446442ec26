"""Every flow by its kebab-case name, as Prefect flow objects: the catalogue (drillbit/catalog.py) says where each
one lives; this module imports them. ``load(name)`` imports one flow module, ``FLOWS`` (built on first use) all."""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from typing import Any

from pydantic import BaseModel

from drillbit import catalog


@cache
def load(name: str) -> Any:
    """The Prefect flow object of one catalogue entry (imports only its module)."""
    spec = catalog.get(name)
    return getattr(importlib.import_module(spec.module), spec.function)


def params_model(flow: Any) -> type[BaseModel]:
    """The pydantic model of a flow's ``params`` argument, from its catalogue entry."""
    return catalog.params_model(flow.name)


def annotated_params(flow: Any) -> Any:
    """The model the flow function's ``params`` argument is annotated with (checked against the catalogue)."""
    ann = inspect.signature(flow.fn).parameters["params"].annotation
    if isinstance(ann, str):  # from __future__ annotations
        ann = flow.fn.__globals__[ann]
    return ann


def check() -> list[str]:
    """Where the flows and the catalogue disagree: a flow's name, or the model its ``params`` is annotated with."""
    problems = []
    for spec in catalog.CATALOG:
        flow = load(spec.name)
        if flow.name != spec.name:
            problems.append(f"{spec.entrypoint}: the flow is named {flow.name!r}, the catalogue says {spec.name!r}")
        if (ann := annotated_params(flow)) is not catalog.params_model(spec.name):
            problems.append(f"{spec.entrypoint}: params is {ann!r}, the catalogue says {spec.params}")
    return problems


def __getattr__(attr: str) -> Any:
    # FLOWS is built on first use, so that importing this module (for load) does not import every flow
    if attr == "FLOWS":
        return {name: load(name) for name in catalog.names()}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
