"""Compare: agents, models and prompt versions side by side, with week-over-week change."""

from __future__ import annotations

from typing import Any

from .board import dashboard
from .names import COMPARE_UID, COMPLETED_TOTAL, OUTCOME_LABELS, TURNS_COUNT
from .panels import (
    BAD_WHEN_HIGH,
    COMPLETION_COLORS,
    SATISFACTION_COLORS,
    TARGET_BANDS,
    colored,
    column,
    prom_target,
    row,
    sql_target,
    table,
    thresholds,
    timeseries,
)
from .queries import (
    ABANDONED,
    AVG_DURATION_S,
    COMPLETED,
    HANDOFF,
    MIN_SAMPLE,
    SATISFACTION,
    SIGNIFICANCE,
    indent,
    mean,
    over_conversations,
    pct,
    ratio,
    series,
    summed,
    time_bucket,
    two_proportion_p_value,
    wilson_percent,
)
from .variables import FILTER_VARIABLES

#: Week-over-week change at or below which the tables turn red (values have 1 decimal).
WOW_ALERT = -4.9
_WOW_COLORS = thresholds((None, "red"), (WOW_ALERT, "text"))
#: Per conversation: did it begin in the 7 days before the range's end, or the 7 days before?
_WEEKS = (
    "toUInt8(first_seen >= $__toTime - INTERVAL 7 DAY) AS this_week",
    "toUInt8(first_seen >= $__toTime - INTERVAL 14 DAY "
    "AND first_seen < $__toTime - INTERVAL 7 DAY) AS last_week",
)
_SINCE = "least($__fromTime, $__toTime - INTERVAL 14 DAY)"


def _breakdown(expression: str, key: str, name: str) -> dict[str, Any]:
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
        since=_SINCE,
        derived=_WEEKS,
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
    {
        ratio(
            "100 * (completion_this_week - completion_last_week)",
            "toDecimal64(completion_last_week, 1)",
            1,
        )
    } AS completion_wow_pct
FROM (
    {indent(in_range)}
) AS r
FULL OUTER JOIN (
    {indent(by_week)}
) AS w USING ({key})
ORDER BY conversations DESC, {key}
SETTINGS join_use_nulls = 1"""
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
            colored("completion_wow_pts", "WoW (points)", "none", _WOW_COLORS),
            colored("completion_wow_pct", "WoW (%)", "percent", _WOW_COLORS),
        ],
        height=7,
    )


def _intervals(expression: str, key: str, name: str) -> dict[str, Any]:
    # One row of exact counts per group; the baseline (the largest group, ties: the smallest
    # value, as the CLI picks it) joins every row through a window over all of them. The group
    # is ordered by its raw value (the CLI's ``""`` before anything) and labelled afterwards.
    counts = over_conversations(
        f"{expression} AS value, count() AS conversations, countIf({COMPLETED}) AS completed",
        "GROUP BY value",
    )
    baseline = (
        "OVER (ORDER BY conversations DESC, value ASC "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
    )
    low, high = wilson_percent("completed", "conversations")
    p_value = two_proportion_p_value("completed", "conversations", "base_completed", "base_total")
    diff = ratio(
        "100 * (toInt64(completed) * base_total - toInt64(base_completed) * conversations)",
        "conversations * base_total",
        1,
    )
    sql = f"""SELECT if(value = '', '(none)', value) AS {key}, conversations, completed,
    {ratio("100 * completed", "conversations", 1)} AS completion_rate,
    {low} AS completion_low,
    {high} AS completion_high,
    concat(toDecimalString(completion_low, 1), ' - ', toDecimalString(completion_high, 1))
        AS completion_ci,
    if(is_baseline, NULL, {diff}) AS completion_diff_pts,
    if(is_baseline, NULL, {p_value}) AS completion_p_value,
    multiIf(is_baseline, 'baseline',
            least(conversations, base_total) < {MIN_SAMPLE}, 'too few conversations',
            completion_p_value < {SIGNIFICANCE}, 'significant', 'not significant') AS verdict
FROM (
    SELECT value, conversations, completed,
        first_value(value) {baseline} = value AS is_baseline,
        first_value(conversations) {baseline} AS base_total,
        first_value(completed) {baseline} AS base_completed
    FROM (
        {indent(counts, 8)}
    )
)
ORDER BY is_baseline DESC, conversations DESC, value"""
    return table(
        f"Completion by {name} with 95% intervals",
        sql_target(sql, table=True),
        description=f"Per {name} over the time range, as `conversation-analytics compare --by "
        f"{key}` computes it: completion rate with its 95 % Wilson score interval, and the "
        "difference from the baseline (the largest group, listed first) with the two-sided "
        "pooled two-proportion z-test's p-value. Significant: p < 0.05 with at least "
        f"{MIN_SAMPLE} conversations in both groups. Overlapping intervals are not a test: "
        "read the p-value.",
        overrides=[
            column(key, name.capitalize()),
            column("conversations", "Conversations"),
            column("completed", "Completed"),
            column(
                "completion_rate",
                "Completion",
                "percent",
                min=0,
                max=100,
                thresholds=COMPLETION_COLORS,
                custom__cellOptions={"type": "gauge", "mode": "basic", "valueDisplayMode": "text"},
            ),
            column("completion_ci", "95% interval (%)"),
            column("completion_low", "Lower", "percent"),
            column("completion_high", "Upper", "percent"),
            column("completion_diff_pts", "vs baseline (points)", decimals=1),
            column("completion_p_value", "p-value", decimals=4),
            column("verdict", "Difference"),
        ],
        height=7,
    )


def _over_time(dimension: str, name: str) -> dict[str, Any]:
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


def _live(label: str, name: str) -> dict[str, Any]:
    return timeseries(
        f"Completed share of finished conversations by {name}, last hour",
        [
            prom_target(
                "100 * "
                + summed("increase", series(COMPLETED_TOTAL, OUTCOME_LABELS), "1h", label)
                + " / "
                + summed("increase", series(TURNS_COUNT, OUTCOME_LABELS), "1h", label),
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


def build() -> dict[str, Any]:
    panels = [
        row("Breakdowns (ClickHouse)"),
        _breakdown("agent_name", "agent", "agent"),
        _breakdown("if(model = '', '(none)', model)", "model", "model"),
        _breakdown(
            "if(prompt_version = '', '(none)', prompt_version)", "prompt_version", "prompt version"
        ),
        row("Over time (ClickHouse)"),
        _over_time("prompt_version", "prompt version"),
        _over_time("model", "model"),
        row("Live (Prometheus)"),
        _live("prompt_version", "prompt version"),
        _live("model", "model"),
        # Appended, so the panels above keep their ids (and the annotations made on them).
        row("Completion with 95% intervals (ClickHouse)"),
        _intervals("prompt_version", "prompt_version", "prompt version"),
        _intervals("model", "model", "model"),
        _intervals("agent_name", "agent", "agent"),
    ]
    return dashboard(
        COMPARE_UID,
        "Conversation analytics / Compare",
        "Agents, models and prompt versions side by side, with week-over-week change.",
        panels,
        FILTER_VARIABLES,
    )
