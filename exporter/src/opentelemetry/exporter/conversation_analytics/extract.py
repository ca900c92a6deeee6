"""Conversation events out of finished SDK spans (the collector has its own OTLP decoder)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    row_from_attributes,
)
from opentelemetry.instrumentation.conversation import semconv


def _plain(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The SDK's BoundedAttributes iterate through the Mapping ABC; a C-level copy is faster."""
    if not attributes:
        return {}
    copy = getattr(attributes, "copy", None)
    return copy() if copy is not None else attributes


def rows_from_spans(
    spans: Iterable[ReadableSpan], *, store_content: bool = False
) -> tuple[list[EventRow], Counter[str]]:
    """Rows for every ``conversation.*`` span event, and rejected events counted by reason."""
    rows: list[EventRow] = []
    rejected: Counter[str] = Counter()
    for span in spans:
        events = span.events
        if not events:
            continue
        context = span.context
        trace_id = span_id = ""
        if context is not None:
            trace_id = format(context.trace_id, "032x")
            span_id = format(context.span_id, "016x")
        resource = span.resource
        service = resource.attributes.get(semconv.SERVICE_NAME, "") if resource else ""
        for event in events:
            kind = semconv.event_type_of(event.name)
            if kind is None:
                continue
            try:
                rows.append(
                    row_from_attributes(
                        kind,
                        _plain(event.attributes),
                        event.timestamp,
                        service_name=str(service),
                        trace_id=trace_id,
                        span_id=span_id,
                        store_content=store_content,
                    )
                )
            except RejectedEvent as exc:
                rejected[exc.reason] += 1
    return rows, rejected
