"""``ConversationTracker``: conversation lifecycle events as span events on the agent's own traces.

Runs inside users' agents, so it imports only the OpenTelemetry API, does no I/O, and never raises
into the caller: bad arguments are counted and logged once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace.propagation import _SPAN_KEY

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.context import (
    ConversationScope,
    agents_seen,
    current_conversation,
)
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.rephrasing import build_rephrase_detector
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent
from opentelemetry.instrumentation.conversation.version import __version__

if TYPE_CHECKING:
    from opentelemetry.instrumentation.conversation.rephrase import RephraseDetector

_logger = logging.getLogger(__name__)

#: Name of the short span the tracker opens when no span is recording (or the current one is full).
EVENT_SPAN_NAME: Final = "conversation.event"
#: Longest string kept in an attribute; longer values are truncated.
MAX_STRING_LENGTH: Final = 1024


class RecordedEvent:
    """What ``record`` returns: the event id (``None`` when nothing was recorded).

    It is awaitable, so code written as ``await tracker.record(...)`` works unchanged.
    """

    __slots__ = ("event_id", "event_type")

    def __init__(self, event_id: str | None, event_type: ConversationEvent | None) -> None:
        self.event_id = event_id
        self.event_type = event_type

    @property
    def recorded(self) -> bool:
        """Whether a span event was emitted."""
        return self.event_id is not None

    def __await__(self) -> Generator[Any, None, RecordedEvent]:
        return self
        yield  # pragma: no cover - makes this a generator that finishes at once

    def __repr__(self) -> str:
        return f"RecordedEvent(event_id={self.event_id!r}, event_type={self.event_type!r})"


_NOT_RECORDED: Final = RecordedEvent(None, None)
#: Events that touch rephrase state: a user message is scored; an ending forgets.
_REPHRASE_KINDS: Final = frozenset(
    {ConversationEvent.USER_MESSAGE, ConversationEvent.COMPLETED, ConversationEvent.ABANDONED}
)
#: Keywords with which a caller reports its own rephrase decision.
_REPHRASE_GIVEN: Final = frozenset(
    key
    for key, name in semconv.KEYWORD_ATTRIBUTES.items()
    if name in (semconv.REPHRASE, semconv.REPHRASE_SIMILARITY)
) | {semconv.REPHRASE, semconv.REPHRASE_SIMILARITY}
_current_context: Final = otel_context.get_current
#: Keyed by the plain value: hashing an Enum member runs Python code, a str does not.
_EVENT_NAMES: Final = {kind.value: kind.event_name for kind in ConversationEvent}


def _timestamp_ns(timestamp: object) -> int:
    """A datetime (naive means UTC, as the article's ``utcnow``) or epoch seconds, in ns."""
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=timezone.utc)
        delta = timestamp - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return round(timestamp * 1_000_000) * 1000  # to the microsecond: floats can't hold ns
    raise TypeError(f"timestamp must be a datetime, got {type(timestamp).__name__}")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _coerce(name: str, value: object) -> str | bool | int | float:
    """Give a contract attribute its contract type; ``ValueError``/``TypeError`` if it can't."""
    if name in semconv.INT_ATTRIBUTES:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{name} must be an integer")
        return int(value)
    if name in semconv.FLOAT_ATTRIBUTES:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{name} must be a number")
        return float(value)
    if name in semconv.BOOL_ATTRIBUTES:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes")
        return bool(value)
    return _as_string(value)


def _typed(name: str) -> Callable[[object], str | bool | int | float]:
    if name in semconv.INT_ATTRIBUTES:
        return _int_value
    if name in semconv.FLOAT_ATTRIBUTES or name in semconv.BOOL_ATTRIBUTES:
        return lambda value: _coerce(name, value)
    return _as_string


def _int_value(value: object) -> int:
    if type(value) is int:
        return value
    return int(_coerce(semconv.TURN, value))


def _as_string(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_STRING_LENGTH else text[:MAX_STRING_LENGTH]


#: Article keyword -> (attribute, coercer), resolved once (``record`` is on the agent's hot path).
_KEYWORDS: Final[dict[str, tuple[str, Callable[[object], str | bool | int | float]]]] = {
    key: (name, _typed(name)) for key, name in semconv.KEYWORD_ATTRIBUTES.items()
}


def _span_is_full(span: trace.Span) -> bool:
    """True when the SDK span already holds its event limit, so one more would evict the oldest.

    Reads the SDK span's own bookkeeping; any other span type is never full.
    """
    try:
        events = span._events._dq  # type: ignore[attr-defined]  # the SDK BoundedList's deque
        full: bool = len(events) >= events.maxlen
        return full
    except (AttributeError, TypeError):
        return False


class _EventIds:
    """Unique event ids, cheaply: a random 64-bit prefix per process and a counter.

    The prefix is drawn again in a forked child, so parent and child never share ids.
    """

    def __init__(self) -> None:
        self._reseed()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_next_event_id: Final = _EventIds()


class ConversationTracker:
    """Records conversation lifecycle events on the current span of the agent's trace.

    Where no span is recording (feedback arriving later from a web handler, say) or the current span
    has reached the SDK's event limit (a long voice call inside one span), the event goes on a short
    span of its own, a child of the current context, so no event is evicted or lost.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        agent_name: str | None = None,
        agent_version: str | None = None,
        prompt_version: str | None = None,
        user_id_key: str | bytes | None = None,
        pseudonymize_user_ids: bool | None = None,
        capture_content: bool | None = None,
        detect_rephrases: bool | None = None,
        rephrase_detector: RephraseDetector | None = None,
    ) -> None:
        """``detect_rephrases`` (default: ``CONVERSATION_ANALYTICS_DETECT_REPHRASES``, off)
        scores each user message's text against the previous one's with the default
        embedder, loaded in the background; pass ``rephrase_detector`` for another one."""
        self._tracer = trace.get_tracer(__name__, __version__, tracer_provider)
        self._rephrases = (
            rephrase_detector
            if rephrase_detector is not None
            else build_rephrase_detector(detect_rephrases)
        )
        self._pseudonymize = UserIdPseudonymizer(user_id_key, pseudonymize_user_ids)
        if capture_content is None:
            capture_content = env.env_flag(
                env.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, False
            )
        self._capture_content = capture_content
        common: dict[str, str] = {}
        agent_name = agent_name or env.env_str(env.CONVERSATION_ANALYTICS_AGENT_NAME)
        for name, value in (
            (semconv.AGENT_NAME, agent_name),
            (semconv.AGENT_VERSION, agent_version),
            (semconv.PROMPT_VERSION, prompt_version),
        ):
            if value:
                common[name] = _as_string(value)
        self._common = common
        self._errors = 0
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    @property
    def errors(self) -> int:
        """How many calls or values were rejected (bad arguments); each kind is logged once."""
        return self._errors

    def record(
        self,
        conversation_id: str | None = None,
        user_id: str | None = None,
        event_type: ConversationEvent | str | None = None,
        *,
        timestamp: datetime | float | None = None,
        **metadata: object,
    ) -> RecordedEvent:
        """Record one lifecycle event; ``await`` the result in async code if you like.

        Inside ``with conversation(...)`` the ids may be left out:
        ``tracker.record(event_type=ConversationEvent.COMPLETED)``.
        """
        try:
            ctx = _current_context()  # once: suppression and the current span both read it
            if ctx.get(_SUPPRESS_INSTRUMENTATION_KEY):
                return _NOT_RECORDED
            if conversation_id is None:
                if timestamp is not None:
                    metadata["timestamp"] = timestamp
                return self.record_in(current_conversation(ctx), event_type, metadata, user_id)
            return self._record(conversation_id, user_id, event_type, timestamp, metadata, ctx)
        except Exception as exc:  # never raise into the agent
            self._reject(exc)
            return _NOT_RECORDED

    def record_in(
        self,
        scope: ConversationScope | None,
        event_type: object,
        metadata: dict[str, object],
        user_id: str | None = None,
    ) -> RecordedEvent:
        """Record for ``scope``'s conversation: its ids and agent, unless given explicitly."""
        try:
            ctx = _current_context()
            if ctx.get(_SUPPRESS_INSTRUMENTATION_KEY):
                return _NOT_RECORDED
            if scope is None or scope.conversation_id is None:
                raise ValueError("no conversation_id given and no current conversation")
            if "agent" not in metadata and "agent_name" not in metadata:
                agent = scope.agent
                if not agent and semconv.AGENT_NAME not in self._common:
                    agent = agents_seen.get(scope.conversation_id)  # learned from its spans
                if agent:
                    metadata["agent"] = agent
            timestamp = metadata.pop("timestamp", None)
            return self._record(
                scope.conversation_id,
                scope.user_id if user_id is None else user_id,
                event_type,
                timestamp,
                metadata,
                ctx,
            )
        except Exception as exc:  # never raise into the agent
            self._reject(exc)
            return _NOT_RECORDED

    async def arecord(
        self,
        conversation_id: str | None = None,
        user_id: str | None = None,
        event_type: ConversationEvent | str | None = None,
        *,
        timestamp: datetime | float | None = None,
        **metadata: object,
    ) -> RecordedEvent:
        """Coroutine form of :meth:`record`, for code that wants a real coroutine."""
        return self.record(conversation_id, user_id, event_type, timestamp=timestamp, **metadata)

    def _record(
        self,
        conversation_id: object,
        user_id: object,
        event_type: object,
        timestamp: object,
        metadata: dict[str, object],
        ctx: otel_context.Context,
    ) -> RecordedEvent:
        time_ns = None if timestamp is None else _timestamp_ns(timestamp)
        if event_type is None:
            raise TypeError("event_type is required")
        kind = (
            event_type
            if type(event_type) is ConversationEvent
            else ConversationEvent.parse(event_type)
        )
        if self._rephrases is not None and kind in _REPHRASE_KINDS:
            self._observe_rephrase(kind, conversation_id, metadata)
        span: trace.Span | None = ctx.get(_SPAN_KEY)  # type: ignore[assignment]  # = get_current_span
        if span is not None and span.is_recording() and not _span_is_full(span):
            event_id = _next_event_id()
            attributes = self._attributes(kind, event_id, conversation_id, user_id, metadata)
            span.add_event(_EVENT_NAMES[kind._value_], attributes, timestamp=time_ns)
            return RecordedEvent(event_id, kind)
        own_span = self._tracer.start_span(EVENT_SPAN_NAME, start_time=time_ns)
        if not own_span.is_recording():  # no SDK: a cheap no-op
            return _NOT_RECORDED
        try:
            event_id = _next_event_id()
            attributes = self._attributes(kind, event_id, conversation_id, user_id, metadata)
            own_span.add_event(_EVENT_NAMES[kind._value_], attributes, timestamp=time_ns)
        finally:
            own_span.end(end_time=time_ns)
        return RecordedEvent(event_id, kind)

    def _observe_rephrase(
        self, kind: ConversationEvent, conversation_id: object, metadata: dict[str, object]
    ) -> None:
        """Score a user message's text (it stays here); forget a conversation that ended."""
        detector = self._rephrases
        if detector is None or type(conversation_id) is not str:
            return
        if kind is not ConversationEvent.USER_MESSAGE:
            detector.forget(conversation_id)
            return
        if _REPHRASE_GIVEN & metadata.keys():
            return  # the caller decided
        text = next((v for k, v in metadata.items() if k in semconv.CONTENT_KEYWORDS), None)
        if type(text) is not str or not text:
            return
        result = detector.observe(conversation_id, text)
        if result is not None:
            metadata["similarity"] = result.similarity
            metadata["rephrase"] = result.rephrase

    def _attributes(
        self,
        kind: ConversationEvent,
        event_id: str,
        conversation_id: object,
        user_id: object,
        metadata: dict[str, object],
    ) -> dict[str, str | bool | int | float]:
        if type(conversation_id) is not str:
            if type(conversation_id) is not int:  # no bool, no str subclasses with odd __str__
                raise TypeError("conversation_id must be a string")
            conversation_id = str(conversation_id)
        if not conversation_id or len(conversation_id) > semconv.MAX_ID_LENGTH:
            raise ValueError(f"conversation_id must have 1 to {semconv.MAX_ID_LENGTH} characters")
        attributes: dict[str, str | bool | int | float] = {
            semconv.EVENT_ID: event_id,
            semconv.CONVERSATION_ID: conversation_id,
        }
        if user_id:
            attributes[semconv.USER_ID] = self._pseudonymize(
                user_id if type(user_id) is str else _as_string(user_id)
            )
        if self._common:
            attributes.update(self._common)
        for key, value in metadata.items():
            if value is None:
                continue
            known = _KEYWORDS.get(key)
            if known is not None:  # the article's keywords: one lookup, typed directly
                name, coerce = known
                try:
                    attributes[name] = coerce(value)
                except (TypeError, ValueError) as exc:
                    self._reject(exc)
                continue
            name = semconv.metadata_attribute(kind, key)
            if name == semconv.MESSAGE_CONTENT:
                # Text never leaves the process unless capture is on; its length always may.
                if isinstance(value, str):
                    length = (
                        semconv.RESPONSE_LENGTH
                        if kind is ConversationEvent.AGENT_RESPONSE
                        else semconv.MESSAGE_LENGTH
                    )
                    attributes.setdefault(length, len(value))
                if not self._capture_content:
                    continue
            try:
                attributes[name] = _coerce(name, value)
            except (TypeError, ValueError) as exc:
                self._reject(exc)
        return attributes

    def _reject(self, exc: Exception) -> None:
        with self._lock:
            self._errors += 1
            kind = f"{type(exc).__name__}:{str(exc)[:60]}"
            if kind in self._logged or len(self._logged) > 64:
                return
            self._logged.add(kind)
        _logger.warning("conversation tracker rejected input (logged once): %s", exc)


class _DefaultTracker:
    """Holds the tracker behind ``conversation(...).complete()``, made on first use."""

    def __init__(self) -> None:
        self.tracker: ConversationTracker | None = None
        self.lock = threading.Lock()

    def get(self) -> ConversationTracker:
        tracker = self.tracker
        if tracker is None:
            with self.lock:
                if self.tracker is None:
                    self.tracker = ConversationTracker()
                tracker = self.tracker
        return tracker


_default: Final = _DefaultTracker()


def default_tracker() -> ConversationTracker:
    """The tracker behind ``conversation(...).complete()`` and friends (global provider)."""
    return _default.get()


def set_default_tracker(tracker: ConversationTracker | None) -> None:
    """Replace the default tracker (the instrumentor passes its provider and options)."""
    with _default.lock:
        _default.tracker = tracker
