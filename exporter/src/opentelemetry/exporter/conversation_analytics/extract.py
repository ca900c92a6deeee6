"""Conversation rows out of finished spans: one extractor for the in-process exporter (SDK spans)
and the collector (OTLP spans), each reaching it through a small adapter (:class:`SpanView`).

A span gives rows two ways: its ``conversation.*`` span events (recorded by the tracker, or
derived in the agent by the conversation span processor and marked ``conversation.derived``), and,
for GenAI spans that did not pass that processor (an agent without it, sending OTLP to the
collector), the fallback derivation of :mod:`.derive`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from opentelemetry.exporter.conversation_analytics.derive import derive_rows
from opentelemetry.exporter.conversation_analytics.evaluations import (
    TraceConversations,
    evaluation_rows,
)
from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    row_from_attributes,
)
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.genai import ROLE_ATTRIBUTES, plain_attributes


@dataclass
class Extracted:
    """Rows from a batch, and what was rejected (by reason, and as spans or log records)."""

    rows: list[EventRow] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_items: int = 0
    #: Evaluation names that count as user feedback (see :mod:`.evaluations`).
    feedback_evaluations: frozenset[str] = frozenset(env.DEFAULT_FEEDBACK_EVALUATIONS)
    #: Recently seen traces, for evaluations that name neither conversation nor span context.
    traces: TraceConversations | None = None

    @property
    def message(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.rejected.items()))
        return f"conversation events rejected: {reasons}" if reasons else ""

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, Any],
        time_ns: int,
        *,
        service: str,
        trace_id: str,
        span_id: str,
        store_content: bool,
    ) -> bool:
        """Add one event if it is a conversation event or an evaluation result; False when it
        was rejected."""
        if name == semconv.EVALUATION_EVENT:
            return self.add_evaluation(
                attributes,
                time_ns,
                context={},
                service=service,
                trace_id=trace_id,
                span_id=span_id,
                store_content=store_content,
            )
        kind = semconv.event_type_of(name)
        if kind is None:
            return True
        # Inline rather than through _keep: this is the hot path, once per event, and a closure
        # plus a one-row list per event is measurable.
        try:
            row = row_from_attributes(
                kind,
                attributes,
                time_ns,
                service_name=service,
                trace_id=trace_id,
                span_id=span_id,
                store_content=store_content,
            )
        except RejectedEvent as exc:
            self.rejected[exc.reason] += 1
            return False
        self.rows.append(row)
        return True

    def add_log_record(
        self,
        event_name: str,
        attributes: Mapping[str, Any],
        time_ns: int,
        *,
        service: str,
        trace_id: str,
        span_id: str,
        store_content: bool,
    ) -> None:
        """One log record, from the SDK or OTLP: extracted when it is named (``event_name``, else
        its ``event.name`` attribute) as a conversation event or an evaluation result."""
        name = event_name or str(attributes.get(semconv.LOG_EVENT_NAME) or "")
        if not is_extracted_event(name):
            return
        ok = self.add_event(
            name,
            attributes,
            time_ns,
            service=service,
            trace_id=trace_id,
            span_id=span_id,
            store_content=store_content,
        )
        if not ok:
            self.rejected_items += 1

    def add_evaluation(
        self,
        attributes: Mapping[str, Any],
        time_ns: int,
        *,
        context: Mapping[str, Any],
        service: str,
        trace_id: str,
        span_id: str,
        store_content: bool,
    ) -> bool:
        """Add one ``gen_ai.evaluation.result``; ``context`` is its span's attributes (empty for
        a log record), completed from the trace when neither names the conversation."""
        if (
            semconv.CONVERSATION_ID not in attributes
            and semconv.CONVERSATION_ID not in context
            and self.traces is not None
        ):
            context = self.traces.context(trace_id)
        return self._keep(
            lambda: evaluation_rows(
                attributes,
                time_ns,
                context=context,
                feedback_names=self.feedback_evaluations,
                service=service,
                trace_id=trace_id,
                span_id=span_id,
                store_content=store_content,
            )
        )

    def _keep(self, make: Callable[[], list[EventRow]]) -> bool:
        """Add the rows ``make`` builds; count its :class:`RejectedEvent` by reason instead."""
        try:
            self.rows.extend(make())
        except RejectedEvent as exc:
            self.rejected[exc.reason] += 1
            return False
        return True

    @classmethod
    def configured(
        cls,
        feedback_evaluations: frozenset[str] | None = None,
        traces: TraceConversations | None = None,
    ) -> Extracted:
        """An empty batch with the caller's evaluation settings (``None``: the defaults)."""
        extracted = cls(traces=traces)
        if feedback_evaluations is not None:
            extracted.feedback_evaluations = feedback_evaluations
        return extracted


def is_extracted_event(name: str) -> bool:
    """Whether a span event or log record of this name can become rows."""
    return name.startswith(semconv.EVENT_PREFIX) or name == semconv.EVALUATION_EVENT


class SpanView(Protocol):
    """What extraction reads of one finished span, whatever its encoding."""

    name: str
    service: str
    start_ns: int
    end_ns: int
    has_parent: bool
    failed: bool

    def ids(self) -> tuple[str, str]:
        """(trace id, span id) in hex."""
        ...

    def may_have_role(self) -> bool:
        """A cheap pre-check: whether any attribute could give the span a GenAI role."""
        ...

    def attributes(self) -> Mapping[str, Any]: ...

    def conversation_events(self) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
        """(name, time, attributes) of the span's events that :func:`is_extracted_event`."""
        ...


def extract(
    spans: Iterable[SpanView],
    *,
    store_content: bool = False,
    feedback_evaluations: frozenset[str] | None = None,
    traces: TraceConversations | None = None,
) -> Extracted:
    """Rows for every conversation event of ``spans`` (explicit, derived in the agent, or
    derived here from spans that did not pass the conversation span processor) and every
    evaluation result on them."""
    extracted = Extracted.configured(feedback_evaluations, traces)
    rejected = extracted.rejected
    for span in spans:
        before = rejected.total()
        trace_id = span_id = ""
        if span.may_have_role():
            attributes = span.attributes()
            if semconv.PROCESSED not in attributes:
                trace_id, span_id = span.ids()
                derive_rows(
                    attributes,
                    name=span.name,
                    start_ns=span.start_ns,
                    end_ns=span.end_ns,
                    has_parent=span.has_parent,
                    failed=span.failed,
                    rows=extracted.rows,
                    rejected=rejected,
                    service=span.service,
                    trace_id=trace_id,
                    span_id=span_id,
                )
        for name, time_ns, attributes in span.conversation_events():
            if not trace_id:
                trace_id, span_id = span.ids()
            if name == semconv.EVALUATION_EVENT:
                extracted.add_evaluation(
                    attributes,
                    time_ns,
                    context=span.attributes(),
                    service=span.service,
                    trace_id=trace_id,
                    span_id=span_id,
                    store_content=store_content,
                )
                continue
            extracted.add_event(
                name,
                attributes,
                time_ns,
                service=span.service,
                trace_id=trace_id,
                span_id=span_id,
                store_content=store_content,
            )
        if rejected.total() != before:
            extracted.rejected_items += 1
    return extracted


class SdkSpanView:
    """A :class:`SpanView` of an SDK ``ReadableSpan`` (the in-process exporter's input)."""

    __slots__ = (
        "_attributes",
        "_span",
        "end_ns",
        "failed",
        "has_parent",
        "name",
        "service",
        "start_ns",
    )

    def __init__(self, span: ReadableSpan) -> None:
        self._span = span
        self._attributes: Mapping[str, Any] | None = None
        self.name = span.name
        resource = span.resource
        self.service = str(resource.attributes.get(semconv.SERVICE_NAME, "")) if resource else ""
        self.start_ns = span.start_time or 0
        self.end_ns = span.end_time or 0
        self.has_parent = span.parent is not None
        self.failed = span.status.status_code is StatusCode.ERROR

    def ids(self) -> tuple[str, str]:
        context = self._span.context
        if context is None:
            return "", ""
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    def may_have_role(self) -> bool:
        return not ROLE_ATTRIBUTES.isdisjoint(self.attributes())

    def attributes(self) -> Mapping[str, Any]:
        if self._attributes is None:
            self._attributes = plain_attributes(self._span.attributes)
        return self._attributes

    def conversation_events(self) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
        for event in self._span.events:
            name = event.name
            if is_extracted_event(name):
                yield name, event.timestamp, plain_attributes(event.attributes)


def rows_from_spans(
    spans: Iterable[ReadableSpan],
    *,
    store_content: bool = False,
    feedback_evaluations: frozenset[str] | None = None,
) -> tuple[list[EventRow], Counter[str]]:
    """Rows for the conversation events and evaluation results of finished SDK spans, and
    rejections by reason."""
    extracted = extract(
        map(SdkSpanView, spans),
        store_content=store_content,
        feedback_evaluations=feedback_evaluations,
    )
    return extracted.rows, extracted.rejected
