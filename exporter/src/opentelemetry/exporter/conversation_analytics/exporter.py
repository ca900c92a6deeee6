"""``ConversationAnalyticsExporter``: a SpanExporter that turns conversation events into analytics.

Registered as the ``conversation_analytics`` traces exporter, so
``OTEL_TRACES_EXPORTER=otlp,conversation_analytics`` runs it beside any other exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, start_http_server

from opentelemetry.exporter.conversation_analytics import multiprocess
from opentelemetry.exporter.conversation_analytics.collector.inference import (
    DEFAULT_IDLE_TIMEOUT,
    AbandonmentSweeper,
)
from opentelemetry.exporter.conversation_analytics.evaluations import (
    TraceConversations,
)
from opentelemetry.exporter.conversation_analytics.evaluations import (
    feedback_evaluations as _feedback_names,
)
from opentelemetry.exporter.conversation_analytics.extract import rows_from_spans
from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline, Outcome
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, open_store
from opentelemetry.instrumentation.conversation import environment_variables as env

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

_logger = logging.getLogger(__name__)

ENV_METRICS_PORT: Final = env.CONVERSATION_ANALYTICS_METRICS_PORT
ENV_METRICS_HOST: Final = env.CONVERSATION_ANALYTICS_METRICS_HOST
ENV_STORE_CONTENT: Final = env.CONVERSATION_ANALYTICS_STORE_CONTENT
#: Run abandonment inference in a background thread of the exporting process (``true``/``false``).
ENV_INFER_ABANDONMENT: Final = env.CONVERSATION_ANALYTICS_INFER_ABANDONMENT
#: Seconds of silence after which inference calls a conversation abandoned: the collector's
#: variable, so one setting serves both.
ENV_IDLE_TIMEOUT: Final = env.CONVERSATION_ANALYTICS_IDLE_TIMEOUT
DEFAULT_METRICS_HOST: Final = env.DEFAULT_METRICS_HOST
SOURCE: Final = "exporter"
_said_multiprocess = False
_said_port_taken = False


class ConversationAnalyticsExporter(SpanExporter):
    """Writes conversation span events to the store and keeps the Prometheus series.

    ``store`` is a :class:`ConversationStore` or a store URL (default:
    ``$CONVERSATION_ANALYTICS_STORE``, else the embedded ``chdb://.conversation-analytics``);
    a URL is opened on first export, so an unreachable ClickHouse never breaks the
    application's start. ``metrics_port`` (else
    ``$CONVERSATION_ANALYTICS_METRICS_PORT``) serves ``/metrics`` on ``metrics_host`` (else
    ``$CONVERSATION_ANALYTICS_METRICS_HOST``, default 127.0.0.1); 0 picks a free port.
    ``infer_abandonment`` (else ``$CONVERSATION_ANALYTICS_INFER_ABANDONMENT``, off) runs
    abandonment inference in a background thread, as the collector does, after ``idle_timeout``
    seconds of silence (else ``$CONVERSATION_ANALYTICS_IDLE_TIMEOUT``, default 1800).
    ``feedback_evaluations`` (else ``$CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS``, default
    ``user_feedback``) names the ``gen_ai.evaluation.result`` evaluations counted as feedback.
    """

    def __init__(
        self,
        store: ConversationStore | str | None = None,
        *,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
        registry: CollectorRegistry | None = None,
        max_label_values: int | None = None,
        store_content: bool | None = None,
        pipeline: ConversationPipeline | None = None,
        infer_abandonment: bool | None = None,
        idle_timeout: float | None = None,
        feedback_evaluations: str | Iterable[str] | None = None,
    ) -> None:
        if pipeline is None:
            metrics = ConversationMetrics(registry, max_label_values)
            if isinstance(store, ConversationStore):
                pipeline = ConversationPipeline(store, metrics)
            else:
                url = store
                pipeline = ConversationPipeline(lambda: open_store(url), metrics)
        self.pipeline = pipeline
        self.metrics = pipeline.metrics
        self._store_content = (
            env.env_flag(ENV_STORE_CONTENT, False) if store_content is None else store_content
        )
        self._feedback_evaluations = _feedback_names(feedback_evaluations)
        #: Conversations of recent traces, for evaluation log records naming only their trace.
        self.traces = TraceConversations()
        self._shutdown = False
        self.metrics_port: int | None = None
        self._server: WSGIServer | None = None
        if metrics_port is None and env.env_str(ENV_METRICS_PORT):
            metrics_port = int(env.env_str(ENV_METRICS_PORT))
        if metrics_port is not None:
            host = metrics_host or env.env_str(ENV_METRICS_HOST, DEFAULT_METRICS_HOST)
            self._serve_metrics(host, metrics_port)
        self._sweeper = None
        if (
            env.env_flag(ENV_INFER_ABANDONMENT, False)
            if infer_abandonment is None
            else infer_abandonment
        ):
            self._sweeper = self._start_inference(idle_timeout)

    def _serve_metrics(self, host: str, port: int) -> None:
        """Serve ``/metrics``, unless a multiprocess collector does; a port taken is said once
        and never breaks the application (another worker of a pre-fork server has it)."""
        global _said_multiprocess, _said_port_taken  # noqa: PLW0603 - once per process
        if multiprocess.enabled():
            if not _said_multiprocess:
                _said_multiprocess = True
                _logger.info(
                    "%s is set: series go to the multiprocess directory; serve them from the "
                    "server's master with multiprocess.start_metrics_server",
                    env.PROMETHEUS_MULTIPROC_DIR,
                )
            return
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.metrics.registry)
        except OSError as error:
            if not _said_port_taken:
                _said_port_taken = True
                _logger.warning(
                    "cannot serve /metrics on %s:%d (%s); the agent goes on without it. Under a "
                    "pre-fork server (gunicorn, uvicorn --workers) set %s so that one server "
                    "sums every worker (see the README)",
                    host,
                    port,
                    error.strerror or error,
                    env.PROMETHEUS_MULTIPROC_DIR,
                )
            return
        self._server = server
        self.metrics_port = int(server.server_address[1])

    def _start_inference(self, idle_timeout: float | None) -> AbandonmentSweeper:
        """Abandonment inference in a thread of its own, never on the export path."""
        if idle_timeout is None:
            raw = env.env_str(ENV_IDLE_TIMEOUT)
            try:
                idle_timeout = float(raw) if raw else DEFAULT_IDLE_TIMEOUT.total_seconds()
            except ValueError:
                raise ValueError(
                    f"{ENV_IDLE_TIMEOUT} must be a number of seconds, got {raw!r}"
                ) from None
        sweeper = AbandonmentSweeper(self.pipeline, idle_timeout=timedelta(seconds=idle_timeout))
        sweeper.start()
        return sweeper

    @property
    def store(self) -> ConversationStore:
        return self.pipeline.store

    @property
    def store_content(self) -> bool:
        """Whether captured message text is kept (``store_content`` / its variable)."""
        return self._store_content

    @property
    def feedback_evaluations(self) -> frozenset[str]:
        """Evaluation names that count as user feedback."""
        return self._feedback_evaluations

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            rows, rejected = rows_from_spans(
                spans,
                store_content=self._store_content,
                feedback_evaluations=self._feedback_evaluations,
            )
            for reason, count in rejected.items():
                self.pipeline.reject(reason, count)
            self.traces.remember(rows)
            if not rows and not self.pipeline.waiting:
                return SpanExportResult.SUCCESS
            written = self.pipeline.submit(rows, SOURCE) is Outcome.WRITTEN
        except Exception:  # never raise into the SDK's processor thread
            _logger.exception("conversation analytics export failed")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if written else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self.pipeline.flush()
        except Exception:
            _logger.exception("conversation analytics flush failed")
            return False

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        try:
            if self._sweeper is not None:
                self._sweeper.stop()
            self.pipeline.close()
        finally:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
