"""Template variables: the four filters of the conversation dashboards, and free-text boxes.

The filters are multi-select with an All whose value is ``.*``: a regex for the PromQL
selectors, and in SQL never seen, since each appears only inside ``$__conditionalAll``.
"""

from __future__ import annotations

from textwrap import dedent
from typing import Any

from .names import CLICKHOUSE, PROMETHEUS, ROLLUP


def _multi_select(
    name: str,
    label: str,
    description: str,
    datasource: dict[str, str],
    definition: str,
    query: str | dict[str, Any],
) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": datasource,
        "definition": definition,
        "query": query,
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


def query_variable(name: str, label: str, sql: str, description: str) -> dict[str, Any]:
    """Values from a ClickHouse query (its column ``value``), refreshed on time range change."""
    sql = dedent(sql).strip()
    query = {"editorType": "sql", "rawSql": sql, "format": 1}
    return _multi_select(name, label, description, CLICKHOUSE, sql, query)


def label_variable(name: str, label: str, promql: str, description: str) -> dict[str, Any]:
    """Values from a Prometheus query such as ``label_values(series, label)``."""
    return _multi_select(name, label, description, PROMETHEUS, promql, promql)


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
