"""Plain-text tables for the terminal: ``report`` and ``conversation`` in table format."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.conversation_analytics.analytics import (
    ConversationDetail,
    LabelShare,
    Report,
)

#: The article's completion targets, shown beside the measured rate.
COMPLETION_TARGETS = "support agents 70-85%, general assistants 50-60%"
_BAR_WIDTH = 30


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
