"""Where Drillbit keeps its state: ``$DRILLBIT_HOME`` (default ``~/.drillbit``)."""

from __future__ import annotations

import os
from pathlib import Path


def drillbit_home() -> Path:
    return Path(os.environ.get("DRILLBIT_HOME", str(Path.home() / ".drillbit")))
