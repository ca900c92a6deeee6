"""``ConversationAnalyticsLogExporter``: evaluation results and conversation events sent as log
records (the GenAI conventions' preferred form) into the same pipeline as the span exporter.

``gen_ai.evaluation.result`` log records that name only their trace take its conversation from
the spans the span exporter has seen, as the collector does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from opentelemetry.exporter.conversation_analytics.exporter import (
    SOURCE,
    ConversationAnalyticsExporter,
)
from opentelemetry.exporter.conversation_analytics.extract import Extracted
from opentelemetry.exporter.conversation_analytics.pipeline import Outcome
from opentelemetry.instrumentation.conversation import semconv

_logger = logging.getLogger(__name__)

__all__ = ["ConversationAnalyticsLogExporter"]


def _hex(value: int | None, width: int) -> str:
    return format(value, f"0{width}x") if value else ""


class ConversationAnalyticsLogExporter(LogRecordExporter):
    """Writes conversation log records through ``span_exporter``'s pipeline (its store, series,
    deduplication and settings). Without one it makes its own from ``kwargs`` (the span
    exporter's arguments) and shuts it down with itself. Never raises into the SDK."""

    def __init__(
        self, span_exporter: ConversationAnalyticsExporter | None = None, **kwargs: Any
    ) -> None:
        self._owned = span_exporter is None
        self._spans = span_exporter or ConversationAnalyticsExporter(**kwargs)
        self._shutdown = False

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        if self._shutdown:
            return LogRecordExportResult.FAILURE
        try:
            spans = self._spans
            extracted = Extracted.configured(spans.feedback_evaluations, spans.traces)
            for item in batch:
                record = getattr(item, "log_record", item)
                resource = getattr(item, "resource", None) or getattr(record, "resource", None)
                service = resource.attributes.get(semconv.SERVICE_NAME, "") if resource else ""
                extracted.add_log_record(
                    str(getattr(record, "event_name", None) or ""),
                    dict(record.attributes or {}),
                    record.timestamp or record.observed_timestamp or time.time_ns(),
                    service=str(service),
                    trace_id=_hex(record.trace_id, 32),
                    span_id=_hex(record.span_id, 16),
                    store_content=spans.store_content,
                )
            for reason, count in extracted.rejected.items():
                spans.pipeline.reject(reason, count)
            if not extracted.rows:
                return LogRecordExportResult.SUCCESS
            written = spans.pipeline.submit(extracted.rows, SOURCE) is Outcome.WRITTEN
        except Exception:  # never raise into the SDK's processor thread
            _logger.exception("conversation analytics log export failed")
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS if written else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._spans.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        if self._owned:
            self._spans.shutdown()
