"""Conversation events out of finished SDK spans (the collector has its own OTLP decoder):
explicit ``conversation.*`` span events, and events derived from GenAI spans."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from opentelemetry.exporter.conversation_analytics.derive import derive_rows
from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    row_from_attributes,
)
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.genai import plain_attributes, span_role


def rows_from_spans(
    spans: Iterable[ReadableSpan], *, store_content: bool = False
) -> tuple[list[EventRow], Counter[str]]:
    """Rows for every ``conversation.*`` span event and every event a GenAI span implies, and
    rejected events counted by reason."""
    rows: list[EventRow] = []
    rejected: Counter[str] = Counter()
    for span in spans:
        events = span.events
        attributes = plain_attributes(span.attributes)
        role = span_role(attributes)
        if not events and role is None:
            continue
        context = span.context
        trace_id = span_id = ""
        if context is not None:
            trace_id = format(context.trace_id, "032x")
            span_id = format(context.span_id, "016x")
        resource = span.resource
        service = resource.attributes.get(semconv.SERVICE_NAME, "") if resource else ""
        if role is not None:
            derive_rows(
                attributes,
                name=span.name,
                start_ns=span.start_time or 0,
                end_ns=span.end_time or 0,
                has_parent=span.parent is not None,
                failed=span.status.status_code is StatusCode.ERROR,
                rows=rows,
                rejected=rejected,
                service=str(service),
                trace_id=trace_id,
                span_id=span_id,
            )
        for event in events:
            kind = semconv.event_type_of(event.name)
            if kind is None:
                continue
            try:
                rows.append(
                    row_from_attributes(
                        kind,
                        plain_attributes(event.attributes),
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
