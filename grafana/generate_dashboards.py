"""Writes the provisioned Grafana dashboards in ``grafana/dashboards/*.json``.

Run ``.venv/bin/python grafana/generate_dashboards.py`` after changing a panel. The JSON files are
what Grafana provisions; this script is their source, so every panel's SQL is written once: the
per-conversation merge of the rollup takes its merge functions from the product's own
``ROLLUP_COLUMNS`` and the satisfaction score is the product's ``SATISFACTION_EXPR``, so a schema
change cannot leave a dashboard merging an aggregate state the wrong way.
``tests/test_grafana_dashboards.py`` fails when the JSON files and this script disagree, and runs
every ClickHouse query below on chDB over demo data.

Conventions the queries follow (the ClickHouse plugin, grafana-clickhouse-datasource v4):
- template variables agent / channel / model / prompt_version are multi-select with an "All" whose
  value is ``.*`` (a regex for the Prometheus panels); in SQL each is only used inside
  ``$__conditionalAll(column IN (${var:singlequote}), $var)``, which the plugin turns into ``1=1``
  when All is selected, so ``.*`` never reaches ClickHouse;
- rates, turns, durations and satisfaction read the per-conversation, per-hour rollup, merged per
  conversation over the hours that overlap the dashboard's time range; only the conversation
  timeline, "what happened just before people left" and the pipeline's store panels read raw
  events;
- a conversation is placed in time by its first event in the range (``first_seen``); time series
  use buckets of at least one hour (the rollup's grain).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from textwrap import dedent
from typing import Any
from urllib.parse import quote

from opentelemetry.exporter.conversation_analytics.store.sql import (
    DECIMAL_SCALE,
    ROLLUP_COLUMNS,
    SATISFACTION_EXPR,
)

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
PLUGIN_ID = "grafana-clickhouse-datasource"
#: The plugin version docker-compose installs; the macros used behave the same from 4.5 to 4.20.
PLUGIN_VERSION = "4.5.1"
CLICKHOUSE: dict[str, str] = {"type": PLUGIN_ID, "uid": "clickhouse"}
PROMETHEUS: dict[str, str] = {"type": "prometheus", "uid": "prometheus"}
TAG = "conversation-analytics"
SCHEMA_VERSION = 39

DATABASE = "conversation_analytics"
ROLLUP = f"{DATABASE}.conversation_rollup"
EVENTS = f"{DATABASE}.conversation_events"

#: Merge expression of each rollup column (``sum(user_messages)``, ``max(...)``).
MERGE: dict[str, str] = {column.name: column.merge for column in ROLLUP_COLUMNS}
#: The per-conversation satisfaction of SPEC section 4, on one line.
SATISFACTION = " ".join(SATISFACTION_EXPR.split())
#: An inferred abandonment stands only while the user has not come back (as the report does).
WAS_ABANDONED = (
    "toUInt8(explicit_abandoned = 1 OR (inferred_abandoned_at IS NOT NULL AND "
    "(last_activity IS NULL OR inferred_abandoned_at >= last_activity)))"
)
#: Cheap merges (min/max) every per-conversation row carries: times, outcome flags, filters.
BASE_COLUMNS: tuple[str, ...] = (
    "first_seen",
    "last_seen",
    "started_at",
    "completed_at",
    "was_completed",
    "explicit_abandoned",
    "inferred_abandoned_at",
    "last_activity",
    "had_handoff",
    "channel",
    "request_model",
    "response_model",
    "prompt_version",
)
#: Event counts (sums), added only where a query uses them.
COUNTED_COLUMNS: tuple[str, ...] = (
    "user_messages",
    "rephrases",
    "tool_calls",
    "tool_errors",
    "positive_feedback",
    "negative_feedback",
)

# Targets the article names (SPEC section 4).
SUPPORT_TARGET = (70, 85)
ASSISTANT_TARGET = (50, 60)
#: Week-over-week change at or below which the Compare tables turn red (values have 1 decimal).
WOW_ALERT = -4.9


# ---- SQL fragments ------------------------------------------------------------------------------


def cond_all(column: str, variable: str) -> str:
    """``column IN (selected values)``, or ``1=1`` when the variable is on All (plugin macro)."""
    return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


FILTER_DIMENSIONS = (
    cond_all("channel", "channel"),
    cond_all("model", "model"),
    cond_all("prompt_version", "prompt_version"),
)


def conversations(
    columns: Iterable[str] = (),
    *,
    since: str = "$__fromTime",
    flags: Sequence[str] = (),
    derived: Sequence[str] = (),
    where: str | None = None,
    filtered: bool = True,
) -> str:
    """One merged row per conversation that has rollup rows in the hours overlapping the range.

    ``since`` widens the read to earlier hours (week-over-week); ``flags`` adds per-conversation
    aggregates over the rollup rows, ``derived`` expressions over the merged row; ``where``
    replaces the time and agent condition.
    """
    merges = [f"{MERGE[name]} AS {name}" for name in (*BASE_COLUMNS, *columns)]
    selected = ",\n        ".join([*merges, *flags])
    condition = where or (
        f"bucket > {since} - INTERVAL 1 HOUR AND bucket <= $__toTime\n"
        f"      AND {cond_all('agent_name', 'agent')}"
    )
    outer = "\nWHERE " + "\n  AND ".join(FILTER_DIMENSIONS) if filtered else ""
    computed = ",\n    ".join(
        [
            f"{WAS_ABANDONED} AS was_abandoned",
            "if(response_model != '', response_model, request_model) AS model",
            *derived,
        ]
    )
    return f"""SELECT *,
    {computed}
FROM (
    SELECT agent_name, conversation_id,
        {selected}
    FROM {ROLLUP}
    WHERE {condition}
    GROUP BY agent_name, conversation_id
){outer}"""


def indent(sql: str, spaces: int = 4) -> str:
    pad = " " * spaces
    return sql.replace("\n", "\n" + pad)


def time_bucket(minimum_seconds: int = 3600, column: str = "first_seen") -> str:
    """Grafana's interval, but never finer than the rollup's hour."""
    return (
        f"toStartOfInterval({column}, toIntervalSecond(greatest($__interval_s, {minimum_seconds})))"
    )


def ratio(numerator: str, denominator: str, places: int) -> str:
    """``numerator / denominator`` in exact decimals, rounded half away from zero (NULL on 0).

    The report's rounding rule: ClickHouse rounds a ``Decimal`` half away from zero as
    PostgreSQL does, while a ``Float64`` would round half to even and drift with summation order.
    """
    return (
        f"round(toDecimal128({numerator}, {DECIMAL_SCALE}) / nullIf({denominator}, 0), {places})"
    )


def mean(expression: str, places: int) -> str:
    """The mean of an integer or decimal ``expression`` over the rows, rounded as the report."""
    return ratio(f"sum({expression})", "count()", places)


def pct(condition: str, among: str = "") -> str:
    """Percent of conversations (optionally among those matching ``among``), 1 decimal."""
    if among:
        return ratio(f"100 * countIf({among} AND {condition})", f"countIf({among})", 1)
    return ratio(f"100 * countIf({condition})", "count()", 1)


COMPLETED = "was_completed = 1"
ABANDONED = "was_abandoned = 1"
HANDOFF = "had_handoff = 1"
TIMED = "started_at IS NOT NULL AND completed_at IS NOT NULL"
DURATION_US = "dateDiff('microsecond', started_at, completed_at)"
#: Mean duration in whole seconds over timed conversations, as the report rounds it.
AVG_DURATION_S = ratio(f"sumIf({DURATION_US}, {TIMED})", f"1000000 * countIf({TIMED})", 0)
OUTCOME = (
    "multiIf(was_completed = 1 AND had_handoff = 1, 'completed after handoff', "
    "was_completed = 1, 'completed', was_abandoned = 1, 'abandoned', "
    "had_handoff = 1, 'handed off', 'open')"
)


def over_conversations(
    select: str,
    tail: str = "",
    *,
    project: str | None = None,
    keep: str | None = None,
    **kwargs: Any,
) -> str:
    """``SELECT select FROM (conversations) tail``; ``project`` (and ``keep``, its WHERE) adds a
    per-conversation projection in between (one row per turn, per abandonment, ...)."""
    if "columns" not in kwargs:
        used = " ".join([select, tail, project or "", keep or ""])
        kwargs["columns"] = [c for c in COUNTED_COLUMNS if re.search(rf"\b{c}\b", used)]
    source = conversations(**kwargs)
    if project is not None:
        source = f"SELECT {project}\nFROM (\n    {indent(source)}\n)"
        if keep is not None:
            source += f"\nWHERE {keep}"
    body = f"SELECT {select}\nFROM (\n    {indent(source)}\n)"
    return body + (f"\n{tail}" if tail else "")


# ---- PromQL fragments ---------------------------------------------------------------------------

PROM_FILTERS = {
    "agent": 'agent=~"$agent"',
    "channel": 'channel=~"$channel"',
    "prompt_version": 'prompt_version=~"$prompt_version"',
    "model": 'model=~"$model"',
}
#: Labels of the series known from a conversation's start, and of the outcome series (+ model).
START_LABELS = ("agent", "channel", "prompt_version")
OUTCOME_LABELS = (*START_LABELS, "model")


def series(metric: str, labels: Sequence[str], *extra: str) -> str:
    matchers = [PROM_FILTERS[label] for label in labels] + list(extra)
    return metric + "{" + ",".join(matchers) + "}"


# ---- panels -------------------------------------------------------------------------------------


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
COMPLETION_COLORS = thresholds((None, "red"), (ASSISTANT_TARGET[0], "orange"), (70, "green"))
BAD_WHEN_HIGH = thresholds((None, "green"), (20, "orange"), (35, "red"))
SATISFACTION_COLORS = thresholds((None, "red"), (0.5, "orange"), (0.7, "green"))


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
    width: int = 12,
    height: int = 8,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return panel(
        "barchart",
        title,
        [target],
        description=description,
        width=width,
        height=height,
        defaults={
            "unit": unit,
            "color": {"mode": "palette-classic"},
            "thresholds": NEUTRAL,
            "custom": {"fillOpacity": 80, "lineWidth": 1, "gradientMode": "none"},
        },
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


# ---- variables ----------------------------------------------------------------------------------


def query_variable(name: str, label: str, sql: str, description: str) -> dict[str, Any]:
    sql = dedent(sql).strip()
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": CLICKHOUSE,
        "definition": sql,
        "query": {"editorType": "sql", "rawSql": sql, "format": 1},
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "regex": "",
        "hide": 0,
        "skipUrlSync": False,
    }


def distinct_values(expression: str) -> str:
    return f"""SELECT DISTINCT {expression} AS value
FROM {ROLLUP}
WHERE $__timeFilter(bucket) AND value != ''
ORDER BY value"""


FILTER_VARIABLES = [
    query_variable(
        "agent",
        "Agent",
        distinct_values("agent_name"),
        "gen_ai.agent.name of the conversations in the time range",
    ),
    query_variable(
        "channel",
        "Channel",
        distinct_values("channel"),
        "conversation.channel (from conversation.started)",
    ),
    query_variable(
        "model",
        "Model",
        distinct_values("if(response_model != '', response_model, request_model)"),
        "gen_ai.response.model, else gen_ai.request.model",
    ),
    query_variable(
        "prompt_version",
        "Prompt version",
        distinct_values("prompt_version"),
        "conversation.prompt.version (A/B comparison)",
    ),
]


def textbox(name: str, label: str, default: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "textbox",
        "query": default,
        "current": {"selected": False, "text": default, "value": default},
        "options": [{"selected": True, "text": default, "value": default}],
        "hide": 0,
        "skipUrlSync": False,
    }


# ---- dashboards ---------------------------------------------------------------------------------


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels left to right, top to bottom, on Grafana's 24-column grid; number them."""
    x = y = line_height = 0
    placed = []
    for number, item in enumerate(panels, start=1):
        grid = item["gridPos"]
        width, height = grid["w"], grid.get("h", 1)
        if item["type"] == "row" or x + width > 24:
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


def overview() -> dict[str, Any]:
    def glance(
        title: str, expression: str, key: str, description: str, **kwargs: Any
    ) -> dict[str, Any]:
        target = sql_target(over_conversations(f"{expression} AS {key}"), table=True)
        return stat(title, target, description=description, **kwargs)

    per_hour = time_bucket()
    panels = [
        row("At a glance (ClickHouse, the dashboard's time range)"),
        glance(
            "Conversations",
            "count()",
            "total_conversations",
            "Conversations with any event in the time range.",
        ),
        glance(
            "Completion rate",
            pct(COMPLETED),
            "completion_rate",
            "Share of conversations with a conversation.completed event. Targets from the "
            "article: support agents 70-85 %, general assistants 50-60 %.",
            unit="percent",
            colors=COMPLETION_COLORS,
        ),
        glance(
            "Abandonment rate",
            pct(ABANDONED),
            "abandonment_rate",
            "Share of conversations abandoned (explicitly, or inferred from inactivity and not "
            "revoked by the user coming back).",
            unit="percent",
            colors=BAD_WHEN_HIGH,
        ),
        glance(
            "Handoff rate",
            pct(HANDOFF),
            "handoff_rate",
            "Share of conversations escalated to a human.",
            unit="percent",
            colors=BAD_WHEN_HIGH,
        ),
        glance(
            "Avg turns",
            mean("user_messages", 1),
            "avg_turns",
            "Mean number of user messages per conversation.",
            decimals=1,
        ),
        glance(
            "Avg duration",
            AVG_DURATION_S,
            "avg_duration_seconds",
            "Mean time from conversation.started to conversation.completed, over conversations "
            "that have both.",
            unit="s",
        ),
        glance(
            "Avg satisfaction",
            mean(SATISFACTION, 3),
            "avg_satisfaction",
            "Mean per-conversation satisfaction (0..1): explicit feedback, the outcome signal "
            "and the rephrase/turn-count signal, as in SPEC section 4.",
            decimals=3,
            colors=SATISFACTION_COLORS,
        ),
        glance(
            "Rephrase rate",
            ratio("100 * sum(rephrases)", "sum(user_messages)", 1),
            "rephrase_rate",
            "Share of user messages that rephrase the previous one (a sign of not being "
            "understood).",
            unit="percent",
            colors=BAD_WHEN_HIGH,
        ),
        row("History (ClickHouse)"),
        timeseries(
            "Conversations by agent",
            [
                sql_target(
                    over_conversations(
                        f"{per_hour} AS time, agent_name AS agent, count() AS conversations",
                        "GROUP BY time, agent\nORDER BY time, agent",
                    )
                )
            ],
            description="Conversations by the time of their first event in the range.",
            display_name="${__field.labels.agent}",
            min_interval="1h",
            bars=True,
            stack=True,
        ),
        timeseries(
            "Completion rate by agent, with target bands",
            [
                sql_target(
                    over_conversations(
                        f"{per_hour} AS time, agent_name AS agent, "
                        f"{pct(COMPLETED)} AS completion_rate",
                        "GROUP BY time, agent\nORDER BY time, agent",
                    )
                )
            ],
            description="Completion rate of the conversations that began in each interval. "
            "Shaded: the article's targets, general assistants 50-60 % (blue) and support "
            "agents 70-85 % (green).",
            unit="percent",
            bounds=(0, 100),
            bands=TARGET_BANDS,
            display_name="${__field.labels.agent}",
            min_interval="1h",
        ),
        timeseries(
            "Abandonment and handoff rates",
            [
                sql_target(
                    over_conversations(
                        f"{per_hour} AS time, {pct(ABANDONED)} AS abandonment_rate, "
                        f"{pct(HANDOFF)} AS handoff_rate",
                        "GROUP BY time\nORDER BY time",
                    )
                )
            ],
            description="Share of the conversations that began in each interval and were "
            "abandoned / handed to a human.",
            unit="percent",
            bounds=(0, 100),
            min_interval="1h",
        ),
        timeseries(
            "Satisfaction by agent",
            [
                sql_target(
                    over_conversations(
                        f"{per_hour} AS time, agent_name AS agent, "
                        f"{mean(SATISFACTION, 3)} AS satisfaction",
                        "GROUP BY time, agent\nORDER BY time, agent",
                    )
                )
            ],
            description="Mean per-conversation satisfaction (0..1) of the conversations that "
            "began in each interval.",
            bounds=(0, 1),
            display_name="${__field.labels.agent}",
            min_interval="1h",
        ),
        barchart(
            "Turns per conversation",
            sql_target(
                over_conversations(
                    "if(user_messages >= 15, '15+', toString(user_messages)) AS turns, "
                    "count() AS conversations",
                    "GROUP BY turns\nORDER BY min(user_messages)",
                ),
                table=True,
            ),
            x_field="turns",
            description="How many user messages conversations take.",
        ),
        barchart(
            "Duration to completion",
            sql_target(
                over_conversations(
                    "multiIf(d < 15, '< 15 s', d < 30, '15-30 s', d < 60, '30-60 s', "
                    "d < 120, '1-2 min', d < 300, '2-5 min', d < 600, '5-10 min', "
                    "d < 1800, '10-30 min', d < 3600, '30-60 min', '1 h +') AS duration, "
                    "count() AS conversations",
                    "GROUP BY duration\nORDER BY min(d)",
                    project="dateDiff('second', started_at, completed_at) AS d",
                    keep=TIMED,
                ),
                table=True,
            ),
            x_field="duration",
            description="Time from conversation.started to conversation.completed.",
        ),
        row("Live (Prometheus)"),
        timeseries(
            "Conversations started per hour",
            [
                prom_target(
                    "sum by (agent) (rate("
                    + series("agent_conversations_started_total", START_LABELS)
                    + "[$__rate_interval])) * 3600",
                    "{{agent}}",
                )
            ],
            description="Live rate from the exporter's counters (model filter does not apply: "
            "the series has no model label).",
            unit="short",
            width=8,
            relative_time="6h",
        ),
        timeseries(
            "Outcomes per hour",
            [
                prom_target(
                    "sum(rate("
                    + series("agent_conversations_completed_total", OUTCOME_LABELS)
                    + "[$__rate_interval])) * 3600",
                    "completed",
                ),
                prom_target(
                    "sum(rate("
                    + series("agent_conversations_abandoned_total", OUTCOME_LABELS)
                    + "[$__rate_interval])) * 3600",
                    "abandoned",
                    ref="B",
                ),
                prom_target(
                    "sum(rate("
                    + series("agent_conversation_handoffs_total", OUTCOME_LABELS)
                    + "[$__rate_interval])) * 3600",
                    "handoff",
                    ref="C",
                ),
            ],
            description="Completed, abandoned and handed-off conversations per hour.",
            unit="short",
            width=8,
            relative_time="6h",
        ),
        timeseries(
            "Completion rate, last hour",
            [
                prom_target(
                    "100 * sum by (agent) (increase("
                    + series("agent_conversations_completed_total", START_LABELS)
                    + "[1h])) / sum by (agent) (increase("
                    + series("agent_conversations_started_total", START_LABELS)
                    + "[1h]))",
                    "{{agent}}",
                )
            ],
            description="Completed / started over a sliding hour, with the article's target "
            "bands (model filter does not apply).",
            unit="percent",
            bounds=(0, 100),
            bands=TARGET_BANDS,
            width=8,
            relative_time="6h",
        ),
        timeseries(
            "Turns per finished conversation, last hour",
            [
                prom_target(
                    "histogram_quantile(0.5, sum by (le) (rate("
                    + series("agent_conversation_turns_bucket", OUTCOME_LABELS)
                    + "[1h])))",
                    "p50",
                ),
                prom_target(
                    "histogram_quantile(0.9, sum by (le) (rate("
                    + series("agent_conversation_turns_bucket", OUTCOME_LABELS)
                    + "[1h])))",
                    "p90",
                    ref="B",
                ),
            ],
            description="Quantiles of the turns histogram (observed when a conversation "
            "completes or is abandoned).",
            width=12,
            relative_time="6h",
        ),
        timeseries(
            "Satisfaction, last hour",
            [
                prom_target(
                    "sum by (agent) (rate("
                    + series("agent_conversation_satisfaction_sum", OUTCOME_LABELS)
                    + "[1h])) / sum by (agent) (rate("
                    + series("agent_conversation_satisfaction_count", OUTCOME_LABELS)
                    + "[1h]))",
                    "{{agent}}",
                )
            ],
            description="Mean satisfaction of the conversations finished in the last hour.",
            bounds=(0, 1),
            width=12,
            relative_time="6h",
        ),
    ]
    return dashboard(
        "ca-overview",
        "Conversation analytics / Overview",
        "Did conversations succeed, how many turns did they take, how satisfied were users: "
        "history from ClickHouse beside live rates from Prometheus.",
        panels,
        FILTER_VARIABLES,
    )


def dropoff() -> dict[str, Any]:
    # Abandoned events are few: read them raw (each once), keep an inferred one only while no
    # later activity revoked it, and filter by the merged conversation's dimensions.
    by_turn = f"""SELECT if(isNull(turn_n), 'unknown', toString(turn_n)) AS turn,
    countIf(NOT is_inferred) AS explicit, countIf(is_inferred) AS inferred
FROM (
    SELECT a.abandoned_at_turn AS turn_n, a.abandon_inferred AS is_inferred
    FROM (
        SELECT event_id, agent_name, conversation_id, abandoned_at_turn, abandon_inferred,
            timestamp
        FROM {EVENTS}
        WHERE $__timeFilter(timestamp) AND event_type = 'abandoned'
          AND {cond_all("agent_name", "agent")}
        LIMIT 1 BY event_id
    ) AS a
    INNER JOIN (
        {indent(conversations(), 8)}
    ) AS c ON a.agent_name = c.agent_name AND a.conversation_id = c.conversation_id
    WHERE NOT a.abandon_inferred OR c.last_activity IS NULL OR a.timestamp >= c.last_activity
)
GROUP BY turn_n
ORDER BY turn_n ASC NULLS LAST"""
    turns_reached = (
        "arrayJoin(range(1, toUInt64(least(user_messages, 30)) + 1)) AS n,\n"
        "    user_messages, was_completed, was_abandoned, had_handoff"
    )
    funnel = over_conversations(
        "n AS turn, count() AS reached,\n"
        f"    {ratio('100 * count()', 'max(count()) OVER ()', 1)} AS reached_pct,\n"
        "    countIf(user_messages = n) AS ended_here,\n"
        "    countIf(user_messages = n AND was_completed = 1) AS completed_here,\n"
        "    countIf(user_messages = n AND was_abandoned = 1) AS abandoned_here,\n"
        "    countIf(user_messages = n AND had_handoff = 1) AS handed_off_here",
        "GROUP BY n\nORDER BY n",
        project=turns_reached,
    )
    funnel_chart = over_conversations(
        "toString(n) AS turn, count() AS reached",
        "GROUP BY n\nORDER BY n",
        project=turns_reached,
    )
    before_leaving = f"""SELECT last_event, last_tool, handoff,
    countIf(NOT is_inferred) AS explicit, countIf(is_inferred) AS inferred,
    count() AS abandoned, {mean("at_turn", 1)} AS avg_turn
FROM (
    SELECT agent_name, conversation_id,
        argMaxIf(abandon_inferred, (timestamp, event_id), event_type = 'abandoned') AS is_inferred,
        argMaxIf(abandoned_at_turn, (timestamp, event_id), event_type = 'abandoned') AS at_turn,
        maxIf(timestamp, event_type = 'abandoned') AS left_at,
        maxIf(timestamp, event_type != 'abandoned') AS last_other_at,
        argMaxIf(event_type, (timestamp, event_id),
                 event_type NOT IN ('abandoned', 'feedback_received')) AS last_event,
        if(countIf(event_type = 'tool_called') = 0, '(no tool)',
           argMaxIf(concat(tool_name, if(error_type != '', concat(' (failed: ', error_type, ')'),
                    '')), (timestamp, event_id), event_type = 'tool_called')) AS last_tool,
        if(countIf(event_type = 'handoff_requested') > 0, 'yes', 'no') AS handoff,
        max(channel) AS conversation_channel,
        max(prompt_version) AS conversation_prompt_version,
        if(max(response_model) != '', max(response_model), max(request_model))
            AS conversation_model
    FROM {EVENTS}
    WHERE $__timeFilter(timestamp)
      AND {cond_all("agent_name", "agent")}
      AND conversation_id IN (
        SELECT conversation_id FROM {EVENTS}
        WHERE $__timeFilter(timestamp) AND event_type = 'abandoned'
      )
    GROUP BY agent_name, conversation_id
    HAVING countIf(event_type = 'abandoned') > 0 AND (NOT is_inferred OR last_other_at <= left_at)
)
WHERE {cond_all("conversation_channel", "channel")}
  AND {cond_all("conversation_model", "model")}
  AND {cond_all("conversation_prompt_version", "prompt_version")}
GROUP BY last_event, last_tool, handoff
ORDER BY abandoned DESC, last_event, last_tool, handoff
LIMIT 20"""
    panels = [
        row("Who left (ClickHouse, the dashboard's time range)"),
        stat(
            "Abandoned conversations",
            sql_target(over_conversations(f"countIf({ABANDONED}) AS abandoned"), table=True),
            description="Conversations abandoned explicitly or (inferred) after inactivity.",
            width=6,
        ),
        stat(
            "Abandonment rate",
            sql_target(over_conversations(f"{pct(ABANDONED)} AS abandonment_rate"), table=True),
            description="Share of conversations abandoned.",
            unit="percent",
            colors=BAD_WHEN_HIGH,
            width=6,
        ),
        stat(
            "Explicit",
            sql_target(
                over_conversations("countIf(explicit_abandoned = 1) AS explicit"), table=True
            ),
            description="Conversations with an explicit conversation.abandoned event.",
            width=6,
        ),
        stat(
            "Inferred from inactivity",
            sql_target(
                over_conversations(f"countIf({ABANDONED} AND explicit_abandoned = 0) AS inferred"),
                table=True,
            ),
            description="Conversations the collector found idle (no outcome) and marked "
            "abandoned; a user who comes back revokes it.",
            width=6,
        ),
        barchart(
            "Abandonment by turn",
            sql_target(by_turn, table=True),
            x_field="turn",
            stack=True,
            description="conversation.abandoned events per abandoned_at_turn (the report's "
            "drop-off), explicit and inferred.",
        ),
        barchart(
            "Funnel: conversations reaching turn N",
            sql_target(funnel_chart, table=True),
            x_field="turn",
            description="How many conversations got at least N user messages in (capped at 30).",
        ),
        table(
            "Funnel by turn",
            sql_target(funnel, table=True),
            description="Per turn: how many conversations reached it, and how many ended there "
            "- completed, abandoned or handed off.",
            overrides=[
                column("turn", "Turn"),
                column("reached", "Reached"),
                column("reached_pct", "% of conversations", "percent"),
                column("ended_here", "Ended here"),
                column("completed_here", "Completed here"),
                column("abandoned_here", "Abandoned here"),
                column("handed_off_here", "Handed off here"),
            ],
            width=12,
        ),
        table(
            "Just before people left",
            sql_target(before_leaving, table=True),
            description="Abandoned conversations grouped by their last step before leaving "
            "(last event other than feedback), the last tool called (and whether it failed) "
            "and whether a handoff was requested; explicit vs inferred abandonment.",
            overrides=[
                column("last_event", "Last event"),
                column("last_tool", "Last tool"),
                column("handoff", "Handoff"),
                column("explicit", "Explicit"),
                column("inferred", "Inferred"),
                column("abandoned", "Abandoned"),
                column("avg_turn", "Avg turn left", decimals=1),
            ],
            width=12,
        ),
        timeseries(
            "Abandonment rate by agent",
            [
                sql_target(
                    over_conversations(
                        f"{time_bucket()} AS time, agent_name AS agent, "
                        f"{pct(ABANDONED)} AS abandonment_rate",
                        "GROUP BY time, agent\nORDER BY time, agent",
                    )
                )
            ],
            description="Share of the conversations that began in each interval and were "
            "abandoned.",
            unit="percent",
            bounds=(0, 100),
            display_name="${__field.labels.agent}",
            min_interval="1h",
            width=24,
        ),
        row("Live (Prometheus)"),
        timeseries(
            "Abandonments per hour, explicit vs inferred",
            [
                prom_target(
                    "sum by (inferred) (rate("
                    + series("agent_conversations_abandoned_total", OUTCOME_LABELS)
                    + "[$__rate_interval])) * 3600",
                    "inferred={{inferred}}",
                )
            ],
            description="Live abandonments from the exporter's counters.",
            unit="short",
            relative_time="6h",
        ),
        timeseries(
            "Turn at abandonment, last hour",
            [
                prom_target(
                    "histogram_quantile(0.5, sum by (le) (rate("
                    + series("agent_conversation_abandoned_at_turn_bucket", OUTCOME_LABELS)
                    + "[1h])))",
                    "p50",
                ),
                prom_target(
                    "histogram_quantile(0.9, sum by (le) (rate("
                    + series("agent_conversation_abandoned_at_turn_bucket", OUTCOME_LABELS)
                    + "[1h])))",
                    "p90",
                    ref="B",
                ),
            ],
            description="Quantiles of the abandoned-at-turn histogram.",
            relative_time="6h",
        ),
        timeseries(
            "Tool error ratio, last hour",
            [
                prom_target(
                    "sum by (tool) (rate(agent_conversation_tool_calls_total"
                    '{agent=~"$agent",outcome="error"}[1h])) / sum by (tool) '
                    '(rate(agent_conversation_tool_calls_total{agent=~"$agent"}[1h]))',
                    "{{tool}}",
                )
            ],
            description="Share of tool calls that failed, per tool: failing tools are a "
            "common reason to give up.",
            unit="percentunit",
            bounds=(0, 1),
            relative_time="6h",
            width=24,
        ),
    ]
    return dashboard(
        "ca-dropoff",
        "Conversation analytics / Drop-off",
        "Where people give up: abandonment by turn, the turn funnel, and what happened just "
        "before they left.",
        panels,
        FILTER_VARIABLES,
    )


def compare() -> dict[str, Any]:
    weeks = (
        "toUInt8(first_seen >= $__toTime - INTERVAL 7 DAY) AS this_week",
        "toUInt8(first_seen >= $__toTime - INTERVAL 14 DAY "
        "AND first_seen < $__toTime - INTERVAL 7 DAY) AS last_week",
    )
    since = "least($__fromTime, $__toTime - INTERVAL 14 DAY)"

    def breakdown(expression: str, key: str, name: str) -> dict[str, Any]:
        # The range's numbers merge only the range's hours (as the report does, a conversation
        # straddling the range's start counts with its events inside it); week over week reads
        # the two weeks before the range's end, in a second pass joined on the key.
        in_range = over_conversations(
            f"""{expression} AS {key},
    count() AS conversations,
    {pct(COMPLETED)} AS completion_rate,
    {pct(ABANDONED)} AS abandonment_rate,
    {pct(HANDOFF)} AS handoff_rate,
    {mean("user_messages", 1)} AS avg_turns,
    {AVG_DURATION_S} AS avg_duration_seconds,
    {mean(SATISFACTION, 3)} AS avg_satisfaction""",
            f"GROUP BY {key}",
        )
        by_week = over_conversations(
            f"""{expression} AS {key},
    {pct(COMPLETED, "this_week = 1")} AS completion_this_week,
    {pct(COMPLETED, "last_week = 1")} AS completion_last_week""",
            f"GROUP BY {key}\nHAVING countIf(this_week = 1) > 0",
            since=since,
            derived=weeks,
        )
        sql = f"""SELECT {key},
    ifNull(r.conversations, 0) AS conversations,
    r.completion_rate AS completion_rate,
    r.abandonment_rate AS abandonment_rate,
    r.handoff_rate AS handoff_rate,
    r.avg_turns AS avg_turns,
    r.avg_duration_seconds AS avg_duration_seconds,
    r.avg_satisfaction AS avg_satisfaction,
    w.completion_this_week AS completion_this_week,
    w.completion_last_week AS completion_last_week,
    round(completion_this_week - completion_last_week, 1) AS completion_wow_pts,
    {ratio("100 * (completion_this_week - completion_last_week)",
           "toDecimal64(completion_last_week, 1)", 1)} AS completion_wow_pct
FROM (
    {indent(in_range)}
) AS r
FULL OUTER JOIN (
    {indent(by_week)}
) AS w USING ({key})
ORDER BY conversations DESC, {key}
SETTINGS join_use_nulls = 1"""
        wow = thresholds((None, "red"), (WOW_ALERT, "text"))
        return table(
            f"By {name}",
            sql_target(sql, table=True),
            description=f"Per {name} over the time range: counts, rates, turns, duration and "
            "satisfaction. Week over week: completion rate of conversations that began in the "
            "7 days before the range's end against the 7 days before that (red: a drop of 5 % "
            "or more, the article's alert signal).",
            overrides=[
                column(key, name.capitalize()),
                column("conversations", "Conversations"),
                colored("completion_rate", "Completion", "percent", COMPLETION_COLORS),
                colored("abandonment_rate", "Abandonment", "percent", BAD_WHEN_HIGH),
                colored("handoff_rate", "Handoff", "percent", BAD_WHEN_HIGH),
                column("avg_turns", "Avg turns", decimals=1),
                column("avg_duration_seconds", "Avg duration", "s"),
                colored("avg_satisfaction", "Satisfaction", "none", SATISFACTION_COLORS),
                column("completion_this_week", "Completion, last 7 d", "percent"),
                column("completion_last_week", "Completion, 7 d before", "percent"),
                colored("completion_wow_pts", "WoW (points)", "none", wow),
                colored("completion_wow_pct", "WoW (%)", "percent", wow),
            ],
            height=7,
        )

    def over_time(dimension: str, name: str) -> dict[str, Any]:
        return timeseries(
            f"Completion rate by {name}",
            [
                sql_target(
                    over_conversations(
                        f"{time_bucket(6 * 3600)} AS time, "
                        f"if({dimension} = '', '(none)', {dimension}) AS {name.replace(' ', '_')}"
                        f", {pct(COMPLETED)} AS completion_rate",
                        f"GROUP BY time, {name.replace(' ', '_')}\n"
                        f"ORDER BY time, {name.replace(' ', '_')}",
                    )
                )
            ],
            description=f"Completion rate of the conversations that began in each interval "
            f"(at least 6 h), per {name}, with the article's target bands.",
            unit="percent",
            bounds=(0, 100),
            bands=TARGET_BANDS,
            display_name="${__field.labels." + name.replace(" ", "_") + "}",
            min_interval="6h",
        )

    def live(label: str, name: str) -> dict[str, Any]:
        return timeseries(
            f"Completed share of finished conversations by {name}, last hour",
            [
                prom_target(
                    f"100 * sum by ({label}) (increase("
                    + series("agent_conversations_completed_total", OUTCOME_LABELS)
                    + f"[1h])) / sum by ({label}) (increase("
                    + series("agent_conversation_turns_count", OUTCOME_LABELS)
                    + "[1h]))",
                    "{{" + label + "}}",
                )
            ],
            description="Completed / finished (completed or abandoned) conversations over a "
            "sliding hour, from the exporter's series.",
            unit="percent",
            bounds=(0, 100),
            bands=TARGET_BANDS,
            relative_time="6h",
        )

    panels = [
        row("Breakdowns (ClickHouse)"),
        breakdown("agent_name", "agent", "agent"),
        breakdown("if(model = '', '(none)', model)", "model", "model"),
        breakdown(
            "if(prompt_version = '', '(none)', prompt_version)", "prompt_version", "prompt version"
        ),
        row("Over time (ClickHouse)"),
        over_time("prompt_version", "prompt version"),
        over_time("model", "model"),
        row("Live (Prometheus)"),
        live("prompt_version", "prompt version"),
        live("model", "model"),
    ]
    return dashboard(
        "ca-compare",
        "Conversation analytics / Compare",
        "Agents, models and prompt versions side by side, with week-over-week change.",
        panels,
        FILTER_VARIABLES,
    )


def explore_trace_url() -> str:
    """Grafana Explore on the trace data source, opened on the clicked trace id."""
    tokens = {
        "DS": "${trace_datasource}",
        "TRACE": "${__value.raw}",
        "FROM": "${__from}",
        "TO": "${__to}",
    }
    pane = {
        "trace": {
            "datasource": "@DS@",
            "queries": [
                {
                    "refId": "A",
                    "datasource": {"uid": "@DS@"},
                    "queryType": "traceql",
                    "query": "@TRACE@",
                }
            ],
            "range": {"from": "@FROM@", "to": "@TO@"},
        }
    }
    encoded = quote(json.dumps(pane, separators=(",", ":")), safe="@")
    for name, value in tokens.items():
        encoded = encoded.replace(f"@{name}@", value)
    return "/explore?schemaVersion=1&orgId=1&panes=" + encoded


def conversations_dashboard() -> dict[str, Any]:
    open_conversation = {
        "title": "Open this conversation's timeline",
        "url": "/d/ca-conversations/conversations?var-conversation=${__value.raw}"
        "&var-trace_datasource=${trace_datasource}&${__url_time_range}",
    }
    listing = f"""conversation_id, agent_name AS agent, channel, model, prompt_version,
    first_seen AS started, user_messages AS turns,
    round({SATISFACTION}, 3) AS satisfaction,
    {OUTCOME} AS outcome,
    tool_errors, rephrases, negative_feedback"""
    listing_columns = [
        column("conversation_id", "Conversation", links=[open_conversation]),
        column("agent", "Agent"),
        column("channel", "Channel"),
        column("model", "Model"),
        column("prompt_version", "Prompt"),
        column("started", "Started", "dateTimeAsIso"),
        column("turns", "Turns"),
        colored("satisfaction", "Satisfaction", "none", SATISFACTION_COLORS),
        column("outcome", "Outcome"),
        column("tool_errors", "Tool errors"),
        column("rephrases", "Rephrases"),
        column("negative_feedback", "Negative feedback"),
    ]
    selected = "conversation_id = ${conversation:singlequote}"
    summary = over_conversations(
        f"""conversation_id, agent_name AS agent, channel, model, prompt_version,
    first_seen AS started, last_seen AS last_event, user_messages AS turns,
    {OUTCOME} AS outcome,
    round({SATISFACTION}, 3) AS satisfaction,
    if({TIMED}, {ratio(DURATION_US, "1000000", 0)}, NULL) AS duration_seconds""",
        where=selected,
        filtered=False,
    )
    detail = """multiIf(
        event_type = 'started', concat('via ', channel),
        event_type = 'user_message', concat(ifNull(toString(message_length), '?'), ' chars',
            if(rephrase, ' - rephrase', '')),
        event_type = 'agent_response', concat(response_model, ' replied ',
            ifNull(toString(response_length), '?'), ' chars'),
        event_type = 'tool_called', concat(tool_name,
            if(error_type != '', concat(' failed: ', error_type), ' ok')),
        event_type = 'handoff_requested', handoff_reason,
        event_type = 'feedback_received', concat(feedback_rating,
            if(isNull(feedback_score), '', concat(' (', toString(feedback_score), ')'))),
        event_type = 'completed', concat('after ', ifNull(toString(total_turns), '?'), ' turns'),
        event_type = 'abandoned', concat('at turn ', ifNull(toString(abandoned_at_turn), '?'),
            if(abandon_inferred, ' (inferred from inactivity)', ' (explicit)')),
        '')"""
    timeline = f"""SELECT timestamp AS time, event_type AS event, turn,
    {detail} AS detail,
    agent_name AS agent, trace_id, span_id
FROM {EVENTS}
WHERE {selected}
ORDER BY timestamp, event_id
LIMIT 1 BY event_id"""
    panels = [
        row("Worst conversations (ClickHouse, the dashboard's time range)"),
        table(
            "Lowest satisfaction",
            sql_target(
                over_conversations(
                    listing, "ORDER BY satisfaction ASC, turns DESC, started DESC\nLIMIT 50"
                ),
                table=True,
            ),
            description="The 50 conversations with the lowest satisfaction score. Click a "
            "conversation id to open its timeline below.",
            overrides=listing_columns,
            width=12,
        ),
        table(
            "Most turns",
            sql_target(
                over_conversations(
                    listing, "ORDER BY turns DESC, satisfaction ASC, started DESC\nLIMIT 50"
                ),
                table=True,
            ),
            description="The 50 conversations that took the most user messages.",
            overrides=listing_columns,
            width=12,
        ),
        row("One conversation: ${conversation}"),
        table(
            "Summary",
            sql_target(summary, table=True),
            description="The selected conversation (variable 'conversation'), merged from the "
            "rollup regardless of the time range and filters.",
            overrides=[
                column("conversation_id", "Conversation"),
                column("agent", "Agent"),
                column("started", "Started", "dateTimeAsIso"),
                column("last_event", "Last event", "dateTimeAsIso"),
                colored("satisfaction", "Satisfaction", "none", SATISFACTION_COLORS),
                column("duration_seconds", "Duration", "s"),
            ],
            height=4,
        ),
        table(
            "Timeline",
            sql_target(timeline, table=True),
            description="Every event of the selected conversation, oldest first. Click a trace "
            "id to open the trace in Explore (data source uid: variable 'trace_datasource').",
            overrides=[
                column("time", "Time", "dateTimeAsIso"),
                column("event", "Event"),
                column("turn", "Turn"),
                column("detail", "Detail"),
                column(
                    "trace_id",
                    "Trace",
                    links=[
                        {
                            "title": "Open trace ${__value.raw}",
                            "url": explore_trace_url(),
                            "targetBlank": True,
                        }
                    ],
                ),
                column("span_id", "Span"),
            ],
            height=14,
        ),
    ]
    variables = [
        *FILTER_VARIABLES,
        textbox(
            "conversation",
            "Conversation id",
            "",
            "gen_ai.conversation.id to show; click one in the tables above",
        ),
        textbox(
            "trace_datasource",
            "Trace data source uid",
            "tempo",
            "uid of the data source holding the agents' traces (Tempo, Jaeger, ...)",
        ),
    ]
    return dashboard(
        "ca-conversations",
        "Conversation analytics / Conversations",
        "The worst conversations, and one conversation's timeline with links to its traces.",
        panels,
        variables,
    )


def pipeline() -> dict[str, Any]:
    def rate(metric: str, by: str = "") -> str:
        grouping = f" by ({by})" if by else ""
        return f'sum{grouping} (rate({metric}{{instance=~"$instance"}}[$__rate_interval]))'

    def total(metric: str) -> str:
        return f'sum(increase({metric}{{instance=~"$instance"}}[$__range]))'

    latency = "conversation_analytics_batch_write_duration_seconds_bucket"
    panels = [
        row("Over the time range (Prometheus)"),
        stat(
            "Events received",
            prom_target(total("conversation_analytics_events_received_total"), instant=True),
            description="Conversation events that reached the pipeline.",
            unit="short",
            width=6,
        ),
        stat(
            "Events written",
            prom_target(total("conversation_analytics_events_written_total"), instant=True),
            description="Events durably written to the store.",
            unit="short",
            width=6,
        ),
        stat(
            "Events dropped",
            prom_target(total("conversation_analytics_events_dropped_total"), instant=True),
            description="Events not stored (invalid, buffer full, shutdown, refused by the "
            "store): should stay 0.",
            unit="short",
            colors=thresholds((None, "green"), (1, "red")),
            width=6,
        ),
        stat(
            "Queue depth now",
            prom_target(
                'sum(conversation_analytics_queue_depth{instance=~"$instance"})', instant=True
            ),
            description="Events waiting to be written (retry buffer and spool).",
            unit="short",
            colors=thresholds((None, "green"), (1000, "orange"), (50000, "red")),
            width=6,
        ),
        row("Flow (Prometheus)"),
        timeseries(
            "Events per second",
            [
                prom_target(
                    rate("conversation_analytics_events_received_total", "source"),
                    "received ({{source}})",
                ),
                prom_target(
                    rate("conversation_analytics_events_written_total"), "written", ref="B"
                ),
                prom_target(
                    rate("conversation_analytics_events_duplicate_total"), "duplicate", ref="C"
                ),
            ],
            description="Received by source, written to the store, and seen again (re-exports "
            "and retries, counted once).",
            unit="ops",
        ),
        timeseries(
            "Dropped and rejected per second",
            [
                prom_target(
                    rate("conversation_analytics_events_dropped_total", "reason"),
                    "dropped: {{reason}}",
                ),
                prom_target(
                    rate("conversation_analytics_events_rejected_total"),
                    "rejected (retryable)",
                    ref="B",
                ),
                prom_target(
                    rate("conversation_analytics_requests_rejected_total", "reason"),
                    "request rejected: {{reason}}",
                    ref="C",
                ),
                prom_target(
                    rate("conversation_analytics_write_errors_total"), "write errors", ref="D"
                ),
            ],
            description="Anything not written: dropped events by reason, events refused with a "
            "retryable error, rejected OTLP requests (collector) and failed batch writes.",
            unit="ops",
        ),
        timeseries(
            "Batch write latency",
            [
                prom_target(
                    f"histogram_quantile(0.5, sum by (le) (rate({latency}"
                    '{instance=~"$instance"}[$__rate_interval])))',
                    "p50",
                ),
                prom_target(
                    f"histogram_quantile(0.95, sum by (le) (rate({latency}"
                    '{instance=~"$instance"}[$__rate_interval])))',
                    "p95",
                    ref="B",
                ),
                prom_target(
                    f"histogram_quantile(0.99, sum by (le) (rate({latency}"
                    '{instance=~"$instance"}[$__rate_interval])))',
                    "p99",
                    ref="C",
                ),
            ],
            description="Latency of one batch write to the store.",
            unit="s",
        ),
        timeseries(
            "Queue depth",
            [
                prom_target(
                    'max by (instance) (conversation_analytics_queue_depth{instance=~"$instance"})',
                    "{{instance}}",
                )
            ],
            description="Events waiting to be written, per process.",
            unit="short",
        ),
        row("In the store (ClickHouse)"),
        timeseries(
            "Events stored, by type",
            [
                sql_target(
                    f"""SELECT $__timeInterval(inserted_at) AS time, event_type,
    uniqExact(event_id) AS events
FROM {EVENTS}
WHERE $__timeFilter(inserted_at) AND $__timeFilter(timestamp)
GROUP BY time, event_type
ORDER BY time, event_type"""
                )
            ],
            description="Distinct events by the time they were inserted (events timestamped "
            "within the range).",
            unit="short",
            display_name="${__field.labels.event_type}",
            bars=True,
            stack=True,
        ),
        timeseries(
            "Ingest delay (event time to stored)",
            [
                sql_target(
                    f"""SELECT $__timeInterval(inserted_at) AS time,
    quantile(0.5)(dateDiff('millisecond', timestamp, inserted_at) / 1000) AS p50,
    quantile(0.99)(dateDiff('millisecond', timestamp, inserted_at) / 1000) AS p99
FROM {EVENTS}
WHERE $__timeFilter(inserted_at) AND $__timeFilter(timestamp)
GROUP BY time
ORDER BY time"""
                )
            ],
            description="How long events took from being recorded to being stored (imports and "
            "backfills show as large delays).",
            unit="s",
        ),
    ]
    instance = {
        "name": "instance",
        "label": "Instance",
        "description": "Processes exporting the pipeline's series",
        "type": "query",
        "datasource": PROMETHEUS,
        "definition": "label_values(conversation_analytics_events_received_total, instance)",
        "query": "label_values(conversation_analytics_events_received_total, instance)",
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "regex": "",
        "hide": 0,
        "skipUrlSync": False,
    }
    return dashboard(
        "ca-pipeline",
        "Conversation analytics / Pipeline health",
        "The exporter's and collector's own health: events received, written and dropped, "
        "write latency and queue depth.",
        panels,
        [instance],
        time_from="now-6h",
    )


DASHBOARDS = {
    "overview.json": overview,
    "dropoff.json": dropoff,
    "compare.json": compare,
    "conversations.json": conversations_dashboard,
    "pipeline.json": pipeline,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    DASHBOARDS_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (DASHBOARDS_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {DASHBOARDS_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
