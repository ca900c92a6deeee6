"""``ConversationObserver``: accepted rows into the Prometheus conversation series.

Counters move once per accepted event; histograms (turns, duration, drop-off turn, satisfaction)
once per conversation, when it completes or is abandoned, from what this process has seen of it
(bounded per-conversation state, least recently active forgotten first). A new signal gets its
series here and nowhere else.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.analytics import satisfaction_score
from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.instrumentation.conversation.semconv import (
    EVALUATION_EVENT_TYPE,
    RATING_NEGATIVE,
    RATING_POSITIVE,
    RATINGS,
    ConversationEvent,
)

DEFAULT_STATE_LIMIT: Final = 100_000


@dataclass(slots=True)
class _ConversationState:
    """What one process knows of a live conversation, for once-per-conversation histograms."""

    started_ns: int | None = None
    channel: str = ""
    model: str = ""
    prompt_version: str = ""
    user_messages: int = 0
    #: Events derived from GenAI spans count only while none of their kind came explicitly.
    derived_user_messages: int = 0
    explicit_user_messages: bool = False
    explicit_tool_calls: bool = False
    positive: int = 0
    negative: int = 0
    handoff: bool = False
    finished: bool = False


class BoundedLru(OrderedDict[str, object]):
    """A dict that forgets its least recently remembered key past ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: str, value: object) -> None:
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)


class RecentKeys:
    """The last ``limit`` distinct keys remembered, oldest forgotten first: what a
    :class:`BoundedLru` of ``None`` values holds, on a plain dict (insertion-ordered too), since
    an ``OrderedDict`` costs about 1 us per key at the dedupe window's size and this is once
    per event."""

    __slots__ = ("_keys", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._keys: dict[str, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def remember_all(self, keys: Iterable[str]) -> None:
        """Remember ``keys`` (distinct, none held yet: the pipeline's fresh event ids) in turn,
        as ``BoundedLru.remember`` would: they go last, the oldest past ``limit`` go."""
        held = self._keys
        held.update(dict.fromkeys(keys))
        overflow = len(held) - self.limit
        if overflow > 0:
            for key in list(islice(held, overflow)):
                del held[key]


_by_time: Final = operator.attrgetter("timestamp_ns")  # C-level sort key
#: Events per (counter, label values) series within one observed batch.
_Counts = dict[tuple[Any, tuple[str, ...]], int]


def _count(counts: _Counts, metric: Any, labels: tuple[str, ...]) -> None:
    """One more event for ``metric``'s ``labels`` series in this batch."""
    key = (metric, labels)
    counts[key] = counts.get(key, 0) + 1


class ConversationObserver:
    """Observes accepted rows into ``metrics``; thread-safe."""

    def __init__(
        self, metrics: ConversationMetrics, state_limit: int = DEFAULT_STATE_LIMIT
    ) -> None:
        self.metrics = metrics
        self._conversations = BoundedLru(state_limit)
        self._lock = threading.Lock()

    def observe(self, rows: Sequence[EventRow]) -> None:
        """Observe newly accepted rows (each event once), oldest first."""
        with self._lock:
            if any(row.derived for row in rows):
                self._note_explicit(rows)
            counts: _Counts = {}
            for row in sorted(rows, key=_by_time):
                self._observe(row, counts)
            # Counters move once per series and batch by the batch's count: the same totals
            # as one inc() per event, without a prometheus_client call (lock, checks) each.
            child = self.metrics.child
            for (metric, labels), count in counts.items():
                child(metric, *labels).inc(count)

    def _state(self, conversation_id: str) -> _ConversationState:
        state = self._conversations.get(conversation_id)
        if isinstance(state, _ConversationState):
            # Remembering a key already held (same value) neither moves nor forgets anything.
            return state
        state = _ConversationState()
        self._conversations.remember(conversation_id, state)
        return state

    def _note_explicit(self, rows: Sequence[EventRow]) -> None:
        """Before observing a batch holding derived events: which conversations also have
        explicit ones of the same kind (a derived event sorts first, at its span's start)."""
        for row in rows:
            if row.derived:
                continue
            if row.event_type == _USER_MESSAGE:
                self._state(row.conversation_id).explicit_user_messages = True
            elif row.event_type == _TOOL_CALLED:
                self._state(row.conversation_id).explicit_tool_calls = True

    def _observe(self, row: EventRow, counts: _Counts) -> None:
        metrics = self.metrics
        state = self._state(row.conversation_id)
        state.channel = row.channel or state.channel
        state.model = row.response_model or row.request_model or state.model
        state.prompt_version = row.prompt_version or state.prompt_version
        labels = metrics.conversation_labels(
            row.agent_name, state.channel, state.prompt_version, state.model
        )
        start_labels = labels[:3]
        kind = row.event_type
        if kind == _STARTED:
            if state.started_ns is not None:  # once per conversation, explicit or derived
                return
            state.started_ns = row.timestamp_ns
            _count(counts, metrics.started, start_labels)
        elif kind == _USER_MESSAGE:
            if row.derived:
                if state.user_messages or state.explicit_user_messages:
                    return
                state.derived_user_messages += 1
            else:
                state.user_messages += 1
            _count(counts, metrics.user_messages, start_labels)
            if row.rephrase:
                _count(counts, metrics.rephrases, start_labels)
        elif kind == _TOOL_CALLED:
            if row.derived and state.explicit_tool_calls:
                return
            state.explicit_tool_calls |= not row.derived
            outcome = "error" if row.error_type else "ok"
            _count(
                counts,
                metrics.tool_calls,
                (labels[0], metrics.limit("tool", row.tool_name), outcome),
            )
        elif kind == _HANDOFF:
            state.handoff = True
            _count(counts, metrics.handoffs, labels)
        elif kind == _FEEDBACK:
            if row.feedback_rating == RATING_POSITIVE:
                state.positive += 1
            elif row.feedback_rating == RATING_NEGATIVE:
                state.negative += 1
            rating = row.feedback_rating if row.feedback_rating in RATINGS else "other"
            _count(counts, metrics.feedback, (labels[0], rating))
        elif kind == _COMPLETED:
            _count(counts, metrics.completed, labels)
            self._finish(state, row, labels, completed=True)
        elif kind == _ABANDONED:
            inferred = "true" if row.abandon_inferred else "false"
            _count(counts, metrics.abandoned, (*labels, inferred))
            self._finish(state, row, labels, completed=False)
        elif kind == EVALUATION_EVENT_TYPE:
            limit = metrics.limit
            _count(
                counts,
                metrics.evaluations,
                (
                    labels[0],
                    limit("evaluation", row.evaluation_name),
                    limit("label", row.evaluation_label),
                ),
            )

    def _finish(
        self,
        state: _ConversationState,
        row: EventRow,
        labels: tuple[str, str, str, str],
        *,
        completed: bool,
    ) -> None:
        """Once per conversation: turns, duration, drop-off turn and satisfaction histograms."""
        if state.finished:
            return
        state.finished = True
        metrics = self.metrics
        child = metrics.child
        user_messages = state.user_messages or state.derived_user_messages
        turns = row.total_turns if completed else row.abandoned_at_turn
        child(metrics.turns, *labels).observe(turns if turns is not None else user_messages)
        if completed and state.started_ns is not None:
            seconds = (row.timestamp_ns - state.started_ns) / 1e9
            child(metrics.duration, *labels).observe(max(0.0, seconds))
        if not completed and row.abandoned_at_turn is not None:
            child(metrics.abandoned_at_turn, *labels).observe(row.abandoned_at_turn)
        score = satisfaction_score(
            positive=state.positive,
            negative=state.negative,
            user_messages=user_messages,
            completed=completed,
            handoff=state.handoff,
        )
        child(metrics.satisfaction, *labels).observe(score)


_STARTED: Final = ConversationEvent.STARTED.value
_USER_MESSAGE: Final = ConversationEvent.USER_MESSAGE.value
_TOOL_CALLED: Final = ConversationEvent.TOOL_CALLED.value
_HANDOFF: Final = ConversationEvent.HANDOFF_REQUESTED.value
_FEEDBACK: Final = ConversationEvent.FEEDBACK_RECEIVED.value
_COMPLETED: Final = ConversationEvent.COMPLETED.value
_ABANDONED: Final = ConversationEvent.ABANDONED.value
