"""``EventRow``: one conversation event as stored, and the one place attributes become a row.

The in-process exporter (SDK spans), the collector (OTLP) and ``import`` (JSON lines) all turn their
input into attribute mappings and call :func:`row_from_attributes`, so validation and defaults are
identical on every path.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Final

from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

MAX_ID_LENGTH: Final = semconv.MAX_ID_LENGTH
#: Longest string kept in any other column; longer values are truncated.
MAX_STRING_LENGTH: Final = 1024
#: Most caller metadata entries kept per event.
MAX_METADATA_ENTRIES: Final = 64
#: Event times the store holds: from the epoch up to 2261 (64-bit nanoseconds end in 2262).
MIN_TIMESTAMP_NS: Final = 0
MAX_TIMESTAMP_NS: Final = 9_214_646_400 * 1_000_000_000  # 2262-01-01T00:00:00Z
UNKNOWN_AGENT: Final = "unknown"


class RejectedEvent(ValueError):
    """An event that cannot be stored; ``reason`` is a bounded metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class EventRow:
    """One stored conversation event (columns of the raw events table)."""

    event_id: str
    event_type: str
    conversation_id: str
    timestamp_ns: int
    user_id: str = ""
    agent_name: str = UNKNOWN_AGENT
    agent_version: str = ""
    prompt_version: str = ""
    request_model: str = ""
    response_model: str = ""
    channel: str = ""
    turn: int | None = None
    message_length: int | None = None
    response_length: int | None = None
    tool_name: str = ""
    error_type: str = ""
    handoff_reason: str = ""
    feedback_rating: str = ""
    feedback_score: float | None = None
    total_turns: int | None = None
    abandoned_at_turn: int | None = None
    abandon_inferred: bool = False
    rephrase: bool = False
    rephrase_similarity: float | None = None
    service_name: str = ""
    trace_id: str = ""
    span_id: str = ""
    #: Caller metadata (``None`` when there is none: one allocation fewer per event).
    attributes: dict[str, str] | None = None
    #: Derived from a GenAI span rather than recorded explicitly (explicit events take
    #: precedence per conversation and kind). Last, so rows spooled before it still load.
    derived: bool = False
    #: A GenAI evaluation result (``event_type`` ``evaluation``): its name, score and label.
    evaluation_name: str = ""
    evaluation_score: float | None = None
    evaluation_label: str = ""


#: Field names in column order (``timestamp_ns`` is the ``timestamp`` column).
ROW_FIELDS: Final = tuple(f.name for f in fields(EventRow))
TIMESTAMP_INDEX: Final = ROW_FIELDS.index("timestamp_ns")
ATTRIBUTES_INDEX: Final = ROW_FIELDS.index("attributes")


_ALL_FIELDS: Final = operator.attrgetter(*ROW_FIELDS)


def row_values(row: EventRow) -> list[object]:
    """The row's values in column order."""
    return list(_ALL_FIELDS(row))


_FIELD_GETTERS: Final = tuple(operator.attrgetter(name) for name in ROW_FIELDS)


def row_columns(rows: Sequence[EventRow]) -> list[list[object]]:
    """The rows' values column by column (for columnar inserts; no per-row tuples)."""
    return [list(map(getter, rows)) for getter in _FIELD_GETTERS]


def row_from_values(values: list[object]) -> EventRow:
    """Inverse of :func:`row_values` (for rows read back from a spool)."""
    return EventRow(*values)  # type: ignore[arg-type]


def _text(value: object) -> str:
    text = value if type(value) is str else str(value)
    return text if len(text) <= MAX_STRING_LENGTH else text[:MAX_STRING_LENGTH]


def _int(value: object) -> int | None:
    """An integer attribute, or ``None`` for a value of the wrong type (counted by the caller)."""
    if isinstance(value, bool) or (isinstance(value, str) and type(value) is not str):
        return None
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else None
    if isinstance(value, float) and value.is_integer():
        return _int(int(value))
    if isinstance(value, str):
        try:
            return _int(int(value.strip()))
        except ValueError:
            return None
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


#: Largest evaluation score magnitude kept (scores are summed exactly as Decimal128(9)).
MAX_EVALUATION_SCORE: Final = 1e12


def _score(value: object) -> float | None:
    number = _float(value)
    return number if number is not None and abs(number) <= MAX_EVALUATION_SCORE else None


def _bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value) if isinstance(value, (bool, int, float)) else False


def _required_id(value: object, name: str) -> str:
    if value is None:
        raise RejectedEvent("missing_" + name, f"{name} is missing")
    if type(value) is not str and type(value) is not int:  # no bool, no structured values
        raise RejectedEvent("invalid_" + name, f"{name} must be a string")
    text = str(value)
    if not text:
        raise RejectedEvent("missing_" + name, f"{name} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise RejectedEvent("invalid_" + name, f"{name} is longer than {MAX_ID_LENGTH}")
    return text


def derived_event_id(*parts: object) -> str:
    """A deterministic event id, so a replayed event without one still deduplicates."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16)
    return digest.hexdigest()


#: Contract attribute -> (row field, converter). Built once: extraction is the hot path.
_FIELDS: Final[dict[str, tuple[str, Callable[[object], object]]]] = {
    semconv.USER_ID: ("user_id", _text),
    semconv.AGENT_NAME: ("agent_name", _text),
    semconv.AGENT_VERSION: ("agent_version", _text),
    semconv.PROMPT_VERSION: ("prompt_version", _text),
    semconv.REQUEST_MODEL: ("request_model", _text),
    semconv.RESPONSE_MODEL: ("response_model", _text),
    semconv.CHANNEL: ("channel", _text),
    semconv.TURN: ("turn", _int),
    semconv.MESSAGE_LENGTH: ("message_length", _int),
    semconv.RESPONSE_LENGTH: ("response_length", _int),
    semconv.TOOL_NAME: ("tool_name", _text),
    semconv.ERROR_TYPE: ("error_type", _text),
    semconv.HANDOFF_REASON: ("handoff_reason", _text),
    semconv.FEEDBACK_RATING: ("feedback_rating", _text),
    semconv.FEEDBACK_SCORE: ("feedback_score", _float),
    semconv.TOTAL_TURNS: ("total_turns", _int),
    semconv.ABANDONED_AT_TURN: ("abandoned_at_turn", _int),
    semconv.ABANDON_INFERRED: ("abandon_inferred", _bool),
    semconv.REPHRASE: ("rephrase", _bool),
    semconv.REPHRASE_SIMILARITY: ("rephrase_similarity", _float),
    semconv.DERIVED: ("derived", _bool),
    semconv.EVALUATION_NAME: ("evaluation_name", _text),
    semconv.EVALUATION_SCORE_VALUE: ("evaluation_score", _score),
    semconv.EVALUATION_SCORE_LABEL: ("evaluation_label", _text),
}
#: The same table split by converter: text fields are most of an event's attributes, so they are
#: set without a converter call when already a short ``str``.
_TEXT_FIELDS: Final = {key: name for key, (name, convert) in _FIELDS.items() if convert is _text}
_CONVERTED_FIELDS: Final = {
    key: target for key, target in _FIELDS.items() if target[1] is not _text
}
#: How each field's converter reads a value, named for the bulk import's SQL (which must read
#: every value exactly as these converters do).
CONVERSIONS: Final[dict[Callable[[object], object], str]] = {
    _text: "text",
    _int: "int",
    _float: "float",
    _score: "score",
    _bool: "bool",
}
#: Contract attribute -> (row field, conversion name), for the bulk import's SQL.
FIELD_CONVERSIONS: Final = {
    attribute: (field_name, CONVERSIONS[convert])
    for attribute, (field_name, convert) in _FIELDS.items()
}
_IDS: Final = frozenset({semconv.CONVERSATION_ID, semconv.EVENT_ID})
_KIND_VALUES: Final[dict[object, str]] = {member: member.value for member in ConversationEvent}
#: Free text kept only when the operator enables content storage.
_CONTENT: Final = frozenset({semconv.MESSAGE_CONTENT, semconv.EVALUATION_EXPLANATION})


def row_from_attributes(
    event_type: ConversationEvent | str,
    attributes: Mapping[str, object],
    timestamp_ns: int,
    *,
    service_name: str = "",
    trace_id: str = "",
    span_id: str = "",
    store_content: bool = False,
) -> EventRow:
    """Validate one event's attributes into a row; raise :class:`RejectedEvent` when unusable.

    ``event_type`` is a lifecycle event or :data:`~semconv.EVALUATION_EVENT_TYPE`. Values of the
    wrong type become NULL (or the type's empty value); strings are capped.
    """
    # A dict lookup rather than isinstance + the enum's ``.value`` property (the hot path).
    kind = _KIND_VALUES.get(event_type, event_type)
    get = attributes.get
    # Fast paths (a plain, non-empty, short enough str) skip the checking calls; anything else
    # takes them, so the outcome is the same.
    conversation_id = get(semconv.CONVERSATION_ID)
    if type(conversation_id) is not str or not 0 < len(conversation_id) <= MAX_ID_LENGTH:
        conversation_id = _required_id(conversation_id, "conversation_id")
    if not MIN_TIMESTAMP_NS <= timestamp_ns < MAX_TIMESTAMP_NS:
        raise RejectedEvent("invalid_timestamp", "timestamp is before 1970 or after 2261")
    event_id = get(semconv.EVENT_ID)
    if type(event_id) is str and 0 < len(event_id) <= MAX_ID_LENGTH:
        pass
    elif event_id is None or event_id == "":
        event_id = derived_event_id(trace_id, span_id, kind, timestamp_ns, conversation_id)
    else:
        event_id = _required_id(event_id, "event_id")
    service = (
        service_name
        if type(service_name) is str and len(service_name) <= MAX_STRING_LENGTH
        else _text(service_name)
    )
    row = EventRow(
        event_id,
        kind,
        conversation_id,
        int(timestamp_ns),
        agent_name=service or UNKNOWN_AGENT,
        service_name=service,
        trace_id=trace_id,
        span_id=span_id,
    )
    extra: dict[str, str] | None = None
    text_fields = _TEXT_FIELDS
    for key, value in attributes.items():
        name = text_fields.get(key)
        if name is not None:
            if type(value) is str:
                if value:
                    setattr(row, name, value if len(value) <= MAX_STRING_LENGTH else _text(value))
            elif value is not None and value != "":
                setattr(row, name, _text(value))
            continue
        target = _CONVERTED_FIELDS.get(key)
        if target is not None:
            if value is not None and value != "":
                setattr(row, target[0], target[1](value))
        elif key in _IDS:
            continue
        elif key not in _CONTENT or store_content:
            if extra is None:
                extra = row.attributes = {}
            if len(extra) < MAX_METADATA_ENTRIES:
                extra[_text(key.removeprefix(semconv.METADATA_PREFIX))] = _text(value)
    if row.rephrase_similarity is not None and semconv.REPHRASE not in attributes:
        row.rephrase = row.rephrase_similarity >= semconv.REPHRASE_THRESHOLD
    return row
