"""The source of the provisioned dashboards in ``grafana/dashboards/*.json``.

``grafana/generate_dashboards.py`` writes them; ``render`` returns their text. Each dashboard is a
module with a ``build()``; they take every name from ``names``, their query text from ``queries``
and their panels from ``panels``, ``variables`` and ``board``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import compare, conversations, dropoff, overview, pipeline

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
#: File name -> the function building that dashboard.
DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "overview.json": overview.build,
    "dropoff.json": dropoff.build,
    "compare.json": compare.build,
    "conversations.json": conversations.build,
    "pipeline.json": pipeline.build,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def write(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard's JSON file into ``directory``; the paths written."""
    directory.mkdir(exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
