"""Abandonment inference: users rarely announce that they leave.

A conversation with no ``completed``, ``abandoned`` or ``handoff_requested`` event and no activity
for the idle timeout gets an ``abandoned`` event with ``conversation.abandon.inferred=true`` and
``abandoned_at_turn`` = its last user turn. Candidates come from the store, not from one process's
memory, so inference is right across restarts and replicas; the event id is derived from the
conversation and its last activity, so reruns and replicas write the same event (stored once).

A user who comes back after an inferred abandonment revokes it (the report ignores an inferred
abandonment followed by activity); if they go quiet again, a new one is inferred from the new
last activity. A handoff followed by silence is not an abandonment: a human took over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Final

from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline, Outcome
from opentelemetry.exporter.conversation_analytics.rows import EventRow, derived_event_id
from opentelemetry.exporter.conversation_analytics.store.base import (
    ConversationStore,
    format_time,
    window_params,
)
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

_logger = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT: Final = timedelta(seconds=env.DEFAULT_IDLE_TIMEOUT_SECONDS)
DEFAULT_LOOKBACK: Final = timedelta(days=2)
SOURCE: Final = "inference"
SERVICE: Final = "conversation-analytics-collector"
_BATCH: Final = 10_000

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def inferred_abandonments(
    store: ConversationStore,
    *,
    now: datetime,
    idle_timeout: timedelta = DEFAULT_IDLE_TIMEOUT,
    lookback: timedelta = DEFAULT_LOOKBACK,
    limit: int = _BATCH,
) -> list[EventRow]:
    """The abandoned events the store's idle conversations call for (deterministic ids)."""
    days = max(1, -(-int(lookback.total_seconds()) // 86_400))
    params: dict[str, object] = dict(window_params(days, now))
    params["idle_before"] = format_time(now - idle_timeout)
    params["limit"] = limit
    rows = []
    for found in store.select(store.schema.idle_conversations(), params):
        last_us = int(found["last_activity_us"])
        turn = found["last_user_turn"]
        rows.append(
            EventRow(
                event_id=derived_event_id(SOURCE, found["conversation_id"], last_us),
                event_type=ConversationEvent.ABANDONED.value,
                conversation_id=str(found["conversation_id"]),
                timestamp_ns=last_us * 1000,
                user_id=str(found["user_id"]),
                agent_name=str(found["agent_name"]),
                abandoned_at_turn=int(turn) if turn is not None else int(found["user_messages"]),
                abandon_inferred=True,
                service_name=SERVICE,
            )
        )
    return rows


class AbandonmentSweeper:
    """Runs inference every ``interval`` in a thread; ``sweep()`` runs it once (for tests)."""

    def __init__(
        self,
        pipeline: ConversationPipeline,
        *,
        idle_timeout: timedelta = DEFAULT_IDLE_TIMEOUT,
        lookback: timedelta = DEFAULT_LOOKBACK,
        interval: float | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        if idle_timeout <= timedelta(0):
            raise ValueError("idle timeout must be positive")
        self.pipeline = pipeline
        self.idle_timeout = idle_timeout
        self.lookback = lookback
        self.interval = interval or min(60.0, max(0.5, idle_timeout.total_seconds() / 4))
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """Infer and write abandonments now; returns how many were submitted."""
        total = 0
        while True:
            rows = inferred_abandonments(
                self.pipeline.store,
                now=self.clock(),
                idle_timeout=self.idle_timeout,
                lookback=self.lookback,
            )
            if not rows or self.pipeline.submit(rows, SOURCE) is Outcome.REJECTED:
                return total
            total += len(rows)
            if len(rows) < _BATCH or self.pipeline.waiting:
                return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                inferred = self.sweep()
                if inferred:
                    _logger.info("inferred %d abandoned conversations", inferred)
            except Exception:  # keep sweeping: the store may be down for a while
                _logger.exception("abandonment inference failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="abandonment-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
