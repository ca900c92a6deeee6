"""Writes the provisioned Grafana dashboards in ``grafana/dashboards/*.json``.

Run ``.venv/bin/python grafana/generate_dashboards.py`` after changing a panel. The dashboards'
source is the package ``dashboards_src`` beside this script (one module per dashboard);
``tests/test_grafana_dashboards.py`` fails when the JSON files and ``render()`` disagree, and runs
every ClickHouse query on chDB over demo data.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The package sits beside this script: importable when run as a script, and when a test loads
# this file by path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from dashboards_src import DASHBOARDS, DASHBOARDS_DIR, render, write  # noqa: E402

__all__ = ["DASHBOARDS", "DASHBOARDS_DIR", "main", "render"]


def main() -> int:
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
