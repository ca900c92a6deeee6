"""OTLP requests (traces and logs, protobuf or JSON) to conversation rows.

Spans go through the in-process exporter's extractor (:func:`~..extract.extract`) by way of an
adapter, so both paths give exactly the same rows; log records whose event name is
``conversation.*`` (the Logs API is where OpenTelemetry is moving events) become rows through the
same :meth:`~..extract.Extracted.add_event`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from opentelemetry.exporter.conversation_analytics.evaluations import TraceConversations
from opentelemetry.exporter.conversation_analytics.extract import (
    Extracted,
    extract,
    is_extracted_event,
)
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.genai import ROLE_ATTRIBUTES

#: The attribute older Logs-API event emitters use for the event name.
_ID_KEYS: Final = frozenset({"traceId", "spanId", "parentSpanId"})


class Signal(Enum):
    """What an OTLP export carries."""

    TRACES = "traces"
    LOGS = "logs"


class MalformedRequest(ValueError):
    """The request body is not a valid OTLP message of the expected kind."""


_SCALARS: Final = frozenset({"string_value", "int_value", "double_value", "bool_value"})


class StructuredValue(str):
    """An array, map or bytes attribute kept as JSON text: never valid as an id or a number."""


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind in _SCALARS:
        return getattr(value, kind)
    if kind is None:
        return None
    # Arrays, maps and bytes are never valid for contract attributes: keep them as JSON text.
    return StructuredValue(json.dumps(json_format.MessageToDict(value), sort_keys=True)[:1024])


def attributes_of(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        # Strings first: nearly every conversation attribute is one (the hot path); then whole
        # numbers (turns, lengths), without _any_value's second WhichOneof.
        if kind == "string_value":
            out[pair.key] = value.string_value
        elif kind == "int_value":
            out[pair.key] = value.int_value
        else:
            out[pair.key] = _any_value(value)
    return out


def _service_name(resource_attributes: Iterable[KeyValue]) -> str:
    for pair in resource_attributes:
        if pair.key == semconv.SERVICE_NAME:
            return str(_any_value(pair.value) or "")
    return ""


class OtlpSpanView:
    """A :class:`~..extract.SpanView` of an OTLP span: attributes decoded only when needed."""

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

    def __init__(self, span: Span, service: str) -> None:
        self._span = span
        self._attributes: dict[str, Any] | None = None
        self.name = span.name
        self.service = service
        self.start_ns = span.start_time_unix_nano
        self.end_ns = span.end_time_unix_nano
        self.has_parent = bool(span.parent_span_id)
        self.failed = span.status.code == Status.STATUS_CODE_ERROR

    def ids(self) -> tuple[str, str]:
        return self._span.trace_id.hex(), self._span.span_id.hex()

    def may_have_role(self) -> bool:
        return any(pair.key in ROLE_ATTRIBUTES for pair in self._span.attributes)

    def attributes(self) -> Mapping[str, Any]:
        if self._attributes is None:
            self._attributes = attributes_of(self._span.attributes)
        return self._attributes

    def conversation_events(self) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
        for event in self._span.events:
            name = event.name
            if is_extracted_event(name):
                # 0 means unset in OTLP: fall back to the span's start, then arrival.
                time_ns = event.time_unix_nano or self.start_ns or time.time_ns()
                yield name, time_ns, attributes_of(event.attributes)


def _spans(request: ExportTraceServiceRequest) -> Iterator[OtlpSpanView]:
    for resource_spans in request.resource_spans:
        service = _service_name(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield OtlpSpanView(span, service)


def rows_from_traces(
    request: ExportTraceServiceRequest,
    store_content: bool = False,
    *,
    feedback_evaluations: frozenset[str] | None = None,
    traces: TraceConversations | None = None,
) -> Extracted:
    """Rows for the conversation events and evaluation results of an OTLP traces request (the
    exporter's extractor); ``traces`` learns each trace's conversation."""
    extracted = extract(
        _spans(request),
        store_content=store_content,
        feedback_evaluations=feedback_evaluations,
        traces=traces,
    )
    if traces is not None:
        traces.remember(extracted.rows)
    return extracted


def rows_from_logs(
    request: ExportLogsServiceRequest,
    store_content: bool = False,
    *,
    feedback_evaluations: frozenset[str] | None = None,
    traces: TraceConversations | None = None,
) -> Extracted:
    """Rows for log records named ``conversation.*`` or ``gen_ai.evaluation.result``; an
    evaluation without a conversation id takes its trace's, when ``traces`` has seen it."""
    extracted = Extracted.configured(feedback_evaluations, traces)
    for resource_logs in request.resource_logs:
        service = _service_name(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                extracted.add_log_record(
                    record.event_name,
                    attributes_of(record.attributes),
                    record.time_unix_nano or record.observed_time_unix_nano or time.time_ns(),
                    service=service,
                    trace_id=record.trace_id.hex(),
                    span_id=record.span_id.hex(),
                    store_content=store_content,
                )
    return extracted


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping expects base64."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                try:
                    out[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise MalformedRequest(f"{key} is not hex") from None
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def parse_request(
    body: bytes, message: ExportTraceServiceRequest | ExportLogsServiceRequest, *, is_json: bool
) -> None:
    """Fill ``message`` from an OTLP body; :class:`MalformedRequest` when it is not one."""
    try:
        if is_json:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise MalformedRequest("OTLP/JSON body must be an object")
            json_format.ParseDict(_hex_ids_to_base64(document), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except MalformedRequest:
        raise
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        kind = "JSON" if is_json else "protobuf"
        raise MalformedRequest(f"malformed OTLP {kind}: {str(exc)[:200]}") from None


def decode_request(
    signal: Signal,
    body: bytes,
    *,
    is_json: bool,
    store_content: bool = False,
    feedback_evaluations: frozenset[str] | None = None,
    traces: TraceConversations | None = None,
) -> Extracted:
    """The rows of one OTLP export body; :class:`MalformedRequest` when it is not one."""
    if signal is Signal.TRACES:
        trace_request = ExportTraceServiceRequest()
        parse_request(body, trace_request, is_json=is_json)
        return rows_from_traces(
            trace_request,
            store_content,
            feedback_evaluations=feedback_evaluations,
            traces=traces,
        )
    logs_request = ExportLogsServiceRequest()
    parse_request(body, logs_request, is_json=is_json)
    return rows_from_logs(
        logs_request, store_content, feedback_evaluations=feedback_evaluations, traces=traces
    )
