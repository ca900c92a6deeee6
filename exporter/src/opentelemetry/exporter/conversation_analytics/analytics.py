"""Section 4 of the spec: the metric definitions, rounded exactly as the article's PostgreSQL does.

SQL returns exact integer counts and sums; rates and means are computed here with ``Decimal`` and
rounded half away from zero (PostgreSQL's ``ROUND`` on ``numeric``), never with float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from opentelemetry.instrumentation.conversation.semconv import (
    RATING_NEGATIVE,
    RATING_POSITIVE,
    ConversationEvent,
)

DEFAULT_DAYS = 7


def _round(numerator: int, denominator: int, places: int) -> float | None:
    if denominator == 0:
        return None
    exponent = Decimal(1).scaleb(-places)
    return float((Decimal(numerator) / Decimal(denominator)).quantize(exponent, ROUND_HALF_UP))


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Inverse of :meth:`to_dict` (a report fetched from a running collector)."""
        values = dict(data)
        values["drop_off"] = [DropOff(**entry) for entry in values.get("drop_off", [])]
        values["agents"] = [AgentReport(**entry) for entry in values.get("agents", [])]
        return cls(**values)


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
    satisfaction = float(row["satisfaction_sum"] or 0) / total if total else None
    return {
        "total_conversations": total,
        "completion_rate": _percent(count("completed"), total),
        "abandonment_rate": _percent(count("abandoned"), total),
        "handoff_rate": _percent(count("handoffs"), total),
        "avg_turns": _round(messages, total, 1),
        "avg_duration_seconds": None if duration is None else int(duration),
        "avg_satisfaction": None if satisfaction is None else round(satisfaction, 3),
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
