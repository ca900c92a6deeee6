"""The write path shared by the in-process exporter and the collector service.

Rows arrive in batches; each event id is accepted once (re-exports and client retries are counted
as duplicates, not stored or counted again), observed into the Prometheus series, and written to the
store with retries and backoff. What still cannot be written waits: in the exporter, in a bounded
memory buffer retried on the next batch or flush (overflow counted by reason, never silent); in
the collector, in a :class:`~.spool.DiskSpool`, so that an acknowledged event survives a crash. When
the spool is full too, the batch is refused (``Outcome.REJECTED``) and the client retries it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from opentelemetry.exporter.conversation_analytics.analytics import satisfaction_score
from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store.base import ConversationStore
from opentelemetry.instrumentation.conversation.semconv import (
    EVALUATION_EVENT_TYPE,
    RATING_NEGATIVE,
    RATING_POSITIVE,
    RATINGS,
    ConversationEvent,
)

if TYPE_CHECKING:
    from opentelemetry.exporter.conversation_analytics.spool import DiskSpool

_logger = logging.getLogger(__name__)

DEFAULT_MAX_BUFFERED_EVENTS: Final = 100_000
DEFAULT_BATCH_SIZE: Final = 20_000
DEFAULT_DEDUPE_WINDOW: Final = 200_000
DEFAULT_STATE_LIMIT: Final = 100_000
DROP_BUFFER_FULL: Final = "buffer_full"
DROP_SHUTDOWN: Final = "shutdown"
DROP_STORE_REJECTED: Final = "store_rejected"

StoreProvider = Callable[[], ConversationStore]


class Outcome(Enum):
    """What became of a submitted batch."""

    WRITTEN = "written"  # in the store
    BUFFERED = "buffered"  # waiting: on disk with a spool (durable), else in memory
    REJECTED = "rejected"  # not accepted (spool full): the sender must retry


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


class _BoundedLru(OrderedDict[str, object]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: str, value: object) -> None:
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)


class ConversationPipeline:
    """Dedupe, observe, write with retry; one instance per exporter or collector."""

    def __init__(
        self,
        store: ConversationStore | StoreProvider,
        metrics: ConversationMetrics | None = None,
        *,
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_attempts: int = 4,
        backoff_seconds: float = 0.05,
        max_backoff_seconds: float = 2.0,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        state_limit: int = DEFAULT_STATE_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        spool: DiskSpool | None = None,
        cooldown_seconds: float = 1.0,
    ) -> None:
        if max_buffered_events < 1 or batch_size < 1 or max_attempts < 1:
            raise ValueError("buffer size, batch size and attempts must be at least 1")
        if isinstance(store, ConversationStore):
            self._store: ConversationStore | None = store
            self._provider: StoreProvider | None = None
        else:
            self._store, self._provider = None, store
        self.metrics = metrics or ConversationMetrics()
        self.max_buffered_events = max_buffered_events
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._seen = _BoundedLru(dedupe_window)
        self._conversations = _BoundedLru(state_limit)
        self._pending: list[EventRow] = []
        self.spool = spool
        self.cooldown_seconds = cooldown_seconds
        self._down_until = 0.0  # after a failed write, skip the store briefly (circuit breaker)
        self._lock = threading.RLock()

    # ---- public ---------------------------------------------------------------------------------

    @property
    def store(self) -> ConversationStore:
        """The store, opened on first use when given as a provider (a URL not yet reachable)."""
        if self._store is None:
            assert self._provider is not None
            self._store = self._provider()
        return self._store

    @property
    def pending(self) -> int:
        """Events accepted but held in the memory buffer."""
        return len(self._pending)

    def reject(self, reason: str, count: int = 1) -> None:
        """Count events that could not become rows (bad input)."""
        if count:
            self.metrics.events_dropped.labels(reason).inc(count)

    def submit(self, rows: Iterable[EventRow], source: str) -> Outcome:
        """Accept rows (each event id once) and write them, or keep them waiting."""
        with self._lock:
            batch = list(rows)
            fresh = self._fresh(batch)
            if self._flush_memory() and self._write(fresh):
                outcome = Outcome.WRITTEN
            elif self.spool is not None:
                if not fresh or self.spool.append(fresh):
                    outcome = Outcome.BUFFERED
                else:
                    self.metrics.events_rejected.inc(len(fresh))
                    return Outcome.REJECTED  # not received, seen or observed: the retry counts
            else:
                self._pending.extend(fresh)
                self._trim_memory_buffer()
                outcome = Outcome.BUFFERED
            self.metrics.events_received.labels(source).inc(len(batch))
            if len(batch) > len(fresh):
                self.metrics.events_duplicate.inc(len(batch) - len(fresh))
            self._accept(fresh)
            self.metrics.queue_depth.set(self.waiting)
            return outcome

    @property
    def waiting(self) -> int:
        """Events accepted but not yet in the store (memory buffer and spool)."""
        return len(self._pending) + (self.spool.events if self.spool is not None else 0)

    def flush(self) -> bool:
        """Try to write everything waiting, the spool segment by segment; True when all is in."""
        self._down_until = 0.0
        with self._lock:
            if not self._flush_memory():
                return False
        if self.spool is not None:
            for segment in self.spool.segments():
                with self._lock:  # per segment, so that exports go on while a backlog drains
                    if not self._write_segment(segment):
                        self.metrics.queue_depth.set(self.waiting)
                        return False
        self.metrics.queue_depth.set(self.waiting)
        return True

    def close(self) -> None:
        """Flush once more; whatever still cannot be written is counted as dropped.

        A store given as an instance belongs to the caller and stays open.
        """
        if not self.flush() and self._pending:
            with self._lock:
                # Memory only: a spool keeps its events on disk for the next start.
                self.metrics.events_dropped.labels(DROP_SHUTDOWN).inc(len(self._pending))
                _logger.error("shutting down with %d unwritten events", len(self._pending))
                self._pending.clear()
                self.metrics.queue_depth.set(self.waiting)
        if self._store is not None and self._provider is not None:
            self._store.close()  # only a store this pipeline opened itself

    # ---- internals ------------------------------------------------------------------------------

    def _fresh(self, rows: list[EventRow]) -> list[EventRow]:
        """Rows whose event id this process has not accepted yet (in batch order, deduplicated)."""
        fresh: dict[str, EventRow] = {}
        seen = self._seen
        for row in rows:
            if row.event_id not in seen:
                fresh.setdefault(row.event_id, row)
        return list(fresh.values())

    def _accept(self, fresh: list[EventRow]) -> None:
        """Remember and observe rows that are now written or waiting."""
        derived = False
        for row in fresh:
            self._seen.remember(row.event_id, None)
            derived |= row.derived
        if derived:
            self._note_explicit(fresh)
        for row in sorted(fresh, key=_by_time):
            self._observe(row)

    def _state(self, conversation_id: str) -> _ConversationState:
        state = self._conversations.get(conversation_id)
        if not isinstance(state, _ConversationState):
            state = _ConversationState()
        self._conversations.remember(conversation_id, state)
        return state

    def _note_explicit(self, rows: list[EventRow]) -> None:
        """Before observing a batch holding derived events: which conversations also have
        explicit ones of the same kind (a derived event sorts first, at its span's start)."""
        for row in rows:
            if row.derived:
                continue
            if row.event_type == _USER_MESSAGE:
                self._state(row.conversation_id).explicit_user_messages = True
            elif row.event_type == _TOOL_CALLED:
                self._state(row.conversation_id).explicit_tool_calls = True

    def _trim_memory_buffer(self) -> None:
        overflow = len(self._pending) - self.max_buffered_events
        if overflow > 0:
            # Oldest first out: the buffer keeps the newest events while the store is down.
            del self._pending[:overflow]
            self.metrics.events_dropped.labels(DROP_BUFFER_FULL).inc(overflow)
            _logger.error("store unavailable and buffer full: dropped %d events", overflow)

    def _flush_memory(self) -> bool:
        while self._pending:
            batch = self._pending[: self.batch_size]
            if not self._write(batch):
                return False
            del self._pending[: len(batch)]
        return True

    def _write_segment(self, segment: Path) -> bool:
        assert self.spool is not None
        rows = self.spool.read(segment)
        for start in range(0, len(rows), self.batch_size):
            if not self._write(rows[start : start + self.batch_size]):
                return False  # the segment stays; rewriting its head later is idempotent
        self.spool.remove(segment)
        return True

    def _write(self, batch: Sequence[EventRow]) -> bool:
        """Write with retries; False only while the store is unreachable.

        When the store answers but refuses the batch, the batch itself is bad: it is split to
        find the rows the store will not take, which are dropped and counted
        (``reason="store_rejected"``) so that one bad row never holds back the rest.
        """
        if not batch:
            return True
        if time.monotonic() < self._down_until:
            return False
        delay = self.backoff_seconds
        for attempt in range(1, self.max_attempts + 1):
            error = self._attempt(batch)
            if error is None:
                return True
            _logger.warning(
                "store write of %d events failed (attempt %d/%d): %s",
                len(batch),
                attempt,
                self.max_attempts,
                error,
            )
            if attempt < self.max_attempts:
                self._sleep(min(self.max_backoff_seconds, delay) * random.uniform(0.5, 1.0))  # noqa: S311
                delay *= 2
        if self._store_answers():
            self._isolate(batch)
            return True
        self._down_until = time.monotonic() + self.cooldown_seconds
        return False

    def _attempt(self, batch: Sequence[EventRow]) -> Exception | None:
        started = time.perf_counter()
        try:
            self.store.insert(batch)
        except Exception as exc:
            self.metrics.write_errors.inc()
            return exc
        self.metrics.batch_write_seconds.observe(time.perf_counter() - started)
        self.metrics.events_written.inc(len(batch))
        return None

    def _store_answers(self) -> bool:
        try:
            self.store.ping()
        except Exception:
            return False
        return True

    def _isolate(self, batch: Sequence[EventRow]) -> None:
        if len(batch) == 1:
            self.metrics.events_dropped.labels(DROP_STORE_REJECTED).inc()
            _logger.error("the store refused event %s; dropped", batch[0].event_id[:64])
            return
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            if self._attempt(half) is not None:
                self._isolate(half)

    def _observe(self, row: EventRow) -> None:
        metrics = self.metrics
        child = metrics.child
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
            child(metrics.started, *start_labels).inc()
        elif kind == _USER_MESSAGE:
            if row.derived:
                if state.user_messages or state.explicit_user_messages:
                    return
                state.derived_user_messages += 1
            else:
                state.user_messages += 1
            child(metrics.user_messages, *start_labels).inc()
            if row.rephrase:
                child(metrics.rephrases, *start_labels).inc()
        elif kind == _TOOL_CALLED:
            if row.derived and state.explicit_tool_calls:
                return
            state.explicit_tool_calls |= not row.derived
            outcome = "error" if row.error_type else "ok"
            child(
                metrics.tool_calls, labels[0], metrics.limit("tool", row.tool_name), outcome
            ).inc()
        elif kind == _HANDOFF:
            state.handoff = True
            child(metrics.handoffs, *labels).inc()
        elif kind == _FEEDBACK:
            if row.feedback_rating == RATING_POSITIVE:
                state.positive += 1
            elif row.feedback_rating == RATING_NEGATIVE:
                state.negative += 1
            rating = row.feedback_rating if row.feedback_rating in RATINGS else "other"
            child(metrics.feedback, labels[0], rating).inc()
        elif kind == _COMPLETED:
            child(metrics.completed, *labels).inc()
            self._finish(state, row, labels, completed=True)
        elif kind == _ABANDONED:
            inferred = "true" if row.abandon_inferred else "false"
            child(metrics.abandoned, *labels, inferred).inc()
            self._finish(state, row, labels, completed=False)
        elif kind == EVALUATION_EVENT_TYPE:
            limit = metrics.limit
            child(
                metrics.evaluations,
                labels[0],
                limit("evaluation", row.evaluation_name),
                limit("label", row.evaluation_label),
            ).inc()

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


def _by_time(row: EventRow) -> int:
    return row.timestamp_ns


_STARTED: Final = ConversationEvent.STARTED.value
_USER_MESSAGE: Final = ConversationEvent.USER_MESSAGE.value
_TOOL_CALLED: Final = ConversationEvent.TOOL_CALLED.value
_HANDOFF: Final = ConversationEvent.HANDOFF_REQUESTED.value
_FEEDBACK: Final = ConversationEvent.FEEDBACK_RECEIVED.value
_COMPLETED: Final = ConversationEvent.COMPLETED.value
_ABANDONED: Final = ConversationEvent.ABANDONED.value
