"""The collector's core, shared by the gRPC and HTTP receivers: decode, extract, write durably.

An export is acknowledged only once its events are durable: written to the store, or spooled to
disk (replayed at start and whenever the store is back). When the store is down and the spool is
full, the request is refused with OTLP's retryable error so that clients back off and resend.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar

from prometheus_client import Counter as PromCounter

from opentelemetry.exporter.conversation_analytics.collector.config import CollectorConfig
from opentelemetry.exporter.conversation_analytics.collector.decode_pool import (
    DECODE_FALLBACKS,
    DecodePool,
)
from opentelemetry.exporter.conversation_analytics.collector.inference import (
    AbandonmentSweeper,
    Clock,
)
from opentelemetry.exporter.conversation_analytics.collector.otlp import (
    MalformedRequest,
    Signal,
    decode_request,
)
from opentelemetry.exporter.conversation_analytics.evaluations import (
    TraceConversations,
    feedback_evaluations,
)
from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline, Outcome
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.spool import DiskSpool
from opentelemetry.exporter.conversation_analytics.store import (
    ConversationStore,
    StoreError,
    open_store,
)

_logger = logging.getLogger(__name__)

#: Written into an embedded store's directory while a collector owns it, so that ``report`` and
#: ``conversation`` in another process can ask the running collector instead.
DISCOVERY_FILE: Final = "collector.json"
REQUESTS_REJECTED: Final = "conversation_analytics_requests_rejected"
RETRY_AFTER_SECONDS: Final = 5


class Status(Enum):
    OK = "ok"
    INVALID = "invalid"  # malformed request: do not retry
    UNAVAILABLE = "unavailable"  # store down and spool full: retry later


@dataclass
class ExportResult:
    status: Status
    rejected_items: int = 0
    message: str = ""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def chdb_directory(store_url: str) -> Path | None:
    """The directory of an embedded store URL, else ``None``."""
    if not store_url.startswith("chdb:"):
        return None
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(store_url)
    return Path(unquote(parts.netloc + parts.path) or ".conversation-analytics").absolute()


class ShuttingDown(RuntimeError):
    """The collector is stopping: a new request is refused (retryable), never half-served."""


class InFlight:
    """Counts calls that use the store, so that closing waits for them before the store is
    released (an engine closed under a running query crashes the process), and refuses new ones
    once closing has begun."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self.closing = False

    @contextmanager
    def enter(self) -> Iterator[None]:
        with self._changed:
            if self.closing:
                raise ShuttingDown("the collector is shutting down")
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def close(self, timeout: float) -> bool:
        """Refuse new calls and wait up to ``timeout`` seconds for running ones; False if some
        are still running."""
        with self._changed:
            self.closing = True
            return self._changed.wait_for(lambda: self._count == 0, timeout)


_R = TypeVar("_R")


def _in_flight(method: Callable[..., _R]) -> Callable[..., _R]:
    """Run a :class:`CollectorService` method as an in-flight store call."""

    @functools.wraps(method)
    def wrapper(self: CollectorService, *args: Any, **kwargs: Any) -> _R:
        with self.in_flight.enter():
            return method(self, *args, **kwargs)

    return wrapper


#: How long closing waits for running requests before releasing the store anyway.
DRAIN_TIMEOUT_SECONDS: Final = 30.0


class CollectorService:
    """Owns the store, the pipeline, the spool and the abandonment sweeper."""

    def __init__(
        self,
        config: CollectorConfig,
        *,
        clock: Clock = _utcnow,
        store: ConversationStore | None = None,
    ) -> None:
        self.config = config
        self.metrics = ConversationMetrics()
        self.requests_rejected = PromCounter(
            REQUESTS_REJECTED,
            "OTLP requests refused, by reason",
            ("reason",),
            registry=self.metrics.registry,
        )
        directory = chdb_directory(config.store)
        spool_dir = config.spool_dir or (
            f"{directory}-spool" if directory else ".conversation-analytics-spool"
        )
        self.spool = DiskSpool(spool_dir, config.spool_max_bytes)
        store_url = config.store
        self.pipeline = ConversationPipeline(
            store if store is not None else (lambda: open_store(store_url)),
            self.metrics,
            spool=self.spool,
            max_attempts=2,
        )
        self.sweeper = AbandonmentSweeper(
            self.pipeline,
            idle_timeout=timedelta(seconds=config.idle_timeout),
            lookback=timedelta(seconds=config.inference_lookback),
            clock=clock,
        )
        self.traces = TraceConversations()
        self.feedback_evaluations = feedback_evaluations(config.feedback_evaluations)
        self.decode_fallbacks = PromCounter(
            DECODE_FALLBACKS,
            "OTLP requests the decode pool handed back to the collector's own process, by reason",
            ("reason",),
            registry=self.metrics.registry,
        )
        self.decode_pool = (
            DecodePool(
                config.decode_workers,
                store_content=config.store_content,
                feedback_evaluations=self.feedback_evaluations,
                on_fallback=lambda reason: self.decode_fallbacks.labels(reason).inc(),
            )
            if config.decode_workers
            else None
        )
        self._discovery = directory / DISCOVERY_FILE if directory else None
        self._stop = threading.Event()
        self._drainer: threading.Thread | None = None
        self.in_flight = InFlight()
        #: Set once every configured receiver accepts connections (``/readyz`` says ready).
        self.receiving = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self, api_url: str | None = None) -> None:
        """Open the store (if reachable), replay the spool, start the background work."""
        try:
            self.pipeline.store  # noqa: B018 - opens the embedded store now: fail fast if locked
        except StoreError:
            if self._discovery is not None:
                raise  # an embedded store that cannot be opened will not come back by waiting
            _logger.warning("store unreachable at start; spooling until it is back")
        if self.spool.events:
            _logger.info("replaying %d spooled events", self.spool.events)
            self.pipeline.flush()
        if self.decode_pool is not None:
            self.decode_pool.start()
        if self._discovery is not None and api_url:
            self._discovery.write_text(
                json.dumps(
                    {"pid": os.getpid(), "api_url": api_url, "auth": bool(self.config.auth_token)}
                )
            )
        self.sweeper.start()
        self._drainer = threading.Thread(target=self._drain, name="spool-drainer", daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        while not self._stop.wait(1.0):
            if self.spool.events:
                try:
                    self.pipeline.flush()
                except Exception:
                    _logger.exception("spool replay failed")

    def close(self) -> None:
        """Stop background work, wait for running requests, flush, release the store (the spool
        keeps what is unwritten)."""
        self.receiving.clear()
        self._stop.set()
        if not self.in_flight.close(DRAIN_TIMEOUT_SECONDS):
            _logger.warning("requests still running after %.0f s; closing", DRAIN_TIMEOUT_SECONDS)
        self.sweeper.stop()
        if self.decode_pool is not None:
            self.decode_pool.close()
        if self._drainer is not None:
            self._drainer.join(timeout=30)
        if self._discovery is not None:
            self._discovery.unlink(missing_ok=True)
        self.pipeline.close()

    # ---- requests -------------------------------------------------------------------------------

    def reject_request(self, reason: str) -> None:
        self.requests_rejected.labels(reason).inc()

    def export(self, signal: Signal, body: bytes, *, is_json: bool, source: str) -> ExportResult:
        """Handle one OTLP export body; never raises for bad input. While the collector shuts
        down it answers unavailable (retryable: the client resends, to this or another replica)."""
        try:
            with self.in_flight.enter():
                return self._export(signal, body, is_json=is_json, source=source)
        except ShuttingDown as exc:
            self.reject_request("unavailable")
            return ExportResult(Status.UNAVAILABLE, message=str(exc))

    def _export(self, signal: Signal, body: bytes, *, is_json: bool, source: str) -> ExportResult:
        try:
            extracted = None
            if self.decode_pool is not None:
                extracted = self.decode_pool.decode(signal, body, is_json=is_json)
            if extracted is None:
                extracted = decode_request(
                    signal,
                    body,
                    is_json=is_json,
                    store_content=self.config.store_content,
                    feedback_evaluations=self.feedback_evaluations,
                    traces=self.traces,
                )
            elif signal is Signal.TRACES:
                self.traces.remember(extracted.rows)  # as rows_from_traces does in-process
        except MalformedRequest as exc:
            self.reject_request("malformed")
            return ExportResult(Status.INVALID, message=str(exc))
        for reason, count in extracted.rejected.items():
            self.pipeline.reject(reason, count)
        if self.pipeline.submit(extracted.rows, source) is Outcome.REJECTED:
            self.reject_request("unavailable")
            return ExportResult(Status.UNAVAILABLE, message="store unavailable and spool full")
        return ExportResult(Status.OK, extracted.rejected_items, extracted.message)

    # ---- health and reads -----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Ready to accept exports: every receiver accepts, and the store answers or the spool
        has room."""
        if not self.receiving.is_set():
            return False, "starting: the receivers are not accepting yet"
        try:
            with self.in_flight.enter():
                self.pipeline.store.count_events()
        except ShuttingDown:
            return False, "shutting down"
        except Exception as exc:
            if not self.spool.refused and self.spool.bytes < self.spool.max_bytes * 0.9:
                return True, f"store unavailable ({str(exc)[:100]}); spooling"
            return False, "store unavailable and spool nearly full"
        return True, "ok"

    @_in_flight
    def report(self, days: int, agent: str) -> dict[str, Any]:
        return StoreReader(self.pipeline.store).report(days, agent=agent).to_dict()

    @_in_flight
    def compare(self, by: str, days: int, baseline: str | None, agent: str) -> dict[str, Any]:
        return (
            StoreReader(self.pipeline.store)
            .compare(by, days, baseline=baseline, agent=agent)
            .to_dict()
        )

    @_in_flight
    def conversations(self, days: int, **filters: Any) -> dict[str, Any]:
        """``GET /api/v1/conversations``: the store's listing; ``ValueError`` (a 400) for a bad
        filter."""
        return StoreReader(self.pipeline.store).conversations(days, **filters).to_dict()

    @_in_flight
    def conversation(self, conversation_id: str) -> dict[str, Any]:
        """One conversation; ``UnknownConversation`` (a 404) when the store has no events for it."""
        return StoreReader(self.pipeline.store).existing_conversation(conversation_id).to_dict()

    @_in_flight
    def feedback(self, body: object) -> dict[str, Any]:
        """Store one late rating (``POST /api/v1/feedback``): acknowledged only once written or
        spooled, like OTLP input. ``ValueError`` for a bad body, ``UnknownConversation``."""
        from opentelemetry.exporter.conversation_analytics.feedback import (
            SOURCE,
            feedback_row_from_body,
        )

        row = feedback_row_from_body(self.pipeline.store, body)
        outcome = self.pipeline.submit([row], SOURCE)
        if outcome is Outcome.REJECTED:
            raise RuntimeError("store unavailable and spool full")
        return {"accepted": True, "event_id": row.event_id, "outcome": outcome.value}
