"""The write path shared by the in-process exporter and the collector service.

Rows arrive in batches; each event id is accepted once (re-exports and client retries are counted
as duplicates, not stored or counted again), observed into the Prometheus series
(:class:`~.observer.ConversationObserver`), and written to the store
(:class:`~.writer.StoreWriter`: retries, backoff, circuit breaker, bad-row isolation). What still
cannot be written waits: in the exporter, in a bounded memory buffer retried on the next batch or
flush (overflow counted by reason, never silent); in the collector, in a
:class:`~.spool.DiskSpool`, so that an acknowledged event survives a crash. When the spool is full
too, the batch is refused (``Outcome.REJECTED``) and the client retries it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from opentelemetry.exporter.conversation_analytics.observer import (
    DEFAULT_STATE_LIMIT,
    ConversationObserver,
    RecentKeys,
)
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store.base import ConversationStore
from opentelemetry.exporter.conversation_analytics.writer import StoreProvider, StoreWriter

if TYPE_CHECKING:
    from opentelemetry.exporter.conversation_analytics.spool import DiskSpool

_logger = logging.getLogger(__name__)

DEFAULT_MAX_BUFFERED_EVENTS: Final = 100_000
DEFAULT_BATCH_SIZE: Final = 20_000
DEFAULT_DEDUPE_WINDOW: Final = 200_000
DROP_BUFFER_FULL: Final = "buffer_full"
DROP_SHUTDOWN: Final = "shutdown"


class Outcome(Enum):
    """What became of a submitted batch."""

    WRITTEN = "written"  # in the store
    BUFFERED = "buffered"  # waiting: on disk with a spool (durable), else in memory
    REJECTED = "rejected"  # not accepted (spool full): the sender must retry


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
        sleep: Callable[[float], object] | None = None,
        spool: DiskSpool | None = None,
        cooldown_seconds: float = 1.0,
    ) -> None:
        if max_buffered_events < 1 or batch_size < 1:
            raise ValueError("buffer size and batch size must be at least 1")
        self.metrics = metrics or ConversationMetrics()
        self.writer = StoreWriter(
            store,
            self.metrics,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
            cooldown_seconds=cooldown_seconds,
            sleep=sleep,
        )
        self.observer = ConversationObserver(self.metrics, state_limit)
        self.max_buffered_events = max_buffered_events
        self.batch_size = batch_size
        self._seen = RecentKeys(dedupe_window)
        self._pending: list[EventRow] = []
        self.spool = spool
        self._lock = threading.RLock()

    # ---- public ---------------------------------------------------------------------------------

    @property
    def store(self) -> ConversationStore:
        """The store, opened on first use when given as a provider (a URL not yet reachable)."""
        return self.writer.store

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
            if self._flush_memory() and self.writer.write(fresh):
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
        self.writer.reset()
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
        self.writer.interrupt()
        if not self.flush() and self._pending:
            with self._lock:
                # Memory only: a spool keeps its events on disk for the next start.
                self.metrics.events_dropped.labels(DROP_SHUTDOWN).inc(len(self._pending))
                _logger.error("shutting down with %d unwritten events", len(self._pending))
                self._pending.clear()
                self.metrics.queue_depth.set(self.waiting)
        self.writer.close()

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
        self._seen.remember_all([row.event_id for row in fresh])
        self.observer.observe(fresh)

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
            if not self.writer.write(batch):
                return False
            del self._pending[: len(batch)]
        return True

    def _write_segment(self, segment: Path) -> bool:
        assert self.spool is not None
        rows = self.spool.read(segment)
        for start in range(0, len(rows), self.batch_size):
            if not self.writer.write(rows[start : start + self.batch_size]):
                return False  # the segment stays; rewriting its head later is idempotent
        self.spool.remove(segment)
        return True
