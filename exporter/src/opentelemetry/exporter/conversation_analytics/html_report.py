"""``report --format html``: one self-contained page anyone can open.

Pure functions from a :class:`Report` (and a :class:`Comparison`) to text: inline CSS and inline
SVG, no script, nothing fetched (a Content-Security-Policy says so to the browser too). Every
chart has its numbers in a table beside it; every value shown goes through :func:`html.escape`
(agent names and group values are user data) and every number through the project's one rounding
rule, :func:`round_half_up`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import date
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.analytics import (
    ASSISTANT_COMPLETION_TARGET,
    MAX_FUNNEL_TURNS,
    MIN_COMPARE_SAMPLE,
    SUPPORT_COMPLETION_TARGET,
    Comparison,
    Report,
    round_half_up,
)
from opentelemetry.exporter.conversation_analytics.version import __version__

#: The browser may load nothing: styles are inline, images are inline SVG (or data: URLs).
CONTENT_SECURITY_POLICY: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: What a missing number (no data) reads as.
NO_DATA: Final = "–"
_NO_VALUE: Final = "(none)"

_COMPLETION_COLOR: Final = "#2563eb"
_ABANDONMENT_COLOR: Final = "#dc2626"
_SUPPORT_BAND: Final = "#16a34a"
_ASSISTANT_BAND: Final = "#0ea5e9"
_BAR_COLOR: Final = "#6366f1"
_AXIS_COLOR: Final = "#94a3b8"

_WIDTH: Final = 560
_HEIGHT: Final = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 28, 14, 36

_CSS: Final = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  background: #f1f5f9; color: #0f172a; }
main { max-width: 1240px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 4px; }
p.note { color: #475569; margin: 0 0 12px; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 18px 20px;
  margin: 0 0 18px; }
.kpis { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0 18px; }
.kpi { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 10px 14px;
  min-width: 120px; }
.kpi b { display: block; font-size: 22px; }
.kpi span { color: #475569; font-size: 12px; }
.pair { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
.pair svg { flex: 0 0 auto; max-width: 100%; height: auto; }
.scroll { overflow: auto; max-height: 340px; flex: 1 1 320px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: #475569; font-size: 12px; padding-bottom: 4px; }
th, td { padding: 3px 7px; border-bottom: 1px solid #e2e8f0; text-align: right;
  white-space: nowrap; }
th { background: #f8fafc; position: sticky; top: 0; font-weight: 600; white-space: normal;
  vertical-align: bottom; }
td.text, th.text { text-align: left; }
td.name { text-align: left; white-space: normal; min-width: 120px; max-width: 240px;
  overflow-wrap: anywhere; }
svg text { font: 11px system-ui, sans-serif; fill: #334155; }
.legend { font-size: 12px; color: #334155; margin: 6px 0 0; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin: 0 4px 0 12px; vertical-align: baseline; }
footer { color: #64748b; font-size: 12px; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def number(value: object) -> str:
    """A number as the page shows it: as the report rounded it (by :func:`round_half_up`),
    ``None`` as :data:`NO_DATA`."""
    return NO_DATA if value is None else str(value)


#: p-values are shown to 4 decimals; smaller ones as "< 0.0001" rather than 0.0.
P_PLACES: Final = 4
P_FLOOR: Final = "< 0.0001"


def p_text(p_value: float | None) -> str:
    """A p-value as the page shows it."""
    if p_value is None:
        return NO_DATA
    shown = round_half_up(p_value, P_PLACES)
    return P_FLOOR if shown == 0 else str(shown)


def percent(fraction: float) -> str:
    """A fraction (0..1) in percent, 1 decimal, by :func:`round_half_up`."""
    return str(round_half_up(fraction * 100, 1))


def _table(
    table_id: str,
    caption: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    text_columns: int = 0,
    names: bool = False,
) -> str:
    """A table of already formatted cells (escaped here); the first ``text_columns`` columns
    are text, the rest numbers; with ``names`` the first column is user data (may wrap)."""

    def cell(tag: str, index: int, value: object) -> str:
        kind = ""
        if index < text_columns:
            kind = ' class="name"' if names and index == 0 and tag == "td" else ' class="text"'
        return f"<{tag}{kind}>{_esc(value)}</{tag}>"

    head = "".join(cell("th", i, header) for i, header in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table id="{_esc(table_id)}"><caption>{_esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _svg(title: str, body: Iterable[str], width: int = _WIDTH, height: int = _HEIGHT) -> str:
    return (
        f'<svg role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{_esc(title)}</title>{"".join(body)}</svg>'
    )


def _c(value: float) -> str:
    """An SVG coordinate (a position, never a number shown to the reader)."""
    return f"{value:.1f}"


class _Plot:
    """The drawing area of a chart: values to pixels, axes and grid lines."""

    def __init__(self, x_max: float, y_max: float, width: int = _WIDTH, height: int = _HEIGHT):
        self.x_max = x_max if x_max > 0 else 1
        self.y_max = y_max if y_max > 0 else 1
        self.width, self.height = width, height

    def x(self, value: float) -> float:
        return _LEFT + value / self.x_max * (self.width - _LEFT - _RIGHT)

    def y(self, value: float) -> float:
        return self.height - _BOTTOM - value / self.y_max * (self.height - _TOP - _BOTTOM)

    def y_grid(self, ticks: Sequence[tuple[float, str]]) -> list[str]:
        parts = []
        for value, label in ticks:
            y = _c(self.y(value))
            parts.append(
                f'<line x1="{_LEFT}" x2="{self.width - _RIGHT}" y1="{y}" y2="{y}" '
                f'stroke="#e2e8f0"/><text x="{_LEFT - 6}" y="{y}" text-anchor="end" '
                f'dominant-baseline="middle">{_esc(label)}</text>'
            )
        base = _c(self.y(0))
        parts.append(
            f'<line x1="{_LEFT}" x2="{self.width - _RIGHT}" y1="{base}" y2="{base}" '
            f'stroke="{_AXIS_COLOR}"/>'
        )
        return parts

    def x_label(self, value: float, label: str) -> str:
        return (
            f'<text x="{_c(self.x(value))}" y="{self.height - _BOTTOM + 16}" '
            f'text-anchor="middle">{_esc(label)}</text>'
        )

    def band(self, low: float, high: float, color: str, label: str) -> str:
        top, bottom = self.y(high), self.y(low)
        return (
            f'<rect x="{_LEFT}" y="{_c(top)}" width="{self.width - _LEFT - _RIGHT}" '
            f'height="{_c(bottom - top)}" fill="{color}" fill-opacity="0.13"/>'
            f'<text x="{self.width - _RIGHT - 4}" y="{_c(top + 12)}" text-anchor="end" '
            f'fill="{color}">{_esc(label)}</text>'
        )


_PERCENT_TICKS: Final = [(value, f"{value}%") for value in range(0, 101, 20)]


def _polyline(points: Sequence[tuple[float, float]], color: str) -> str:
    if not points:
        return ""
    coordinates = " ".join(f"{_c(x)},{_c(y)}" for x, y in points)
    dots = "".join(f'<circle cx="{_c(x)}" cy="{_c(y)}" r="3" fill="{color}"/>' for x, y in points)
    line = (
        f'<polyline points="{coordinates}" fill="none" stroke="{color}" stroke-width="2"/>'
        if len(points) > 1
        else ""
    )
    return line + dots


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    items = "".join(
        f'<span class="swatch" style="background:{color}"></span>{_esc(label)}'
        for color, label in entries
    )
    return f'<p class="legend">{items}</p>'


def _section(title: str, note: str, chart: str, table: str, section_id: str) -> str:
    return (
        f'<section id="{_esc(section_id)}"><h2>{_esc(title)}</h2><p class="note">{note}</p>'
        f'<div class="pair"><div>{chart}</div>{table}</div></section>'
    )


def _target(target: tuple[int, int]) -> str:
    return f"{target[0]}–{target[1]}%"


def trend_section(report: Report) -> str:
    """Daily completion and abandonment against the article's completion targets."""
    daily = report.daily
    note = (
        "Per UTC day, conversations by the day of their first event in the window. Shaded: the "
        f"article's completion targets, support agents {_esc(_target(SUPPORT_COMPLETION_TARGET))}"
        f" and general assistants {_esc(_target(ASSISTANT_COMPLETION_TARGET))} (the article "
        "sets none for abandonment; its alert signal is a 5% week-over-week drop in completion)."
    )
    days = [date.fromisoformat(point.day) for point in daily]
    span = (days[-1] - days[0]).days if days else 0
    plot = _Plot(max(span, 1), 100)
    position = [
        (day - days[0]).days if span else plot.x_max / 2 for day in days
    ]  # one day sits in the middle
    parts = [
        plot.band(*SUPPORT_COMPLETION_TARGET, _SUPPORT_BAND, "support target"),
        plot.band(*ASSISTANT_COMPLETION_TARGET, _ASSISTANT_BAND, "assistant target"),
        *plot.y_grid(_PERCENT_TICKS),
    ]
    every = max(1, len(daily) // 8)
    for index, (point, x) in enumerate(zip(daily, position, strict=True)):
        if index % every == 0 or index == len(daily) - 1:
            parts.append(plot.x_label(x, point.day[5:]))
    for key, color in (
        ("completion_rate", _COMPLETION_COLOR),
        ("abandonment_rate", _ABANDONMENT_COLOR),
    ):
        points = [
            (plot.x(x), plot.y(value))
            for point, x in zip(daily, position, strict=True)
            if (value := getattr(point, key)) is not None
        ]
        parts.append(_polyline(points, color))
    if not daily:
        parts.append(_empty(plot))
    chart = _svg("Daily completion and abandonment rate", parts) + _legend(
        [(_COMPLETION_COLOR, "completion %"), (_ABANDONMENT_COLOR, "abandonment %")]
    )
    table = _table(
        "trend-table",
        "Per day",
        ("day", "convs", "completed", "abandoned", "completion %", "abandonment %"),
        (
            (
                point.day,
                point.conversations,
                point.completed,
                point.abandoned,
                number(point.completion_rate),
                number(point.abandonment_rate),
            )
            for point in daily
        ),
        text_columns=1,
    )
    return _section("Completion and abandonment, day by day", note, chart, table, "trend")


def _empty(plot: _Plot) -> str:
    return (
        f'<text x="{_c(plot.width / 2)}" y="{_c(plot.height / 2)}" text-anchor="middle">'
        "no data in the window</text>"
    )


def survival_section(report: Report) -> str:
    """Kaplan-Meier "not abandoned yet" by user turn, and the "reached turn N" funnel."""
    steps = report.survival[:MAX_FUNNEL_TURNS]
    reached = {step.turn: step.conversations for step in report.reached_turn}
    last = steps[-1].turn if steps else 1
    plot = _Plot(last, 100)
    parts = plot.y_grid(_PERCENT_TICKS)
    every = max(1, last // 10)
    parts += [plot.x_label(turn, str(turn)) for turn in range(0, last + 1, every)]
    points: list[tuple[float, float]] = [(plot.x(0), plot.y(100))]
    for step in steps:  # a step function: flat until the turn, then down
        points.append((plot.x(step.turn), points[-1][1]))
        points.append((plot.x(step.turn), plot.y(step.survival * 100)))
    if steps:
        parts.append(
            '<polyline points="'
            + " ".join(f"{_c(x)},{_c(y)}" for x, y in points)
            + f'" fill="none" stroke="{_COMPLETION_COLOR}" stroke-width="2"/>'
        )
    else:
        parts.append(_empty(plot))
    parts.append(
        f'<text x="{_c(plot.width / 2)}" y="{plot.height - 4}" text-anchor="middle">'
        "user turn</text>"
    )
    note = (
        "Share of conversations not yet abandoned by each user turn (Kaplan–Meier; completed, "
        "handed-off and open conversations are censored at their last user turn)."
    )
    more = len(report.survival) - len(steps)
    caption = "By user turn" + (f" (first {len(steps)}; {more} more in JSON)" if more > 0 else "")
    table = _table(
        "survival-table",
        caption,
        ("turn", "reached", "at risk", "abandoned", "censored", "survival %"),
        (
            (
                step.turn,
                reached.get(step.turn, step.at_risk),
                step.at_risk,
                step.abandoned,
                step.censored,
                percent(step.survival),
            )
            for step in steps
        ),
    )
    chart = _svg("Survival by user turn", parts)
    return _section("How long people stay", note, chart, table, "survival")


def compare_section(comparison: Comparison) -> str:
    """Groups side by side: completion and abandonment with their 95% Wilson intervals."""
    groups = comparison.groups
    row_height = 38
    height = _TOP + _BOTTOM + row_height * max(1, len(groups))
    label_width = 150
    width = _WIDTH
    scale_left, scale_right = label_width, width - _RIGHT

    def x(value: float) -> float:
        return scale_left + value / 100 * (scale_right - scale_left)

    parts: list[str] = []
    for low, high, color in (
        (*ASSISTANT_COMPLETION_TARGET, _ASSISTANT_BAND),
        (*SUPPORT_COMPLETION_TARGET, _SUPPORT_BAND),
    ):
        parts.append(
            f'<rect x="{_c(x(low))}" y="{_TOP}" width="{_c(x(high) - x(low))}" '
            f'height="{height - _TOP - _BOTTOM}" fill="{color}" fill-opacity="0.13"/>'
        )
    for value in range(0, 101, 20):
        parts.append(
            f'<line x1="{_c(x(value))}" x2="{_c(x(value))}" y1="{_TOP}" '
            f'y2="{height - _BOTTOM}" stroke="#e2e8f0"/><text x="{_c(x(value))}" '
            f'y="{height - _BOTTOM + 16}" text-anchor="middle">{value}%</text>'
        )
    for index, group in enumerate(groups):
        top = _TOP + index * row_height
        name = group.value or _NO_VALUE
        if len(name) > 22:
            name = name[:21] + "…"
        parts.append(
            f'<text x="{label_width - 8}" y="{top + row_height / 2}" text-anchor="end" '
            f'dominant-baseline="middle">{_esc(name)}</text>'
        )
        for offset, rate, interval, color in (
            (7, group.completion_rate, group.completion_ci, _COMPLETION_COLOR),
            (21, group.abandonment_rate, group.abandonment_ci, _ABANDONMENT_COLOR),
        ):
            if rate is None:
                continue
            parts.append(
                f'<rect x="{_c(x(0))}" y="{top + offset - 5}" width="{_c(x(rate) - x(0))}" '
                f'height="10" fill="{color}" fill-opacity="0.75"/>'
            )
            if interval is not None:
                left, right = x(interval[0]), x(interval[1])
                middle = top + offset
                parts.append(
                    f'<path d="M{_c(left)} {middle - 5}v10M{_c(left)} {middle}H{_c(right)}'
                    f'M{_c(right)} {middle - 5}v10" stroke="#0f172a" stroke-width="1.5" '
                    'fill="none"/>'
                )
    if not groups:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data in the window'
            "</text>"
        )
    chart = _svg(f"Completion and abandonment by {comparison.by}", parts, width, height) + _legend(
        [(_COMPLETION_COLOR, "completion %"), (_ABANDONMENT_COLOR, "abandonment %")]
    )
    baseline = comparison.baseline if comparison.baseline is not None else NO_DATA
    note = (
        f"By {_esc(comparison.by)}: bars are rates, whiskers their 95% Wilson intervals; shaded: "
        "the article's completion targets. Completion is tested against the baseline "
        f"<b>{_esc(baseline or _NO_VALUE)}</b> by a two-sided pooled z-test (significant: p &lt; "
        f"0.05 with at least {MIN_COMPARE_SAMPLE} conversations in each group)."
    )

    def verdict(group: Any) -> tuple[str, str, str]:
        versus = group.vs_baseline
        if versus is None:
            return ("baseline", NO_DATA, "")
        p_value = p_text(versus.completion_p_value)
        called = (
            "significant"
            if versus.significant
            else ("too few" if versus.note else "not significant")
        )
        return (number(versus.completion_diff), p_value, called)

    def bound(interval: Sequence[float] | None, index: int) -> str:
        return NO_DATA if interval is None else number(interval[index])

    table = _table(
        "compare-table",
        f"By {comparison.by}, baseline first",
        (
            comparison.by,
            "conversations",
            "completion %",
            "CI low",
            "CI high",
            "abandonment %",
            "CI low",
            "CI high",
            "satisfaction",
            "CI low",
            "CI high",
            "vs baseline pts",
            "p",
            "",
        ),
        (
            (
                group.value or _NO_VALUE,
                group.conversations,
                number(group.completion_rate),
                bound(group.completion_ci, 0),
                bound(group.completion_ci, 1),
                number(group.abandonment_rate),
                bound(group.abandonment_ci, 0),
                bound(group.abandonment_ci, 1),
                number(group.avg_satisfaction),
                bound(group.satisfaction_ci, 0),
                bound(group.satisfaction_ci, 1),
                *verdict(group),
            )
            for group in groups
        ),
        text_columns=1,
        names=True,
    )
    return (
        f'<section id="compare"><h2>{_esc(f"Side by side, by {comparison.by}")}</h2>'
        f'<p class="note">{note}</p>{chart}<div class="pair">{table}</div></section>'
    )


def distribution_section(report: Report) -> str:
    """How many conversations scored each tenth of satisfaction."""
    bins = report.satisfaction_distribution
    top = max((entry.conversations for entry in bins), default=0)
    plot = _Plot(len(bins) or 10, top or 1)
    ticks = sorted({0, top // 2, top}) if top else [0]
    parts = plot.y_grid([(value, str(value)) for value in ticks])
    for index, entry in enumerate(bins):
        left, right = plot.x(index) + 2, plot.x(index + 1) - 2
        y = plot.y(entry.conversations)
        parts.append(
            f'<rect x="{_c(left)}" y="{_c(y)}" width="{_c(right - left)}" '
            f'height="{_c(plot.y(0) - y)}" fill="{_BAR_COLOR}"/>'
        )
        parts.append(plot.x_label(index, number(entry.bin_start)))
    if bins:
        parts.append(plot.x_label(len(bins), number(bins[-1].bin_end)))
    else:
        parts.append(_empty(plot))
    note = (
        "Conversations by their satisfaction score (a mean of explicit feedback and implicit "
        f"signals, 0 to 1), in tenths. Mean: <b>{_esc(number(report.avg_satisfaction))}</b>."
    )
    table = _table(
        "distribution-table",
        "Per bin (the last bin includes 1.0)",
        ("from", "to", "conversations"),
        ((number(entry.bin_start), number(entry.bin_end), entry.conversations) for entry in bins),
    )
    return _section(
        "Satisfaction", note, _svg("Satisfaction distribution", parts), table, "satisfaction"
    )


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def exit_section(report: Report) -> str:
    """Where people leave: the drop-off by turn, and what came last before leaving (the
    report's ``exit_context``: last step, last tool, rephrases in the last two turns)."""
    drop_off = report.drop_off
    top = max((entry.count for entry in drop_off), default=0)
    row_height = 24
    height = _TOP + _BOTTOM + row_height * max(1, len(drop_off))
    plot = _Plot(top or 1, 1, _WIDTH - 40, height)  # room for the count after the bar
    parts = []
    for index, entry in enumerate(drop_off):
        y = _TOP + index * row_height
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + row_height / 2}" text-anchor="end" '
            f'dominant-baseline="middle">{_esc(number(entry.turn))}</text>'
            f'<rect x="{_LEFT}" y="{y + 4}" width="{_c(plot.x(entry.count) - _LEFT)}" '
            f'height="{row_height - 8}" fill="{_ABANDONMENT_COLOR}" fill-opacity="0.75"/>'
            f'<text x="{_c(plot.x(entry.count) + 4)}" '
            f'y="{y + row_height / 2}" dominant-baseline="middle">{entry.count}</text>'
        )
    if not drop_off:
        parts.append(
            f'<text x="{_WIDTH / 2}" y="{height / 2}" text-anchor="middle">'
            "no abandoned conversations</text>"
        )
    note = "Abandoned conversations by the user turn they left at, most frequent first (top 10)."
    table = _table(
        "dropoff-table",
        "Abandoned at turn",
        ("turn", "abandoned"),
        ((number(entry.turn), entry.count) for entry in drop_off),
    )
    chart = _svg("Drop-off by turn", parts, _WIDTH, height)
    return _section("Where people leave", note, chart, table + _exit_tables(report), "exits")


def _exit_tables(report: Report) -> str:
    """The top exit contexts as tables; nothing when no abandonment stands."""
    context = report.exit_context
    if not context.abandoned:
        return ""
    steps = _table(
        "exit-table",
        f"Last step before leaving ({context.abandoned} abandoned)",
        ("last step", "conversations", "share %"),
        ((entry.kind, entry.conversations, number(entry.share)) for entry in context.last_event),
        text_columns=1,
    )
    tools = _table(
        "exit-tool-table",
        "Last tool called",
        ("tool", "failed", "conversations", "share %"),
        (
            (
                entry.tool or "(none)",
                "yes" if entry.failed else "no",
                entry.conversations,
                number(entry.share),
            )
            for entry in context.last_tool
        ),
        text_columns=2,
        names=True,
    )
    rephrased = context.rephrased_in_last_two_turns
    note = (
        f'<p class="note">Rephrased in their last two turns: {rephrased.conversations} '
        f"({_esc(number(rephrased.share))}%).</p>"
    )
    return steps + tools + note


def _kpis(report: Report) -> str:
    items = [
        ("conversations", number(report.total_conversations)),
        ("completion", _with(report.completion_rate, "%")),
        ("abandonment", _with(report.abandonment_rate, "%")),
        ("handoff", _with(report.handoff_rate, "%")),
        ("avg turns", number(report.avg_turns)),
        ("avg duration", _with(report.avg_duration_seconds, " s")),
        ("satisfaction", number(report.avg_satisfaction)),
        ("rephrase rate", _with(report.rephrase_rate, "%")),
    ]
    cells = "".join(
        f"<div class='kpi'><b>{_esc(v)}</b><span>{_esc(k)}</span></div>" for k, v in items
    )
    return f'<div class="kpis" id="kpis">{cells}</div>'


def _with(value: object, suffix: str) -> str:
    return NO_DATA if value is None else f"{number(value)}{suffix}"


def render_html(report: Report, comparison: Comparison, *, agent: str = "") -> str:
    """The whole page: a self-contained HTML document (no script, nothing fetched)."""
    scope = f", agent {agent}" if agent else ""
    title = f"Conversation analytics — last {report.days} days{scope}"
    sections = [
        trend_section(report),
        survival_section(report),
        compare_section(comparison),
        distribution_section(report),
        exit_section(report),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_esc(CONTENT_SECURITY_POLICY)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main><h1>{_esc(title)}</h1>"
        '<p class="note">Every number is also in a table; this page loads nothing and runs no '
        "script.</p>"
        f"{_kpis(report)}{''.join(sections)}"
        f"<footer>conversation-analytics {_esc(__version__)} · report --format html</footer>"
        "</main></body></html>\n"
    )
