"""Overview: the report's numbers for the time range, their history, and live rates."""

from __future__ import annotations

from typing import Any

from .board import dashboard
from .names import (
    ABANDONED_TOTAL,
    COMPLETED_TOTAL,
    HANDOFFS_TOTAL,
    OUTCOME_LABELS,
    OVERVIEW_UID,
    SATISFACTION_COUNT,
    SATISFACTION_SUM,
    START_LABELS,
    STARTED_TOTAL,
    TURNS_BUCKET,
)
from .panels import (
    ASSISTANT_TARGET,
    BAD_WHEN_HIGH,
    COMPLETION_COLORS,
    SATISFACTION_COLORS,
    SUPPORT_TARGET,
    TARGET_BANDS,
    barchart,
    prom_target,
    row,
    sql_target,
    stat,
    timeseries,
)
from .queries import (
    ABANDONED,
    AVG_DURATION_S,
    COMPLETED,
    HANDOFF,
    SATISFACTION,
    TIMED,
    mean,
    over_conversations,
    pct,
    quantile,
    ratio,
    series,
    summed,
    time_bucket,
)
from .variables import FILTER_VARIABLES

_SUPPORT = "{}-{}".format(*SUPPORT_TARGET)
_ASSISTANT = "{}-{}".format(*ASSISTANT_TARGET)


def _glance(
    title: str, expression: str, key: str, description: str, **kwargs: Any
) -> dict[str, Any]:
    """A stat of one number over the time range's conversations."""
    target = sql_target(over_conversations(f"{expression} AS {key}"), table=True)
    return stat(title, target, description=description, **kwargs)


def _per_hour(metric: str, by: str = "") -> str:
    """Outcomes per hour from a counter with the outcome series' labels."""
    return summed("rate", series(metric, OUTCOME_LABELS), "$__rate_interval", by) + " * 3600"


def build() -> dict[str, Any]:
    turns = series(TURNS_BUCKET, OUTCOME_LABELS)
    started = series(STARTED_TOTAL, START_LABELS)
    per_hour = time_bucket()
    panels = [
        row("At a glance (ClickHouse, the dashboard's time range)"),
        _glance(
            "Conversations",
            "count()",
            "total_conversations",
            "Conversations with any event in the time range.",
        ),
        _glance(
            "Completion rate",
            pct(COMPLETED),
            "completion_rate",
            "Share of conversations with a conversation.completed event. Targets from the "
            f"article: support agents {_SUPPORT} %, general assistants {_ASSISTANT} %.",
            unit="percent",
            colors=COMPLETION_COLORS,
        ),
        _glance(
            "Abandonment rate",
            pct(ABANDONED),
            "abandonment_rate",
            "Share of conversations abandoned (explicitly, or inferred from inactivity and not "
            "revoked by the user coming back).",
            unit="percent",
            colors=BAD_WHEN_HIGH,
        ),
        _glance(
            "Handoff rate",
            pct(HANDOFF),
            "handoff_rate",
            "Share of conversations escalated to a human.",
            unit="percent",
            colors=BAD_WHEN_HIGH,
        ),
        _glance(
            "Avg turns",
            mean("user_messages", 1),
            "avg_turns",
            "Mean number of user messages per conversation.",
            decimals=1,
        ),
        _glance(
            "Avg duration",
            AVG_DURATION_S,
            "avg_duration_seconds",
            "Mean time from conversation.started to conversation.completed, over conversations "
            "that have both.",
            unit="s",
        ),
        _glance(
            "Avg satisfaction",
            mean(SATISFACTION, 3),
            "avg_satisfaction",
            "Mean per-conversation satisfaction (0..1): explicit feedback, the outcome signal "
            "and the rephrase/turn-count signal, as in SPEC section 4.",
            decimals=3,
            colors=SATISFACTION_COLORS,
        ),
        _glance(
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
            f"Shaded: the article's targets, general assistants {_ASSISTANT} % (blue) and "
            f"support agents {_SUPPORT} % (green).",
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
                    summed("rate", started, "$__rate_interval", "agent") + " * 3600", "{{agent}}"
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
                prom_target(_per_hour(COMPLETED_TOTAL), "completed"),
                prom_target(_per_hour(ABANDONED_TOTAL), "abandoned", ref="B"),
                prom_target(_per_hour(HANDOFFS_TOTAL), "handoff", ref="C"),
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
                    "100 * "
                    + summed("increase", series(COMPLETED_TOTAL, START_LABELS), "1h", "agent")
                    + " / "
                    + summed("increase", started, "1h", "agent"),
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
                prom_target(quantile(0.5, turns, "1h"), "p50"),
                prom_target(quantile(0.9, turns, "1h"), "p90", ref="B"),
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
                    summed("rate", series(SATISFACTION_SUM, OUTCOME_LABELS), "1h", "agent")
                    + " / "
                    + summed("rate", series(SATISFACTION_COUNT, OUTCOME_LABELS), "1h", "agent"),
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
        OVERVIEW_UID,
        "Conversation analytics / Overview",
        "Did conversations succeed, how many turns did they take, how satisfied were users: "
        "history from ClickHouse beside live rates from Prometheus.",
        panels,
        FILTER_VARIABLES,
    )
