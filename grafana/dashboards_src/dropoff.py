"""Drop-off: where people give up, and what happened just before they left."""

from __future__ import annotations

from typing import Any

from .board import dashboard
from .names import (
    ABANDONED_AT_TURN_BUCKET,
    ABANDONED_TOTAL,
    DROPOFF_UID,
    EVENTS,
    OUTCOME_LABELS,
    TOOL_CALLS_TOTAL,
)
from .panels import (
    BAD_WHEN_HIGH,
    barchart,
    column,
    prom_target,
    row,
    sql_target,
    stat,
    table,
    timeseries,
)
from .queries import (
    ABANDONED,
    SURVIVAL_TURN,
    cond_all,
    conversations,
    indent,
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

#: The survival chart stops here, as the funnel does (the table shows every turn).
CURVE_TURNS = 30


def _kaplan_meier() -> str:
    """The report's Kaplan-Meier table: one row per distinct duration (the report's
    ``SURVIVAL_TURN``), its conversations abandoned there and censored there, those at risk
    (duration at least the turn: a sum from the longest down) and the survival, the product of
    ``1 - abandoned / at_risk`` up to the turn as the exp of a running sum of logs (0 once all
    at risk left)."""
    counts = over_conversations(
        "turn, countIf(was_abandoned = 1) AS abandoned, countIf(was_abandoned = 0) AS censored,\n"
        "    sum(count()) OVER (ORDER BY turn DESC ROWS UNBOUNDED PRECEDING) AS at_risk",
        "GROUP BY turn",
        project=f"{SURVIVAL_TURN} AS turn, was_abandoned",
        keep="turn IS NOT NULL",
        columns=["user_messages", "abandoned_turn"],
    )
    return f"""SELECT turn, at_risk, abandoned, censored,
    exp(sum(log(1 - abandoned / at_risk)) OVER (ORDER BY turn ROWS UNBOUNDED PRECEDING))
        AS survival
FROM (
    {indent(counts)}
)
ORDER BY turn"""


def _survival_curve() -> str:
    """The same estimate at every turn 1..N (N the longest duration, at most CURVE_TURNS): at
    risk at turn n the conversations lasting at least n, abandoned those that left at n; a turn
    nobody's duration ends at multiplies by 1, so the bars step as the curve does."""
    per_turn = over_conversations(
        "n, count() AS at_risk, countIf(turn = n AND was_abandoned = 1) AS abandoned",
        "GROUP BY n",
        project=f"{SURVIVAL_TURN} AS turn, was_abandoned,\n"
        f"    arrayJoin(range(1, toUInt64(least(assumeNotNull(turn), {CURVE_TURNS})) + 1)) AS n",
        keep="turn IS NOT NULL",
        columns=["user_messages", "abandoned_turn"],
    )
    return f"""SELECT toString(n) AS turn,
    exp(sum(log(1 - abandoned / at_risk)) OVER (ORDER BY n ROWS UNBOUNDED PRECEDING))
        AS survival
FROM (
    {indent(per_turn)}
)
ORDER BY n"""


def build() -> dict[str, Any]:
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
        maxIf(timestamp, event_type NOT IN ('abandoned', 'evaluation')) AS last_other_at,
        argMaxIf(event_type, (timestamp, event_id),
                 event_type NOT IN ('abandoned', 'feedback_received', 'evaluation'))
            AS last_event,
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
    at_turn = series(ABANDONED_AT_TURN_BUCKET, OUTCOME_LABELS)
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
            "(last event other than feedback and evaluations, as the report's exit_context), the "
            "last tool called (and whether it failed) and whether a handoff was requested; "
            "explicit vs inferred abandonment.",
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
                    summed(
                        "rate",
                        series(ABANDONED_TOTAL, OUTCOME_LABELS),
                        "$__rate_interval",
                        "inferred",
                    )
                    + " * 3600",
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
                prom_target(quantile(0.5, at_turn, "1h"), "p50"),
                prom_target(quantile(0.9, at_turn, "1h"), "p90", ref="B"),
            ],
            description="Quantiles of the abandoned-at-turn histogram.",
            relative_time="6h",
        ),
        timeseries(
            "Tool error ratio, last hour",
            [
                prom_target(
                    summed(
                        "rate",
                        series(TOOL_CALLS_TOTAL, ("agent",), 'outcome="error"'),
                        "1h",
                        "tool",
                    )
                    + " / "
                    + summed("rate", series(TOOL_CALLS_TOTAL, ("agent",)), "1h", "tool"),
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
        # Appended, so the panels above keep their ids (and the annotations made on them).
        row("Survival (ClickHouse, the dashboard's time range)"),
        barchart(
            "Still here after turn N (Kaplan–Meier)",
            sql_target(_survival_curve(), table=True),
            x_field="turn",
            unit="percentunit",
            bounds=(0, 1),
            description="Kaplan–Meier estimate of the share of conversations not abandoned by "
            "user turn N (first 30 turns), the report's `survival`: a conversation lasts until "
            "the turn it was abandoned at, else its number of user messages, where completed, "
            "handed-off and open ones are censored (still there when last seen). Unlike the "
            "funnel, a conversation still going does not count as having left.",
        ),
        table(
            "Kaplan–Meier by turn",
            sql_target(_kaplan_meier(), table=True),
            description="One row per turn a conversation's duration ends at: conversations at "
            "risk (lasting at least that many turns), abandoned at it, censored at it "
            "(completed, handed off or open) and the survival so far, as "
            "`conversation-analytics report` computes it.",
            overrides=[
                column("turn", "Turn"),
                column("at_risk", "At risk"),
                column("abandoned", "Abandoned"),
                column("censored", "Censored"),
                column("survival", "Still here", "percentunit", decimals=1),
            ],
            width=12,
            height=8,
        ),
    ]
    return dashboard(
        DROPOFF_UID,
        "Conversation analytics / Drop-off",
        "Where people give up: abandonment by turn, the turn funnel, and what happened just "
        "before they left.",
        panels,
        FILTER_VARIABLES,
    )
