"""Plain-text tables for the terminal: ``report``, ``compare``, ``conversations`` and
``conversation``."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.conversation_analytics.analytics import (
    ASSISTANT_COMPLETION_TARGET,
    MIN_COMPARE_SAMPLE,
    SUPPORT_COMPLETION_TARGET,
    Comparison,
    ConversationDetail,
    ConversationList,
    ExitContext,
    FunnelStep,
    LabelShare,
    Report,
    ToolLift,
    round_half_up,
)
from opentelemetry.exporter.conversation_analytics.stats import SurvivalStep

#: The article's completion targets, shown beside the measured rate.
COMPLETION_TARGETS = (
    f"support agents {SUPPORT_COMPLETION_TARGET[0]}-{SUPPORT_COMPLETION_TARGET[1]}%, "
    f"general assistants {ASSISTANT_COMPLETION_TARGET[0]}-{ASSISTANT_COMPLETION_TARGET[1]}%"
)
_BAR_WIDTH = 30
#: The survival section of ``report`` shows this many turns (the JSON has them all).
_SURVIVAL_ROWS = 15
#: How an empty group value (no prompt version on the events, say) is shown.
_NO_VALUE = "(none)"
#: How "called no tool" reads in the exit context (the Grafana drop-off panel's words).
_NO_TOOL = "(no tool)"


def _value(value: object, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [list(map(str, headers))] + [[_value(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return ["  " + line.rstrip() for line in lines]


def render_report(report: Report) -> str:
    lines = [
        f"Conversation analytics - last {report.days} days",
        "",
        f"  Conversations          {report.total_conversations}",
        f"  Completion rate        {_value(report.completion_rate, '%')}"
        f"   (targets: {COMPLETION_TARGETS})",
        f"  Abandonment rate       {_value(report.abandonment_rate, '%')}",
        f"  Handoff rate           {_value(report.handoff_rate, '%')}",
        f"  Avg turns              {_value(report.avg_turns)}",
        f"  Avg duration           {_value(report.avg_duration_seconds, ' s')}",
        f"  Avg satisfaction       {_value(report.avg_satisfaction)}",
        f"  Rephrase rate          {_value(report.rephrase_rate, '%')}",
        "",
        "Drop-off (abandoned at turn, most frequent first)",
    ]
    if report.drop_off:
        top = max(entry.count for entry in report.drop_off)
        for entry in report.drop_off:
            bar = "#" * max(1, round(entry.count / top * _BAR_WIDTH))
            lines.append(f"  turn {_value(entry.turn):>4}  {entry.count:>7}  {bar}")
    else:
        lines.append("  (no abandoned conversations)")
    lines += ["", *_survival_section(report.survival, report.reached_turn)]
    lines += ["", *_exit_section(report.exit_context)]
    lines += ["", *_tool_lift_section(report.tool_lift)]
    if report.agents:
        lines += ["", "Per agent"]
        lines += _table(
            (
                "agent",
                "convs",
                "completed%",
                "abandoned%",
                "handoff%",
                "turns",
                "duration s",
                "satisfaction",
                "rephrase%",
                "left after (top)",
            ),
            [
                (
                    a.agent,
                    a.total_conversations,
                    a.completion_rate,
                    a.abandonment_rate,
                    a.handoff_rate,
                    a.avg_turns,
                    a.avg_duration_seconds,
                    a.avg_satisfaction,
                    a.rephrase_rate,
                    _top_exit(a.exit_context),
                )
                for a in report.agents
            ],
        )
    if report.evaluations:
        lines += ["", "Evaluations (gen_ai.evaluation.result)"]
        lines += _table(
            ("evaluation", "agent", "version", "count", "mean score", "labels"),
            [
                (
                    evaluation.name,
                    group.agent,
                    group.agent_version or "-",
                    group.evaluations,
                    group.mean_score,
                    _labels(group.labels),
                )
                for evaluation in report.evaluations
                for group in evaluation.by_agent
            ],
        )
    return "\n".join(lines)


def _top_exit(context: ExitContext) -> str:
    """An agent's most frequent last step before leaving, with its share ("-": none left)."""
    if not context.last_event:
        return "-"
    top = context.last_event[0]
    return f"{top.kind} {_value(top.share, '%')}"


def _exit_section(context: ExitContext) -> list[str]:
    """What came last before people left: the last step, the last tool, recent rephrases."""
    lines = ["Just before leaving (abandoned conversations whose abandonment stands)"]
    if not context.abandoned:
        return [*lines, "  (no abandoned conversations)"]
    recent = context.rephrased_in_last_two_turns
    lines += [
        f"  Abandoned              {context.abandoned}",
        f"  Rephrase in last two turns  {recent.conversations} ({_value(recent.share, '%')})",
    ]
    lines += _table(
        ("last step", "convs", "share"),
        [(e.kind, e.conversations, _value(e.share, "%")) for e in context.last_event],
    )
    lines.append("")
    lines += _table(
        ("last tool", "failed", "convs", "share"),
        [
            (
                t.tool if t.tool is not None else _NO_TOOL,
                "yes" if t.failed else "no",
                t.conversations,
                _value(t.share, "%"),
            )
            for t in context.last_tool
        ],
    )
    return lines


def _tool_lift_section(lifts: Sequence[ToolLift]) -> list[str]:
    """Completion with and without each tool, its interval, and the verdict."""
    lines = [
        "Tool lift (completion with vs without each tool; 95% Wilson intervals; pooled z-test, "
        f"significant: p < 0.05 and at least {MIN_COMPARE_SAMPLE} conversations each side)"
    ]
    if not lifts:
        return [*lines, "  (no tool calls)"]
    rows = []
    for lift in lifts:
        if lift.significant:
            called = "significant"
        else:
            called = "too few" if lift.note else "not significant"
        rows.append(
            (
                lift.tool,
                lift.with_tool.conversations,
                lift.with_tool.completion_rate,
                _interval(lift.with_tool.completion_ci),
                lift.without_tool.conversations,
                lift.without_tool.completion_rate,
                _interval(lift.without_tool.completion_ci),
                "-" if lift.lift is None else f"{lift.lift:+}",
                "-" if lift.p_value is None else f"{lift.p_value:.3g}",
                called,
            )
        )
    lines += _table(
        (
            "tool",
            "with",
            "completed%",
            "95% CI",
            "without",
            "completed%",
            "95% CI",
            "lift pts",
            "p",
            "",
        ),
        rows,
    )
    return lines


def render_conversations(listing: ConversationList) -> str:
    """The ``conversations`` listing: ids to pass to ``conversation ID``."""
    filters = [f"last {listing.days} days", f"order {listing.order}"]
    if listing.agent:
        filters.append(f"agent {listing.agent}")
    if listing.outcome:
        filters.append(f"outcome {listing.outcome}")
    if listing.rephrased:
        filters.append("rephrased")
    if listing.min_turns:
        filters.append(f"at least {listing.min_turns} turns")
    lines = [f"Conversations - {', '.join(filters)} (at most {listing.limit})", ""]
    if not listing.conversations:
        return "\n".join([*lines, "  (no conversations match)"])
    lines += _table(
        (
            "conversation",
            "agent",
            "outcome",
            "turns",
            "satisfaction",
            "rephrases",
            "last activity",
            "started",
        ),
        [
            (
                c.conversation_id,
                c.agent,
                c.outcome,
                c.turns,
                f"{c.satisfaction:.3f}",
                c.rephrases,
                c.last_activity,
                c.started_at,
            )
            for c in listing.conversations
        ],
    )
    lines += ["", "  drill into one: conversation-analytics conversation ID"]
    return "\n".join(lines)


def _labels(labels: Sequence[LabelShare]) -> str:
    return ", ".join(f"{entry.label} {_value(entry.share, '%')}" for entry in labels) or "-"


def render_conversation(detail: ConversationDetail) -> str:
    if not detail.events:
        return f"No events for conversation {detail.conversation_id!r}."
    lines = [
        f"Conversation {detail.conversation_id}",
        f"  satisfaction {detail.satisfaction:.3f}   events {len(detail.events)}",
        "",
    ]
    rows = []
    for event in detail.events:
        facts = {
            "turn": event.get("turn"),
            "tool": event.get("tool_name"),
            "model": event.get("response_model") or event.get("request_model"),
            "rating": event.get("feedback_rating"),
            "reason": event.get("handoff_reason"),
            "at_turn": event.get("abandoned_at_turn"),
            "error": event.get("error_type"),
            "evaluation": event.get("evaluation_name"),
            "score": event.get("evaluation_score"),
            "label": event.get("evaluation_label"),
        }
        detail_text = " ".join(f"{k}={v}" for k, v in facts.items() if v not in (None, ""))
        rows.append((event["timestamp"], event["event_type"], event["agent_name"], detail_text))
    lines += _table(("timestamp", "event", "agent", "details"), rows)
    return "\n".join(lines)


def _survival_section(survival: Sequence[SurvivalStep], reached: Sequence[FunnelStep]) -> list[str]:
    """Kaplan-Meier "still not abandoned" by user turn beside the "reached turn N" funnel."""
    lines = [
        "Survival (Kaplan-Meier: share not yet abandoned, by user turn; open conversations "
        "censored)"
    ]
    if not survival:
        return [*lines, "  (no conversations with a user message)"]
    reached_at = {step.turn: step.conversations for step in reached}
    rows = [
        (
            step.turn,
            reached_at.get(step.turn, step.at_risk),
            step.abandoned,
            step.censored,
            f"{round_half_up(step.survival * 100, 1)}%",
            "#" * round(step.survival * _BAR_WIDTH),
        )
        for step in survival[:_SURVIVAL_ROWS]
    ]
    lines += _table(("turn", "reached", "abandoned", "censored", "survival", ""), rows)
    if len(survival) > _SURVIVAL_ROWS:
        lines.append(f"  ... {len(survival) - _SURVIVAL_ROWS} more turns in --format json")
    return lines


def _interval(bounds: Sequence[float] | None) -> str:
    return "-" if bounds is None else f"[{bounds[0]}, {bounds[1]}]"


def render_comparison(comparison: Comparison) -> str:
    """Groups side by side; the baseline first and marked, significance spelled out."""
    agent = f", agent {comparison.agent}" if comparison.agent else ""
    lines = [f"Compare by {comparison.by} - last {comparison.days} days{agent}"]
    if not comparison.groups:
        return "\n".join([*lines, "", "  (no conversations)"])
    baseline = comparison.baseline or _NO_VALUE
    lines += [
        f"  95% Wilson intervals; completion vs baseline {baseline} by a two-sided pooled "
        f"z-test (significant: p < 0.05, at least {MIN_COMPARE_SAMPLE} conversations per group)",
        "",
    ]
    rows = []
    for group in comparison.groups:
        versus = group.vs_baseline
        if versus is None:
            verdict: tuple[object, ...] = ("baseline", "", "")
        else:
            p_value = (
                "-" if versus.completion_p_value is None else f"{versus.completion_p_value:.3g}"
            )
            if versus.significant:
                called = "significant"
            else:
                called = "too few" if versus.note else "not significant"
            diff = versus.completion_diff
            verdict = ("-" if diff is None else f"{diff:+}", p_value, called)
        rows.append(
            (
                group.value or _NO_VALUE,
                group.conversations,
                group.completion_rate,
                _interval(group.completion_ci),
                group.abandonment_rate,
                _interval(group.abandonment_ci),
                group.handoff_rate,
                _interval(group.handoff_ci),
                group.avg_turns,
                group.rephrase_rate,
                group.avg_satisfaction,
                _interval(group.satisfaction_ci),
                *verdict,
            )
        )
    lines += _table(
        (
            comparison.by,
            "convs",
            "completed%",
            "95% CI",
            "abandoned%",
            "95% CI",
            "handoff%",
            "95% CI",
            "turns",
            "rephrase%",
            "satisfaction",
            "95% CI",
            "vs base pts",
            "p",
            "",
        ),
        rows,
    )
    return "\n".join(lines)
