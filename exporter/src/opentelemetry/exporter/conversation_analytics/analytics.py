"""Section 4 of the spec: the metric definitions, rounded exactly as the article's PostgreSQL does.

SQL returns exact integer counts and sums; rates and means are computed here with ``Decimal`` and
rounded half away from zero (PostgreSQL's ``ROUND`` on ``numeric``), never with float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from opentelemetry.instrumentation.conversation.semconv import (
    RATING_NEGATIVE,
    RATING_POSITIVE,
    ConversationEvent,
)

DEFAULT_DAYS = 7


#: Digits kept while dividing, far more than any exact sum from the store carries, so the
#: quotient is rounded only once, half away from zero, like PostgreSQL's ``ROUND(numeric)``.
_PRECISION = 80


def _round(numerator: int | Decimal, denominator: int, places: int) -> float | None:
    """``numerator / denominator`` rounded half away from zero; ``None`` when there is no data.

    The one rounding rule of every number the product reports: exact inputs (integer counts,
    ``Decimal`` sums read as text), so the same data always reads the same.
    """
    if denominator == 0:
        return None
    with localcontext() as context:
        context.prec = _PRECISION
        quotient = Decimal(numerator) / Decimal(denominator)
        return float(quotient.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def _percent(part: int, whole: int) -> float | None:
    return _round(part * 100, whole, 1)


@dataclass
class DropOff:
    """How many ``abandoned`` events name this turn."""

    turn: int | None
    count: int


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Inverse of :meth:`to_dict` (a report fetched from a running collector)."""
        values = dict(data)
        values["drop_off"] = [DropOff(**entry) for entry in values.get("drop_off", [])]
        values["agents"] = [AgentReport(**entry) for entry in values.get("agents", [])]
        values["evaluations"] = [
            EvaluationReport.from_dict(entry) for entry in values.get("evaluations", [])
        ]
        return cls(**values)


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
