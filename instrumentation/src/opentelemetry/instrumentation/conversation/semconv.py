"""The wire contract: every conversation event and attribute name, in one place.

Both distributions import these constants; no other module spells an event or attribute name as a
string literal. Names reuse the OpenTelemetry GenAI semantic conventions where one exists.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

EVENT_PREFIX: Final = "conversation."


class ConversationEvent(str, Enum):
    """The eight lifecycle events; values are the article's event types."""

    STARTED = "started"
    USER_MESSAGE = "user_message"
    AGENT_RESPONSE = "agent_response"
    TOOL_CALLED = "tool_called"
    HANDOFF_REQUESTED = "handoff_requested"
    FEEDBACK_RECEIVED = "feedback_received"
    COMPLETED = "completed"
    ABANDONED = "abandoned"

    @property
    def event_name(self) -> str:
        """The span event name on the wire, e.g. ``conversation.completed``."""
        return _EVENT_NAMES[self]

    @classmethod
    def parse(cls, value: object) -> ConversationEvent:
        """A member, its value (``"completed"``) or its event name; ``ValueError`` otherwise."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            found = _BY_ANY_NAME.get(value)
            if found is not None:
                return found
        raise ValueError(f"unknown conversation event type: {value!r:.80}")


_EVENT_NAMES: Final = {member: EVENT_PREFIX + member.value for member in ConversationEvent}
_BY_ANY_NAME: Final = {
    **{member.value: member for member in ConversationEvent},
    **{name: member for member, name in _EVENT_NAMES.items()},
}
EVENT_NAMES: Final = frozenset(_EVENT_NAMES.values())


def event_type_of(event_name: str) -> ConversationEvent | None:
    """The event type a span event name denotes, or ``None`` for events outside the contract."""
    return _BY_ANY_NAME.get(event_name) if event_name.startswith(EVENT_PREFIX) else None


# Common attributes (GenAI semantic conventions where they exist).
CONVERSATION_ID: Final = "gen_ai.conversation.id"
USER_ID: Final = "user.id"
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_VERSION: Final = "gen_ai.agent.version"
PROMPT_VERSION: Final = "conversation.prompt.version"
EVENT_ID: Final = "conversation.event.id"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
OPERATION_NAME: Final = "gen_ai.operation.name"
TOOL_NAME: Final = "gen_ai.tool.name"
ERROR_TYPE: Final = "error.type"
SERVICE_NAME: Final = "service.name"
#: Where log records written before the ``event_name`` field existed carry their event's name.
LOG_EVENT_NAME: Final = "event.name"

# Event-specific attributes.
CHANNEL: Final = "conversation.channel"
TURN: Final = "conversation.turn"
MESSAGE_LENGTH: Final = "conversation.message.length"
RESPONSE_LENGTH: Final = "conversation.response.length"
REPHRASE_SIMILARITY: Final = "conversation.rephrase.similarity"
REPHRASE: Final = "conversation.rephrase"
HANDOFF_REASON: Final = "conversation.handoff.reason"
FEEDBACK_RATING: Final = "conversation.feedback.rating"
FEEDBACK_SCORE: Final = "conversation.feedback.score"
TOTAL_TURNS: Final = "conversation.total_turns"
ABANDONED_AT_TURN: Final = "conversation.abandoned_at_turn"
ABANDON_INFERRED: Final = "conversation.abandon.inferred"
MESSAGE_CONTENT: Final = "conversation.message.content"

# GenAI evaluation results (the semantic conventions' ``gen_ai.evaluation.result`` event, as a
# span event or a log record): stored beside the lifecycle events, reported per evaluation name.
EVALUATION_EVENT: Final = "gen_ai.evaluation.result"
EVALUATION_NAME: Final = "gen_ai.evaluation.name"
EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
#: The evaluator's free-text reasoning: may quote the user, so it is never stored.
EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
#: The stored ``event_type`` of an evaluation row (not one of the eight lifecycle events).
EVALUATION_EVENT_TYPE: Final = "evaluation"

# Any other caller metadata travels as ``conversation.metadata.<key>`` string attributes.
METADATA_PREFIX: Final = "conversation.metadata."

RATING_POSITIVE: Final = "positive"
RATING_NEGATIVE: Final = "negative"
RATINGS: Final = frozenset({RATING_POSITIVE, RATING_NEGATIVE})

#: Longest conversation or event id accepted anywhere; longer ones are rejected, not truncated
#: (truncation could merge two conversations and corrupt every number).
MAX_ID_LENGTH: Final = 512

#: Similarity at or above which a differing user message counts as a rephrase (the article's 0.85).
REPHRASE_THRESHOLD: Final = 0.85

# The article's metadata keywords, mapped to contract attributes.
KEYWORD_ATTRIBUTES: Final[dict[str, str]] = {
    "turn": TURN,
    "message_length": MESSAGE_LENGTH,
    "response_length": RESPONSE_LENGTH,
    "tool_name": TOOL_NAME,
    "total_turns": TOTAL_TURNS,
    "abandoned_at_turn": ABANDONED_AT_TURN,
    "rating": FEEDBACK_RATING,
    "score": FEEDBACK_SCORE,
    "channel": CHANNEL,
    "reason": HANDOFF_REASON,
    "similarity": REPHRASE_SIMILARITY,
    "rephrase_similarity": REPHRASE_SIMILARITY,
    "rephrase": REPHRASE,
    "inferred": ABANDON_INFERRED,
    "error_type": ERROR_TYPE,
    "request_model": REQUEST_MODEL,
    "response_model": RESPONSE_MODEL,
    "agent": AGENT_NAME,
    "agent_name": AGENT_NAME,
    "agent_version": AGENT_VERSION,
    "prompt_version": PROMPT_VERSION,
}
#: ``model=`` means the answering model on a response and the requested one elsewhere.
MODEL_KEYWORD: Final = "model"
#: Keywords that carry message text: dropped unless content capture is enabled.
CONTENT_KEYWORDS: Final = frozenset({"message", "text", "content", "response", "prompt"})


def metadata_attribute(kind: ConversationEvent, key: str) -> str:
    """The attribute a caller's metadata keyword travels as.

    The article's keywords map to contract names; ``model`` means the answering model on a
    response and the requested one elsewhere; text keywords map to :data:`MESSAGE_CONTENT` (kept
    only when content capture is on); names already in the contract pass through; anything else
    becomes ``conversation.metadata.<key>``.
    """
    name = KEYWORD_ATTRIBUTES.get(key)
    if name is not None:
        return name
    if key == MODEL_KEYWORD:
        return RESPONSE_MODEL if kind is ConversationEvent.AGENT_RESPONSE else REQUEST_MODEL
    if key in CONTENT_KEYWORDS:
        return MESSAGE_CONTENT
    if key in CONTRACT_ATTRIBUTES or key.startswith(METADATA_PREFIX):
        return key
    return METADATA_PREFIX + key


INT_ATTRIBUTES: Final = frozenset(
    {TURN, MESSAGE_LENGTH, RESPONSE_LENGTH, TOTAL_TURNS, ABANDONED_AT_TURN}
)
FLOAT_ATTRIBUTES: Final = frozenset({REPHRASE_SIMILARITY, FEEDBACK_SCORE})
BOOL_ATTRIBUTES: Final = frozenset({REPHRASE, ABANDON_INFERRED})

CONTRACT_ATTRIBUTES: Final = frozenset(
    {
        CONVERSATION_ID,
        USER_ID,
        AGENT_NAME,
        AGENT_VERSION,
        PROMPT_VERSION,
        EVENT_ID,
        REQUEST_MODEL,
        RESPONSE_MODEL,
        TOOL_NAME,
        ERROR_TYPE,
        CHANNEL,
        TURN,
        MESSAGE_LENGTH,
        RESPONSE_LENGTH,
        REPHRASE_SIMILARITY,
        REPHRASE,
        HANDOFF_REASON,
        FEEDBACK_RATING,
        FEEDBACK_SCORE,
        TOTAL_TURNS,
        ABANDONED_AT_TURN,
        ABANDON_INFERRED,
    }
)


# Auto-instrumentation.
#: Stamped by the conversation span processor on every span it tracked: that span's turns are
#: derived in the agent, so the exporter and the collector derive nothing more from it.
PROCESSED: Final = "conversation.processed"
#: On events the agent derived from GenAI spans (not recorded explicitly): explicit events of
#: the same kind take precedence in a conversation.
DERIVED: Final = "conversation.derived"
#: Name of the short span carrying one turn's derived events, a child of the turn's first span.
DERIVED_SPAN_NAME: Final = "conversation.turn"

#: W3C baggage key carrying the conversation id across services (configurable).
DEFAULT_BAGGAGE_KEY: Final = CONVERSATION_ID
