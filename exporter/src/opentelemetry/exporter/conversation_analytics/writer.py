"""``StoreWriter``: one batch into the store, with bounded retries, a circuit breaker, and bad rows
isolated so that one row the store refuses never holds back the rest of its batch.

It knows nothing of deduplication, buffering or Prometheus conversation series (the pipeline and
the observer do); it owns the store handle and the write-path health series.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store.base import (
    ConversationStore,
    StoreInUse,
)

_logger = logging.getLogger(__name__)

DROP_STORE_REJECTED: Final = "store_rejected"
#: Said once per writer when another process holds the embedded store.
IN_USE_HINT: Final = (
    "%s. Under a pre-fork server (gunicorn, uvicorn --workers) only one worker can write an "
    "embedded store: send OTLP to the collector service (conversation-analytics collector) or "
    "point the store at a ClickHouse server (clickhouse://...). Until the store is free, this "
    "process keeps its events in its bounded memory buffer"
)
StoreProvider = Callable[[], ConversationStore]
Jitter = Callable[[], float]


def _jitter() -> float:
    return random.uniform(0.5, 1.0)  # noqa: S311 - spreads retries, not a secret


class StoreWriter:
    """Writes batches; ``write`` is False only while the store is unreachable.

    ``store`` is an open store (the caller's: never closed here) or a provider called on first use
    (a URL not reachable yet must not fail the application's start). Retries back off
    exponentially with jitter up to ``max_backoff_seconds``; :meth:`interrupt` cuts a backoff
    short.
    After a write failed every attempt, the store is skipped for ``cooldown_seconds``.
    """

    def __init__(
        self,
        store: ConversationStore | StoreProvider,
        metrics: ConversationMetrics,
        *,
        max_attempts: int = 4,
        backoff_seconds: float = 0.05,
        max_backoff_seconds: float = 2.0,
        cooldown_seconds: float = 1.0,
        sleep: Callable[[float], object] | None = None,
        jitter: Jitter = _jitter,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("attempts must be at least 1")
        if isinstance(store, ConversationStore):
            self._store: ConversationStore | None = store
            self._provider: StoreProvider | None = None
        else:
            self._store, self._provider = None, store
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.cooldown_seconds = cooldown_seconds
        self._closing = threading.Event()
        self.sleep: Callable[[float], object] = sleep or self._closing.wait
        self.jitter = jitter
        self._down_until = 0.0
        self._opening = threading.Lock()
        self._said_in_use = False

    @property
    def store(self) -> ConversationStore:
        """The store, opened on first use when given as a provider, once even when several
        threads (a receiver, a readiness probe) ask at the same moment."""
        store = self._store
        if store is None:
            with self._opening:
                if self._store is None:
                    assert self._provider is not None
                    self._store = self._provider()
                store = self._store
        return store

    def reset(self) -> None:
        """Forget a recent failure: the next write tries the store at once (an explicit flush)."""
        self._down_until = 0.0

    def write(self, batch: Sequence[EventRow]) -> bool:
        """Write with retries; False only while the store is unreachable.

        When the store answers but refuses the batch, the batch itself is bad: it is split to find
        the rows the store will not take, which are dropped and counted
        (``reason="store_rejected"``).
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
            if isinstance(error, StoreInUse):  # not transient: retrying only repeats it
                if not self._said_in_use:
                    self._said_in_use = True
                    _logger.warning(IN_USE_HINT, error)
                break
            _logger.warning(
                "store write of %d events failed (attempt %d/%d): %s",
                len(batch),
                attempt,
                self.max_attempts,
                error,
            )
            if attempt < self.max_attempts and not self._closing.is_set():
                self.sleep(min(self.max_backoff_seconds, delay) * self.jitter())
                delay *= 2
        if self._store_answers():
            self._isolate(batch)
            return True
        self._down_until = time.monotonic() + self.cooldown_seconds
        return False

    def interrupt(self) -> None:
        """Stop backing off, now and from here on: a shutdown does not wait out retries."""
        self._closing.set()

    def close(self) -> None:
        """Close the store if it was opened here (a store given as an instance is the caller's)."""
        self.interrupt()
        with self._opening:
            if self._store is not None and self._provider is not None:
                self._store.close()

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
