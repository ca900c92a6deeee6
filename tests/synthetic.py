"""Planned conversations for the compare and survival tests: each plan says what happened (its
group values, user messages, outcome), becomes real event rows for the store, and gives the
counts and durations the reference libraries are fed, worked out from the plan itself."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from opentelemetry.exporter.conversation_analytics.analytics import satisfaction_score
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import open_store
from opentelemetry.instrumentation.conversation.semconv import (
    RATING_NEGATIVE,
    RATING_POSITIVE,
    ConversationEvent,
)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The outcomes a plan can have: ``open`` has none (still going, or silently gone).
OUTCOMES = ("completed", "abandoned", "handoff", "open")


@dataclass(frozen=True)
class Plan:
    """One conversation as the test intends it."""

    cid: str
    messages: int
    outcome: str
    agent: str = "bot"
    dims: dict[str, str] = field(default_factory=dict)
    abandoned_at: int | None = None
    inferred: bool = False
    feedback: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        return self.outcome == "completed"

    @property
    def abandoned(self) -> bool:
        return self.outcome == "abandoned"

    @property
    def handoff(self) -> bool:
        return self.outcome == "handoff"

    @property
    def duration(self) -> int:
        """User turns until abandonment, else until the last user message (censored)."""
        if self.abandoned and self.abandoned_at is not None:
            return self.abandoned_at
        return self.messages

    @property
    def satisfaction(self) -> float:
        return satisfaction_score(
            positive=self.feedback.count(RATING_POSITIVE),
            negative=self.feedback.count(RATING_NEGATIVE),
            user_messages=self.messages,
            completed=self.completed,
            handoff=self.handoff,
        )

    def value(self, by: str) -> str:
        return self.agent if by == "agent" else self.dims.get(by, "")


def rows(plans: Iterable[Plan], start: datetime) -> list[EventRow]:
    """Event rows for ``plans``, every event carrying the plan's agent and group values."""
    out: list[EventRow] = []
    for index, plan in enumerate(plans):
        at = start + timedelta(seconds=index)

        def add(
            kind: ConversationEvent,
            offset: int,
            plan: Plan = plan,
            at: datetime = at,
            **fields: object,
        ) -> None:
            moment = at + timedelta(milliseconds=offset)
            out.append(
                EventRow(
                    f"{plan.cid}/{len(out)}",
                    kind.value,
                    plan.cid,
                    (moment - EPOCH) // timedelta(microseconds=1) * 1000,
                    agent_name=plan.agent,
                    **plan.dims,
                    **fields,  # type: ignore[arg-type]
                )
            )

        add(ConversationEvent.STARTED, 0)
        for turn in range(1, plan.messages + 1):
            add(ConversationEvent.USER_MESSAGE, 2 * turn, turn=turn)
            add(ConversationEvent.AGENT_RESPONSE, 2 * turn + 1, turn=turn)
        end = 2 * plan.messages + 2
        for rating in plan.feedback:
            add(ConversationEvent.FEEDBACK_RECEIVED, end, feedback_rating=rating)
        if plan.completed:
            add(ConversationEvent.COMPLETED, end + 1, total_turns=plan.messages)
        elif plan.handoff:
            add(ConversationEvent.HANDOFF_REQUESTED, end + 1, turn=plan.messages)
        elif plan.abandoned:
            add(
                ConversationEvent.ABANDONED,
                end + 1,
                abandoned_at_turn=plan.abandoned_at,
                abandon_inferred=plan.inferred,
            )
    return out


def random_plans(
    rng: random.Random,
    count: int,
    prefix: str,
    *,
    completion: float,
    agent: str = "bot",
    dims: dict[str, str] | None = None,
    max_messages: int = 6,
) -> list[Plan]:
    """``count`` plans completing with probability ``completion``; the rest abandon (at or
    before their last message, sometimes inferred), hand off, or stay open; a few have no user
    message at all, and some carry explicit feedback."""
    plans = []
    for index in range(count):
        messages = rng.choice([0, *range(1, max_messages + 1)]) if index % 9 == 0 else None
        messages = rng.randint(1, max_messages) if messages is None else messages
        draw = rng.random()
        if draw < completion:
            outcome = "completed"
        else:
            outcome = rng.choice(("abandoned", "abandoned", "handoff", "open"))
        abandoned_at = rng.randint(max(1, messages - 1), max(1, messages))
        feedback = tuple(rng.choice((RATING_POSITIVE, RATING_NEGATIVE)) for _ in range(index % 3))
        plans.append(
            Plan(
                cid=f"{prefix}-{index}",
                messages=messages,
                outcome=outcome,
                agent=agent,
                dims=dict(dims or {}),
                abandoned_at=abandoned_at if outcome == "abandoned" else None,
                inferred=outcome == "abandoned" and rng.random() < 0.3,
                feedback=feedback if index % 4 == 0 else (),
            )
        )
    return plans


def durations(plans: Sequence[Plan]) -> tuple[list[int], list[bool]]:
    """Kaplan-Meier input from the plans: durations and abandoned flags, conversations with no
    user message left out."""
    kept = [plan for plan in plans if plan.messages > 0]
    return [plan.duration for plan in kept], [plan.abandoned for plan in kept]


def write_closed(store_url: str, plans: Iterable[Plan], start: datetime) -> str:
    """``plans`` written into the store at ``store_url``, closed again so that a CLI subprocess
    can open it (chDB lets one process hold a directory); the URL."""
    store = open_store(store_url)
    try:
        store.insert(rows(plans, start))
    finally:
        store.close()
    return store_url
