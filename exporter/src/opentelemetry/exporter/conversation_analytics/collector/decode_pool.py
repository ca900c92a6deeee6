"""Decoding OTLP requests on more than one core: worker processes parse and extract.

Everything that must be exact stays in the collector's one process: the pipeline's dedupe
window, the spool, the metrics, the trace -> conversation map, the store. What is stateless and
costs the most CPU per event -- protobuf decode and extraction into rows -- runs in a pool of
worker processes when ``decode_workers`` > 0 (spawned, never forked: the parent runs gRPC's
threads and may hold chDB). Workers send the rows back as columns; the service dedupes, observes
and writes them exactly as it does rows it decoded itself.

What is acknowledged does not change: a request is answered only once the service has written
or spooled its rows, so a worker that dies takes nothing accepted with it -- that request is
decoded in-process and the pool is replaced. A request with an evaluation that needs the trace
map (it names neither conversation nor span context) is decoded in-process too, where the map
is. Both fallbacks are counted (``conversation_analytics_decode_fallbacks_total``).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal as signals
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final, NamedTuple

from opentelemetry.exporter.conversation_analytics.collector.otlp import Signal, decode_request
from opentelemetry.exporter.conversation_analytics.evaluations import TraceConversations
from opentelemetry.exporter.conversation_analytics.extract import Extracted
from opentelemetry.exporter.conversation_analytics.rows import EventRow, row_columns

_logger = logging.getLogger(__name__)

DECODE_FALLBACKS: Final = "conversation_analytics_decode_fallbacks"
#: Fallback reasons (the metric's bounded label values): the request needs the trace map; a
#: worker died (the pool is being replaced); the pool is stopped (closing, or a replacement
#: could not start: the collector then decodes every request itself, and logs why).
FALLBACK_TRACE_CONTEXT: Final = "trace_context"
FALLBACK_WORKER_DIED: Final = "worker_died"
FALLBACK_POOL_CLOSED: Final = "pool_closed"
#: How long starting waits for each worker to answer (a spawned interpreter imports protobuf).
START_TIMEOUT_SECONDS: Final = 60.0


class DecodedColumns(NamedTuple):
    """What a worker sends back: the rows column by column, and what it rejected."""

    columns: list[list[object]]
    rejected: dict[str, int]
    rejected_items: int


# ---- in the worker processes ---------------------------------------------------------------------


class _WorkerSettings:
    """The service's extraction settings, given to each worker once when it starts."""

    store_content = False
    feedback_evaluations: frozenset[str] | None = None


def _exit_with_the_collector() -> None:
    """End this worker when the collector's process ends, however it ends: after a kill -9 the
    pool's queue never reports end-of-file (every worker holds both of its ends)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - always a spawned child
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="collector-watch", daemon=True).start()


def _init_worker(store_content: bool, feedback_evaluations: frozenset[str]) -> None:
    """Settings once per worker; Ctrl-C is the parent's to handle (it stops the pool)."""
    signals.signal(signals.SIGINT, signals.SIG_IGN)
    _exit_with_the_collector()
    _WorkerSettings.store_content = store_content
    _WorkerSettings.feedback_evaluations = feedback_evaluations


class _TraceMapProbe(TraceConversations):
    """Stands in for the service's trace map in a worker: it knows no trace, and notes that
    extraction asked, so that the request is decoded again where the map is."""

    def __init__(self) -> None:
        super().__init__(limit=1)
        self.asked = False

    def remember(self, rows: Sequence[EventRow]) -> None:
        """The service remembers the rows it accepts, not the worker."""

    def context(self, trace_id: str) -> Mapping[str, Any]:
        self.asked = True
        return {}


def _ping() -> int:
    return 0


def decode_in_worker(signal: Signal, body: bytes, is_json: bool) -> DecodedColumns | None:
    """One body's rows as columns; ``None`` when it needs the trace map (decode it in-process).
    :class:`~.otlp.MalformedRequest` reaches the caller as it is."""
    probe = _TraceMapProbe()
    extracted = decode_request(
        signal,
        body,
        is_json=is_json,
        store_content=_WorkerSettings.store_content,
        feedback_evaluations=_WorkerSettings.feedback_evaluations,
        traces=probe,
    )
    if probe.asked:
        return None
    return DecodedColumns(
        row_columns(extracted.rows), dict(extracted.rejected), extracted.rejected_items
    )


# ---- in the collector ----------------------------------------------------------------------------


class DecodePool:
    """Worker processes that decode OTLP bodies; :meth:`decode` says when to decode in-process."""

    def __init__(
        self,
        workers: int,
        *,
        store_content: bool,
        feedback_evaluations: frozenset[str],
        on_fallback: Callable[[str], None] = lambda reason: None,
    ) -> None:
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        self.workers = workers
        self._initargs = (store_content, feedback_evaluations)
        self._on_fallback = on_fallback
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def start(self) -> None:
        """Spawn every worker now and wait until each answers (not on the first request)."""
        executor = self._new_executor()
        with self._lock:
            self._executor = executor

    def _new_executor(self) -> ProcessPoolExecutor:
        """A started pool; :class:`OSError` in the operator's terms when it cannot start."""
        executor = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=self._initargs,
        )
        try:
            for future in [executor.submit(_ping) for _ in range(self.workers)]:
                future.result(timeout=START_TIMEOUT_SECONDS)
        except Exception as exc:
            executor.shutdown(wait=False, cancel_futures=True)
            raise OSError(
                f"cannot start {self.workers} decode workers ({type(exc).__name__}: {exc}); "
                "run with --decode-workers 0 to decode in the collector's process"
            ) from exc
        return executor

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids (for tests and benchmarks)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(int(pid) for pid in processes)

    def decode(self, signal: Signal, body: bytes, *, is_json: bool) -> Extracted | None:
        """The body's rows, decoded by a worker; ``None`` when the caller must decode it itself
        (the pool is closed, a worker died, or the body needs the trace map)."""
        executor = self._executor
        if executor is None:
            self._on_fallback(FALLBACK_POOL_CLOSED)
            return None
        try:
            decoded = executor.submit(decode_in_worker, signal, body, is_json).result()
        except BrokenProcessPool:
            self._on_fallback(FALLBACK_WORKER_DIED)
            self._replace(executor)
            return None
        except RuntimeError as exc:  # submitted while the pool shuts down
            if "shutdown" not in str(exc):
                raise
            self._on_fallback(FALLBACK_POOL_CLOSED)
            return None
        if decoded is None:
            self._on_fallback(FALLBACK_TRACE_CONTEXT)
            return None
        rows = list(map(EventRow, *decoded.columns))
        return Extracted(rows, Counter(decoded.rejected), decoded.rejected_items)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A worker died (killed, out of memory): start a fresh pool, once per breakage."""
        with self._lock:
            if self._executor is not broken or self._closed:
                return
            self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)
        _logger.warning("a decode worker died; starting %d new ones", self.workers)
        try:
            executor = self._new_executor()
        except Exception:
            _logger.exception("cannot restart the decode pool; decoding in-process")
            return
        with self._lock:
            if self._closed:
                executor.shutdown(wait=False, cancel_futures=True)
                return
            self._executor = executor

    def close(self) -> None:
        """Stop the workers (after the service's requests have drained)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
