"""Panel builders: query targets, colour thresholds, field overrides and the panel kinds used.

Each builder returns the JSON shape Grafana 11 provisions (schema version 39), with the defaults
the dashboards rely on spelled out; ``board.layout`` places the panels and numbers them.
"""

from __future__ import annotations

from textwrap import dedent
from typing import Any

from opentelemetry.exporter.conversation_analytics.analytics import (
    ASSISTANT_COMPLETION_TARGET,
    SUPPORT_COMPLETION_TARGET,
)

from .names import CLICKHOUSE, PLUGIN_VERSION, PROMETHEUS

# Targets the article names (SPEC section 4), spelled once in the exporter's analytics.
SUPPORT_TARGET = SUPPORT_COMPLETION_TARGET
ASSISTANT_TARGET = ASSISTANT_COMPLETION_TARGET


# ---- targets ------------------------------------------------------------------------------------


def sql_target(sql: str, *, table: bool = False, ref: str = "A") -> dict[str, Any]:
    return {
        "datasource": CLICKHOUSE,
        "editorType": "sql",
        "format": 1 if table else 0,
        "queryType": "table" if table else "timeseries",
        "pluginVersion": PLUGIN_VERSION,
        "rawSql": dedent(sql).strip(),
        "refId": ref,
    }


def prom_target(
    expr: str, legend: str = "__auto", *, ref: str = "A", instant: bool = False
) -> dict[str, Any]:
    return {
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "range": not instant,
        "legendFormat": legend,
        "refId": ref,
    }


# ---- colours ------------------------------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


NEUTRAL = thresholds((None, "blue"))
#: The article's target bands: general assistants 50-60 %, support agents 70-85 % completion.
TARGET_BANDS = thresholds(
    (None, "transparent"),
    (ASSISTANT_TARGET[0], "blue"),
    (ASSISTANT_TARGET[1], "transparent"),
    (SUPPORT_TARGET[0], "green"),
    (SUPPORT_TARGET[1], "transparent"),
)
COMPLETION_COLORS = thresholds(
    (None, "red"), (ASSISTANT_TARGET[0], "orange"), (SUPPORT_TARGET[0], "green")
)
BAD_WHEN_HIGH = thresholds((None, "green"), (20, "orange"), (35, "red"))
SATISFACTION_COLORS = thresholds((None, "red"), (0.5, "orange"), (0.7, "green"))


# ---- panels -------------------------------------------------------------------------------------


def override(field: str, **properties: Any) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": key.replace("__", "."), "value": v} for key, v in properties.items()],
    }


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    *,
    description: str,
    width: int,
    height: int,
    defaults: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    datasource = targets[0]["datasource"]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": {"w": width, "h": height},
        "targets": targets,
        "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
        "options": options or {},
        **extra,
    }


def stat(
    title: str,
    target: dict[str, Any],
    *,
    description: str,
    unit: str = "none",
    decimals: int | None = None,
    colors: dict[str, Any] = NEUTRAL,
    width: int = 3,
    height: int = 4,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "thresholds": colors, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return panel(
        "stat",
        title,
        [target],
        description=description,
        width=width,
        height=height,
        defaults=defaults,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "value",
        },
    )


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    *,
    description: str,
    unit: str = "none",
    bounds: tuple[float, float] | None = None,
    bands: dict[str, Any] | None = None,
    display_name: str | None = None,
    width: int = 12,
    height: int = 8,
    min_interval: str | None = None,
    relative_time: str | None = None,
    stack: bool = False,
    bars: bool = False,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 2,
        "fillOpacity": 60 if bars else 8,
        "showPoints": "never",
        "spanNulls": True,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "area" if bands else "off"},
    }
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": custom,
        "color": {"mode": "palette-classic"},
        "thresholds": bands or NEUTRAL,
    }
    if bounds is not None:
        defaults["min"], defaults["max"] = bounds
    if display_name is not None:
        defaults["displayName"] = display_name
    extra: dict[str, Any] = {}
    if min_interval:
        extra["interval"] = min_interval
    if relative_time:
        extra["timeFrom"] = relative_time
    return panel(
        "timeseries",
        title,
        targets,
        description=description,
        width=width,
        height=height,
        defaults=defaults,
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        **extra,
    )


def barchart(
    title: str,
    target: dict[str, Any],
    *,
    x_field: str,
    description: str,
    unit: str = "none",
    stack: bool = False,
    bounds: tuple[float, float] | None = None,
    width: int = 12,
    height: int = 8,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "thresholds": NEUTRAL,
        "custom": {"fillOpacity": 80, "lineWidth": 1, "gradientMode": "none"},
    }
    if bounds is not None:
        defaults["min"], defaults["max"] = bounds
    return panel(
        "barchart",
        title,
        [target],
        description=description,
        width=width,
        height=height,
        defaults=defaults,
        overrides=overrides or [],
        options={
            "xField": x_field,
            "orientation": "vertical",
            "stacking": "normal" if stack else "none",
            "showValue": "auto",
            "barWidth": 0.8,
            "groupWidth": 0.7,
            "xTickLabelRotation": 0,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    )


def table(
    title: str,
    target: dict[str, Any],
    *,
    description: str,
    overrides: list[dict[str, Any]],
    width: int = 24,
    height: int = 9,
) -> dict[str, Any]:
    return panel(
        "table",
        title,
        [target],
        description=description,
        width=width,
        height=height,
        defaults={
            "custom": {"align": "auto", "filterable": True, "cellOptions": {"type": "auto"}},
            "thresholds": NEUTRAL,
        },
        overrides=overrides,
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    )


def column(field: str, name: str, unit: str | None = None, **more: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"displayName": name}
    if unit is not None:
        properties["unit"] = unit
    properties.update(more)
    return override(field, **properties)


def colored(field: str, name: str, unit: str, steps: dict[str, Any]) -> dict[str, Any]:
    return column(
        field,
        name,
        unit,
        thresholds=steps,
        custom__cellOptions={"type": "color-text"},
    )


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24}}
