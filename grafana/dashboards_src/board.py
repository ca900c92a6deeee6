"""The dashboard shell: the grid layout, the shared links menu, annotations and time settings."""

from __future__ import annotations

from typing import Any

from .names import SCHEMA_VERSION, TAG

GRID_COLUMNS = 24


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels left to right, top to bottom, on Grafana's 24-column grid; number them."""
    x = y = line_height = 0
    placed = []
    for number, item in enumerate(panels, start=1):
        grid = item["gridPos"]
        width, height = grid["w"], grid.get("h", 1)
        if item["type"] == "row" or x + width > GRID_COLUMNS:
            x, y, line_height = 0, y + line_height, 0
        placed.append({"id": number, **item, "gridPos": {"h": height, "w": width, "x": x, "y": y}})
        if item["type"] == "row":
            y += 1
        else:
            x += width
            line_height = max(line_height, height)
    return placed


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    *,
    time_from: str = "now-7d",
) -> dict[str, Any]:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["30s", "1m", "5m", "15m", "1h"]},
        "refresh": "1m",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Conversation analytics",
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": layout(panels),
    }
