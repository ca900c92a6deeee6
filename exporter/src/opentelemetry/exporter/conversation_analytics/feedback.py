"""Late feedback: a rating that arrives after the conversation (a thumbs-down clicked ten minutes
later), from the CLI or the collector's ``POST /api/v1/feedback``. One rule for both: the
conversation must exist, the rating is ``positive``/``negative``, the score 0..1, the rater's id
is pseudonymised, the event goes under the conversation's agent, and an ``id`` makes it
idempotent (the same id twice is one event).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Final

from opentelemetry.exporter.conversation_analytics.importer import row_from_record
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store.base import ConversationStore
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

SOURCE: Final = "feedback"
#: Keys of a feedback request body (``POST /api/v1/feedback``).
BODY_KEYS: Final = frozenset({"conversation_id", "rating", "score", "user_id", "id", "timestamp"})


def feedback_row(
    store: ConversationStore,
    conversation_id: object,
    rating: object,
    *,
    score: object = None,
    user_id: object = None,
    event_id: object = None,
    timestamp: object = None,
    pseudonymize: UserIdPseudonymizer | None = None,
) -> EventRow:
    """The ``feedback_received`` row for one late rating; ``ValueError`` for bad input,
    :class:`~opentelemetry.exporter.conversation_analytics.store.UnknownConversation` when the
    store has no such conversation."""
    if type(conversation_id) is not str or not 0 < len(conversation_id) <= semconv.MAX_ID_LENGTH:
        raise ValueError(f"conversation_id must be a string of 1 to {semconv.MAX_ID_LENGTH} chars")
    if rating not in semconv.RATINGS:
        raise ValueError(f"rating must be one of {sorted(semconv.RATINGS)}")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1
    ):
        raise ValueError("score must be a number between 0 and 1")
    for name, value in (("user_id", user_id), ("id", event_id)):
        if value is not None and (type(value) is not str or len(value) > semconv.MAX_ID_LENGTH):
            raise ValueError(f"{name} must be a string of at most {semconv.MAX_ID_LENGTH} chars")
    events = StoreReader(store).existing_conversation(conversation_id).events
    agent = next((str(e["agent_name"]) for e in reversed(events) if e.get("agent_name")), None)
    if timestamp is None:
        timestamp = datetime.now(timezone.utc).isoformat()
    record = {
        "id": event_id,
        "conversation_id": conversation_id,
        "user_id": user_id,
        "event_type": ConversationEvent.FEEDBACK_RECEIVED.value,
        "timestamp": timestamp,
        "metadata": {"rating": rating, "score": score, "agent": agent},
    }
    return row_from_record(record, pseudonymize or UserIdPseudonymizer())


def feedback_row_from_body(
    store: ConversationStore, body: object, pseudonymize: UserIdPseudonymizer | None = None
) -> EventRow:
    """:func:`feedback_row` from a request's JSON object; unknown keys are a ``ValueError``."""
    if not isinstance(body, Mapping):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - BODY_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; accepted: {sorted(BODY_KEYS)}")
    return feedback_row(
        store,
        body.get("conversation_id"),
        body.get("rating"),
        score=body.get("score"),
        user_id=body.get("user_id"),
        event_id=body.get("id"),
        timestamp=body.get("timestamp"),
        pseudonymize=pseudonymize,
    )
