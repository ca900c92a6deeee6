"""Section 4 of the spec: the metric definitions, rounded exactly as the article's PostgreSQL does.

SQL returns exact integer counts and sums; rates and means are computed here with ``Decimal`` and
rounded half away from zero (PostgreSQL's ``ROUND`` on ``numeric``), never with float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import Enum
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.stats import (
    ALPHA,
    SurvivalStep,
    kaplan_meier,
    mean_interval,
    two_proportion_z_test,
    wilson_interval,
)
from opentelemetry.instrumentation.conversation.semconv import (
    RATING_NEGATIVE,
    RATING_POSITIVE,
    ConversationEvent,
)

DEFAULT_DAYS = 7

#: The article's completion targets, in percent (SPEC section 4): the one place they are
#: spelled; the terminal report, the HTML report and the Grafana dashboards read them here.
SUPPORT_COMPLETION_TARGET: Final = (70, 85)
ASSISTANT_COMPLETION_TARGET: Final = (50, 60)


#: Digits kept while dividing, far more than any exact sum from the store carries, so the
#: quotient is rounded only once.
_PRECISION = 80


def round_half_up(value: Decimal | float, places: int) -> float:
    """The project's one rounding rule: half away from zero at ``places`` decimals, as
    PostgreSQL's ``ROUND`` on ``numeric`` (a float is rounded as the decimal it prints as)."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return float(exact.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def _round(numerator: int | Decimal, denominator: int, places: int) -> float | None:
    """``numerator / denominator`` by :func:`round_half_up`; ``None`` when there is no data.

    Inputs are exact (integer counts, ``Decimal`` sums read as text), so the same data always
    reads the same."""
    if denominator == 0:
        return None
    with localcontext() as context:
        context.prec = _PRECISION
        return round_half_up(Decimal(numerator) / Decimal(denominator), places)


def _percent(part: int, whole: int) -> float | None:
    return _round(part * 100, whole, 1)


@dataclass
class FunnelStep:
    """How many conversations reached user turn ``turn`` (their duration is at least it)."""

    turn: int
    conversations: int


#: The funnel stops here: one outlier with thousands of turns must not make the report huge.
MAX_FUNNEL_TURNS: Final = 100


def survival_curve(
    durations: Iterable[tuple[int, bool, int]],
) -> tuple[list[SurvivalStep], list[FunnelStep]]:
    """Kaplan-Meier "has not abandoned yet" by user turn, and the "reached turn N" funnel, from
    ``(turn, abandoned, conversations)`` counts; the survival is left unrounded (it is a
    product, and rounding each step would compound)."""
    steps = kaplan_meier(durations)
    reached: list[FunnelStep] = []
    if steps:
        last = min(steps[-1].turn, MAX_FUNNEL_TURNS)
        remaining = iter(steps)
        step: SurvivalStep | None = next(remaining)
        for turn in range(1, last + 1):
            while step is not None and step.turn < turn:
                step = next(remaining, None)
            reached.append(FunnelStep(turn, step.at_risk if step is not None else 0))
    return steps, reached


def _with_survival(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its ``survival`` and ``reached_turn`` lists as dataclasses (absent: empty,
    as from a collector older than them)."""
    values = dict(data)
    values["survival"] = [SurvivalStep(**entry) for entry in values.get("survival", [])]
    values["reached_turn"] = [FunnelStep(**entry) for entry in values.get("reached_turn", [])]
    return values


@dataclass
class ExitKindShare:
    """Abandoned conversations whose last step was ``kind``, and their percent of them."""

    kind: str
    conversations: int
    share: float | None


@dataclass
class LastToolShare:
    """Abandoned conversations whose last tool call was ``tool`` (``None``: they called none),
    split by whether that call failed, and their percent of the abandoned conversations."""

    tool: str | None
    failed: bool
    conversations: int
    share: float | None


@dataclass
class CountShare:
    """A count of abandoned conversations and its percent of them."""

    conversations: int = 0
    share: float | None = None


@dataclass
class ExitContext:
    """What came last before people left: over conversations whose abandonment stands (the
    report's ``abandonment_rate`` rule), the last step, the last tool and whether it failed,
    and how many had a rephrase in their last two user turns."""

    abandoned: int = 0
    last_event: list[ExitKindShare] = field(default_factory=list)
    last_tool: list[LastToolShare] = field(default_factory=list)
    rephrased_in_last_two_turns: CountShare = field(default_factory=CountShare)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExitContext:
        return cls(
            abandoned=int(data.get("abandoned", 0)),
            last_event=[ExitKindShare(**entry) for entry in data.get("last_event", [])],
            last_tool=[LastToolShare(**entry) for entry in data.get("last_tool", [])],
            rephrased_in_last_two_turns=CountShare(**data.get("rephrased_in_last_two_turns", {})),
        )


def _with_exit_context(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its ``exit_context`` as a dataclass (absent: empty, as from an older
    collector)."""
    values = dict(data)
    values["exit_context"] = ExitContext.from_dict(values.get("exit_context") or {})
    return values


@dataclass
class DropOff:
    """How many ``abandoned`` events name this turn."""

    turn: int | None
    count: int


@dataclass
class DailyPoint:
    """One UTC day of the window: the conversations whose first event in the window fell on
    it, and their completion and abandonment rates (percent, 1 decimal)."""

    day: str
    conversations: int
    completed: int
    abandoned: int
    completion_rate: float | None
    abandonment_rate: float | None


def daily_point(row: Mapping[str, Any]) -> DailyPoint:
    """A :class:`DailyPoint` from one row of exact counts (``day``, ``conversations``,
    ``completed``, ``abandoned``)."""
    total, completed, abandoned = (
        int(row[key] or 0) for key in ("conversations", "completed", "abandoned")
    )
    return DailyPoint(
        day=str(row["day"]),
        conversations=total,
        completed=completed,
        abandoned=abandoned,
        completion_rate=_percent(completed, total),
        abandonment_rate=_percent(abandoned, total),
    )


#: Satisfaction scores (0..1) are binned in tenths; a score of exactly 1.0 falls in the last.
SATISFACTION_BINS: Final = 10


@dataclass
class SatisfactionBin:
    """Conversations whose satisfaction lies in ``[bin_start, bin_end)`` (the last bin also
    holds ``bin_end``)."""

    bin_start: float
    bin_end: float
    conversations: int


def satisfaction_distribution(counts: Mapping[int, int]) -> list[SatisfactionBin]:
    """Every bin from ``{bin index: conversations}`` (absent bins count 0)."""
    return [
        SatisfactionBin(
            bin_start=round_half_up(Decimal(index) / SATISFACTION_BINS, 1),
            bin_end=round_half_up(Decimal(index + 1) / SATISFACTION_BINS, 1),
            conversations=int(counts.get(index, 0)),
        )
        for index in range(SATISFACTION_BINS)
    ]


@dataclass
class Report:
    """The report of SPEC section 4; ``None`` where the article's SQL gives NULL (no data)."""

    total_conversations: int
    completion_rate: float | None
    abandonment_rate: float | None
    handoff_rate: float | None
    avg_turns: float | None
    avg_duration_seconds: int | None
    drop_off: list[DropOff] = field(default_factory=list)
    avg_satisfaction: float | None = None
    rephrase_rate: float | None = None
    days: int = DEFAULT_DAYS
    agents: list[AgentReport] = field(default_factory=list)
    evaluations: list[EvaluationReport] = field(default_factory=list)
    survival: list[SurvivalStep] = field(default_factory=list)
    reached_turn: list[FunnelStep] = field(default_factory=list)
    daily: list[DailyPoint] = field(default_factory=list)
    satisfaction_distribution: list[SatisfactionBin] = field(default_factory=list)
    exit_context: ExitContext = field(default_factory=ExitContext)
    tool_lift: list[ToolLift] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tool_lift"] = [lift.to_dict() for lift in self.tool_lift]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Inverse of :meth:`to_dict` (a report fetched from a running collector; keys an
        older collector does not send take their defaults)."""
        values = _with_survival(data)
        values["daily"] = [DailyPoint(**entry) for entry in values.get("daily", [])]
        values["satisfaction_distribution"] = [
            SatisfactionBin(**entry) for entry in values.get("satisfaction_distribution", [])
        ]
        values["drop_off"] = [DropOff(**entry) for entry in values.get("drop_off", [])]
        values["agents"] = [
            AgentReport(**_with_exit_context(_with_survival(entry)))
            for entry in values.get("agents", [])
        ]
        values["evaluations"] = [
            EvaluationReport.from_dict(entry) for entry in values.get("evaluations", [])
        ]
        values["tool_lift"] = [ToolLift.from_dict(entry) for entry in values.get("tool_lift", [])]
        return cls(**_with_exit_context(values))


@dataclass
class LabelShare:
    """How many evaluations carried this label, and their percent of the group's evaluations."""

    label: str
    count: int
    share: float | None


@dataclass
class EvaluationGroup:
    """One evaluation's results for one agent and agent version."""

    agent: str
    agent_version: str
    evaluations: int
    mean_score: float | None
    labels: list[LabelShare]


@dataclass
class EvaluationReport:
    """One evaluation name (``gen_ai.evaluation.name``): count, mean score (of the scored ones,
    3 decimals), label shares, overall and per agent and version."""

    name: str
    evaluations: int
    mean_score: float | None
    labels: list[LabelShare]
    by_agent: list[EvaluationGroup]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        values = dict(data)
        values["labels"] = [LabelShare(**entry) for entry in values.get("labels", [])]
        values["by_agent"] = [
            EvaluationGroup(
                **{**group, "labels": [LabelShare(**entry) for entry in group["labels"]]}
            )
            for group in values.get("by_agent", [])
        ]
        return cls(**values)


class _EvaluationTally:
    """Exact counts and score sums of one group, rounded only when reported."""

    def __init__(self) -> None:
        self.evaluations = 0
        self.scored = 0
        self.score_sum = Decimal(0)
        self.labels: dict[str, int] = {}

    def add(self, row: Mapping[str, Any]) -> None:
        count = int(row["evaluations"])
        self.evaluations += count
        self.scored += int(row["scored"])
        self.score_sum += Decimal(str(row["score_sum"] or 0))
        label = str(row["label"])
        if label:
            self.labels[label] = self.labels.get(label, 0) + count

    def stats(self) -> dict[str, Any]:
        mean = _round(self.score_sum, self.scored, 3)
        labels = [
            LabelShare(label, count, _percent(count, self.evaluations))
            for label, count in sorted(self.labels.items(), key=lambda item: (-item[1], item[0]))
        ]
        return {"evaluations": self.evaluations, "mean_score": mean, "labels": labels}


def summarize_evaluations(rows: Iterable[Mapping[str, Any]]) -> list[EvaluationReport]:
    """Per-name evaluation reports from rows of (name, agent, agent_version, label) counts."""
    names: dict[str, _EvaluationTally] = {}
    groups: dict[tuple[str, str, str], _EvaluationTally] = {}
    for row in rows:
        name = str(row["name"])
        names.setdefault(name, _EvaluationTally()).add(row)
        key = (name, str(row["agent"]), str(row["agent_version"]))
        groups.setdefault(key, _EvaluationTally()).add(row)
    reports = []
    for name in sorted(names):
        by_agent = [
            EvaluationGroup(agent=agent, agent_version=version, **tally.stats())
            for (group_name, agent, version), tally in sorted(groups.items())
            if group_name == name
        ]
        reports.append(EvaluationReport(name=name, by_agent=by_agent, **names[name].stats()))
    return reports


@dataclass
class AgentReport:
    """Per-agent breakdown: the same definitions over one agent's conversations."""

    agent: str
    total_conversations: int
    completion_rate: float | None
    abandonment_rate: float | None
    handoff_rate: float | None
    avg_turns: float | None
    avg_duration_seconds: int | None
    avg_satisfaction: float | None
    rephrase_rate: float | None
    survival: list[SurvivalStep] = field(default_factory=list)
    reached_turn: list[FunnelStep] = field(default_factory=list)
    exit_context: ExitContext = field(default_factory=ExitContext)


def summarize(row: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one summary row of exact counts into the rounded section 4 numbers."""

    def count(key: str) -> int:  # engines give JSON text or ints; NULL sums mean none
        return int(row[key] or 0)

    total = count("conversations")
    messages = count("messages_total")
    duration = _round(count("duration_us"), count("timed") * 1_000_000, 0)
    return {
        "total_conversations": total,
        "completion_rate": _percent(count("completed"), total),
        "abandonment_rate": _percent(count("abandoned"), total),
        "handoff_rate": _percent(count("handoffs"), total),
        "avg_turns": _round(messages, total, 1),
        "avg_duration_seconds": None if duration is None else int(duration),
        # An exact decimal sum, sent as text: a float sum depends on the order rows arrive in.
        "avg_satisfaction": _round(Decimal(str(row["satisfaction_sum"] or 0)), total, 3),
        "rephrase_rate": _percent(count("rephrases_total"), messages),
    }


@dataclass
class ConversationDetail:
    """One conversation: its events in order and its satisfaction score."""

    conversation_id: str
    satisfaction: float
    events: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversationDetail:
        return cls(**data)


def satisfaction_score(
    *, positive: int, negative: int, user_messages: int, completed: bool, handoff: bool
) -> float:
    """The article's satisfaction score of one conversation, from its counts.

    Explicit feedback: positive 1.0, negative 0.0. One implicit outcome signal: completed within
    three user messages 0.9, else a handoff 0.3, else not completed 0.1. More than two user
    messages add ``max(0, 0.8 - 0.1 * max(0, n - 3))``. No signals: 0.5.
    """
    signals = [1.0] * positive + [0.0] * negative
    if completed and user_messages <= 3:
        signals.append(0.9)
    elif handoff:
        signals.append(0.3)
    elif not completed:
        signals.append(0.1)
    if user_messages > 2:
        penalty = max(0, (user_messages - 3) * 0.1)
        signals.append(max(0.0, 0.8 - penalty))
    return sum(signals) / len(signals) if signals else 0.5


def satisfaction(events: Iterable[Mapping[str, Any]]) -> float:
    """:func:`satisfaction_score` over one conversation's events (``event_type``, rating)."""
    events = list(events)
    kinds = [(event["event_type"], event.get("feedback_rating")) for event in events]
    user = ConversationEvent.USER_MESSAGE.value
    explicit = sum(e["event_type"] == user and not e.get("derived") for e in events)
    derived = sum(e["event_type"] == user and bool(e.get("derived")) for e in events)
    return satisfaction_score(
        positive=kinds.count((ConversationEvent.FEEDBACK_RECEIVED.value, RATING_POSITIVE)),
        negative=kinds.count((ConversationEvent.FEEDBACK_RECEIVED.value, RATING_NEGATIVE)),
        # Explicit user messages win over ones derived from GenAI spans, as in the store.
        user_messages=explicit or derived,
        completed=any(kind == ConversationEvent.COMPLETED.value for kind, _ in kinds),
        handoff=any(kind == ConversationEvent.HANDOFF_REQUESTED.value for kind, _ in kinds),
    )


#: Below this many conversations in a group (or its baseline) ``compare`` never calls a
#: difference significant: the z-test's normal approximation is poor there, and a handful of
#: conversations should not drive a product decision.
MIN_COMPARE_SAMPLE: Final = 30
TOO_FEW_NOTE: Final = f"too few conversations (fewer than {MIN_COMPARE_SAMPLE} in a group)"
#: Satisfaction scores lie in 0..1, and so does their interval.
SATISFACTION_RANGE: Final = (0.0, 1.0)


@dataclass
class VsBaseline:
    """One group against the baseline: completion difference in percentage points, the
    two-sided pooled z-test's p-value (unrounded), and whether p < 0.05 with enough data."""

    completion_diff: float | None
    completion_p_value: float | None
    significant: bool
    note: str | None = None


@dataclass
class CompareGroup:
    """One value of the compared dimension: rates in percent with 95% Wilson intervals, the
    satisfaction mean with its 95% t-interval, the survival curve, and the test vs baseline."""

    value: str
    conversations: int
    completed: int
    abandoned: int
    handoffs: int
    completion_rate: float | None
    completion_ci: list[float] | None
    abandonment_rate: float | None
    abandonment_ci: list[float] | None
    handoff_rate: float | None
    handoff_ci: list[float] | None
    avg_turns: float | None
    avg_satisfaction: float | None
    satisfaction_ci: list[float] | None
    vs_baseline: VsBaseline | None
    #: Share of the group's user messages that rephrase the previous one (percent, 1 decimal):
    #: an early sign that one prompt or model is understood worse than another.
    rephrase_rate: float | None = None
    survival: list[SurvivalStep] = field(default_factory=list)
    reached_turn: list[FunnelStep] = field(default_factory=list)


@dataclass
class Comparison:
    """``compare --by DIMENSION``: every group of the window, the baseline first."""

    by: str
    baseline: str | None
    days: int
    groups: list[CompareGroup]
    agent: str = ""
    min_sample: int = MIN_COMPARE_SAMPLE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """Inverse of :meth:`to_dict` (a comparison fetched from a running collector)."""
        values = dict(data)
        groups = []
        for entry in values.get("groups", []):
            group = _with_survival(entry)
            if group.get("vs_baseline") is not None:
                group["vs_baseline"] = VsBaseline(**group["vs_baseline"])
            groups.append(CompareGroup(**group))
        values["groups"] = groups
        return cls(**values)


def _percent_interval(successes: int, trials: int) -> list[float] | None:
    interval = wilson_interval(successes, trials)
    if interval is None:
        return None
    return [round_half_up(bound * 100, 1) for bound in interval]


def _vs_baseline(row: Mapping[str, Any], base: Mapping[str, Any]) -> VsBaseline:
    completed, total = int(row["completed"]), int(row["conversations"])
    base_completed, base_total = int(base["completed"]), int(base["conversations"])
    # The difference from exact counts, in percentage points, not from two rounded rates.
    diff = _round((completed * base_total - base_completed * total) * 100, total * base_total, 1)
    test = two_proportion_z_test(completed, total, base_completed, base_total)
    p_value = None if test is None else test.p_value
    if min(total, base_total) < MIN_COMPARE_SAMPLE:
        return VsBaseline(diff, p_value, False, TOO_FEW_NOTE)
    return VsBaseline(diff, p_value, p_value is not None and p_value < ALPHA)


def compare_groups(
    by: str,
    days: int,
    rows: Iterable[Mapping[str, Any]],
    curves: Mapping[str | None, tuple[list[SurvivalStep], list[FunnelStep]]],
    *,
    baseline: str | None = None,
    agent: str = "",
) -> Comparison:
    """The comparison from one row of exact counts per group (``value``, ``conversations``,
    ``completed``, ``abandoned``, ``handoffs``, ``messages_total``, ``satisfaction_sum``,
    ``satisfaction_squares``) and each group's survival curve and funnel.

    The default baseline is the largest group (ties: the smallest value), the one whose rates
    are known best. A named baseline with no conversations is a ``ValueError``.
    """
    groups = {str(row["value"]): row for row in rows}
    if baseline is None and groups:
        baseline = min(groups, key=lambda value: (-int(groups[value]["conversations"]), value))
    elif baseline is not None and groups and baseline not in groups:
        values = ", ".join(repr(value) for value in sorted(groups))
        raise ValueError(
            f"baseline {baseline!r} has no conversations by {by} in the last {days} days "
            f"(values: {values})"
        )
    ordered = sorted(
        groups, key=lambda value: (value != baseline, -int(groups[value]["conversations"]), value)
    )
    base = groups[baseline] if baseline is not None and groups else {}
    result = []
    for value in ordered:
        row = groups[value]
        total = int(row["conversations"])
        completed, abandoned = int(row["completed"]), int(row["abandoned"])
        handoffs = int(row["handoffs"])
        satisfaction_sum = Decimal(str(row["satisfaction_sum"] or 0))  # exact, as text
        squares = Decimal(str(row["satisfaction_squares"] or 0))
        satisfaction_ci = mean_interval(
            total, float(satisfaction_sum), float(squares), SATISFACTION_RANGE
        )
        survival, reached = curves.get(value, ([], []))
        result.append(
            CompareGroup(
                value=value,
                conversations=total,
                completed=completed,
                abandoned=abandoned,
                handoffs=handoffs,
                completion_rate=_percent(completed, total),
                completion_ci=_percent_interval(completed, total),
                abandonment_rate=_percent(abandoned, total),
                abandonment_ci=_percent_interval(abandoned, total),
                handoff_rate=_percent(handoffs, total),
                handoff_ci=_percent_interval(handoffs, total),
                avg_turns=_round(int(row["messages_total"] or 0), total, 1),
                rephrase_rate=_percent(
                    int(row.get("rephrases_total") or 0), int(row["messages_total"] or 0)
                ),
                avg_satisfaction=_round(satisfaction_sum, total, 3),
                satisfaction_ci=None
                if satisfaction_ci is None
                else [round_half_up(bound, 3) for bound in satisfaction_ci],
                vs_baseline=None if value == baseline else _vs_baseline(row, base),
                survival=survival,
                reached_turn=reached,
            )
        )
    return Comparison(by=by, baseline=baseline, days=days, groups=result, agent=agent)


# ---- why people leave: exit context and tool lift --------------------------------------------


class ExitKind(str, Enum):
    """What came last before the user of an abandoned conversation left: the kind of its latest
    event other than the abandonment itself, feedback and evaluations (none of which is a step
    the user saw the conversation take). Members are in precedence order: when events share the
    latest timestamp (backfills with second resolution), the earlier member wins, i.e. the step
    that comes later in a turn (user message, tool calls, reply, handoff)."""

    #: ``handoff_requested``.
    HANDOFF_REQUEST = "handoff_request"
    #: ``agent_response``.
    AGENT_RESPONSE = "agent_response"
    #: ``tool_called`` with an ``error.type``.
    TOOL_ERROR = "tool_error"
    #: ``tool_called`` without one.
    TOOL_CALL = "tool_call"
    #: ``user_message`` flagged ``conversation.rephrase``.
    REPHRASE = "rephrase"
    #: ``user_message`` not flagged as a rephrase.
    USER_MESSAGE = "user_message"
    #: ``started``.
    STARTED = "started"
    #: Any other event (``completed`` before an explicit abandonment, say).
    OTHER = "other"
    #: No event but the abandonment (and feedback) in the window.
    NONE = "none"


#: The ``last_tool`` list keeps this many (tool, failed) pairs, most frequent first.
MAX_EXIT_TOOLS: Final = 20


class _ExitTally:
    """Exact counts of one scope (everything, or one agent) of abandoned conversations."""

    def __init__(self) -> None:
        self.abandoned = 0
        self.kinds: dict[str, int] = {}
        self.tools: dict[tuple[str | None, bool], int] = {}
        self.rephrased = 0

    def add(self, row: Mapping[str, Any], count: int) -> None:
        self.abandoned += count
        kind = str(row["kind"]) or ExitKind.NONE.value
        self.kinds[kind] = self.kinds.get(kind, 0) + count
        has_tool = _flag(row["has_tool"])
        tool = (str(row["tool"]), _flag(row["tool_failed"])) if has_tool else (None, False)
        self.tools[tool] = self.tools.get(tool, 0) + count
        self.rephrased += count if _flag(row["rephrased"]) else 0

    def context(self) -> ExitContext:
        kinds = sorted(self.kinds.items(), key=lambda item: (-item[1], item[0]))
        tools = sorted(
            self.tools.items(),
            key=lambda item: (-item[1], item[0][0] is None, item[0][0] or "", item[0][1]),
        )
        return ExitContext(
            abandoned=self.abandoned,
            last_event=[
                ExitKindShare(kind, count, _percent(count, self.abandoned)) for kind, count in kinds
            ],
            last_tool=[
                LastToolShare(tool, failed, count, _percent(count, self.abandoned))
                for (tool, failed), count in tools[:MAX_EXIT_TOOLS]
            ],
            rephrased_in_last_two_turns=CountShare(
                self.rephrased, _percent(self.rephrased, self.abandoned)
            ),
        )


def _flag(value: Any) -> bool:
    """A boolean column from either engine (JSON true/1/"1", or a native bool/int)."""
    return value in (True, 1, "1", "true")


def exit_contexts(rows: Iterable[Mapping[str, Any]]) -> tuple[ExitContext, dict[str, ExitContext]]:
    """The exit context overall and per agent, from rows counting abandoned conversations per
    (``agent``, ``kind``, ``has_tool``, ``tool``, ``tool_failed``, ``rephrased``)."""
    overall = _ExitTally()
    agents: dict[str, _ExitTally] = {}
    for row in rows:
        count = int(row["conversations"])
        overall.add(row, count)
        agents.setdefault(str(row["agent"]), _ExitTally()).add(row, count)
    return overall.context(), {agent: tally.context() for agent, tally in agents.items()}


#: ``tool_lift`` covers this many tools, those called in the most conversations.
MAX_LIFT_TOOLS: Final = 50


@dataclass
class CompletionCount:
    """Completion of a set of conversations: percent with its 95% Wilson interval."""

    conversations: int
    completed: int
    completion_rate: float | None
    completion_ci: list[float] | None

    @classmethod
    def of(cls, completed: int, conversations: int) -> CompletionCount:
        return cls(
            conversations,
            completed,
            _percent(completed, conversations),
            _percent_interval(completed, conversations),
        )


@dataclass
class ToolLift:
    """Completion of the conversations that called ``tool`` against those that did not:
    ``lift`` in percentage points (from exact counts), the two-sided pooled two-proportion
    z-test's p-value (unrounded), and ``significant`` under compare's rule (p < 0.05 and at
    least :data:`MIN_COMPARE_SAMPLE` conversations on each side). An association, not an
    effect: conversations that need a tool may differ from those that do not.

    In JSON the two sides are ``with`` and ``without`` (Python keywords, hence the names)."""

    tool: str
    with_tool: CompletionCount
    without_tool: CompletionCount
    lift: float | None
    p_value: float | None
    significant: bool
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["with"] = data.pop("with_tool")
        data["without"] = data.pop("without_tool")
        return {key: data[key] for key in ("tool", "with", "without", *_LIFT_TAIL)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolLift:
        return cls(
            tool=str(data["tool"]),
            with_tool=CompletionCount(**data["with"]),
            without_tool=CompletionCount(**data["without"]),
            **{key: data.get(key) for key in _LIFT_TAIL if key != "significant"},
            significant=bool(data["significant"]),
        )


_LIFT_TAIL: Final = ("lift", "p_value", "significant", "note")


def tool_lifts(
    rows: Iterable[Mapping[str, Any]], conversations: int, completed: int
) -> list[ToolLift]:
    """Tool lift from rows of (``tool``, ``conversations``, ``completed``) among the window's
    ``conversations`` of which ``completed`` completed; the order of the rows is kept."""
    lifts = []
    for row in rows:
        with_total, with_completed = int(row["conversations"]), int(row["completed"])
        without_total = conversations - with_total
        without_completed = completed - with_completed
        versus = _vs_baseline(
            {"completed": with_completed, "conversations": with_total},
            {"completed": without_completed, "conversations": without_total},
        )
        lifts.append(
            ToolLift(
                tool=str(row["tool"]),
                with_tool=CompletionCount.of(with_completed, with_total),
                without_tool=CompletionCount.of(without_completed, without_total),
                lift=versus.completion_diff,
                p_value=versus.completion_p_value,
                significant=versus.significant,
                note=versus.note,
            )
        )
    return lifts


# ---- the conversations command ---------------------------------------------------------------


class ConversationOutcome(str, Enum):
    """One outcome per conversation, by precedence: completed (a handoff then a completion is
    completed, as the report counts it in ``completion_rate`` and the Grafana Outcome column
    does), else abandoned (an abandonment that stands), else handoff, else open."""

    COMPLETED = "completed"
    ABANDONED = "abandoned"
    HANDOFF = "handoff"
    OPEN = "open"


#: ``conversations --order``: worst satisfaction first, or most recent activity first.
CONVERSATION_ORDERS: Final = ("satisfaction", "last_activity")
DEFAULT_CONVERSATIONS_LIMIT: Final = 20
MAX_CONVERSATIONS_LIMIT: Final = 1000


@dataclass
class ConversationSummary:
    """One conversation of the ``conversations`` listing: enough to pick ids to drill into."""

    conversation_id: str
    agent: str
    outcome: str
    turns: int
    satisfaction: float
    rephrases: int
    last_activity: str
    started_at: str
    handed_off: bool


@dataclass
class ConversationList:
    """``conversations``: the filters as applied, and the matching conversations in order."""

    days: int
    agent: str
    outcome: str | None
    rephrased: bool
    min_turns: int
    order: str
    limit: int
    conversations: list[ConversationSummary]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversationList:
        values = dict(data)
        values["conversations"] = [
            ConversationSummary(**entry) for entry in values.get("conversations", [])
        ]
        return cls(**values)


def conversation_summary(row: Mapping[str, Any]) -> ConversationSummary:
    """One listing entry from a :meth:`Schema.conversation_list` row: satisfaction from its
    exact decimal text, rounded half up to 3 places; times as ISO 8601 UTC."""
    return ConversationSummary(
        conversation_id=str(row["conversation_id"]),
        agent=str(row["agent"]),
        outcome=str(row["outcome"]),
        turns=int(row["turns"]),
        satisfaction=round_half_up(Decimal(str(row["satisfaction"])), 3),
        rephrases=int(row["rephrases"]),
        last_activity=_iso_micros(row["last_activity_us"]),
        started_at=_iso_micros(row["started_at_us"]),
        handed_off=_flag(row["handed_off"]),
    )


def _iso_micros(micros: Any) -> str:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (epoch + timedelta(microseconds=int(micros))).isoformat()
