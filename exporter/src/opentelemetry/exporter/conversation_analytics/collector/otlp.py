"""OTLP requests (traces and logs, protobuf or JSON) to conversation rows.

Span events named ``conversation.*`` and log records whose event name is ``conversation.*`` (the
Logs API is where OpenTelemetry is moving events) both become rows through the same
:func:`~..rows.row_from_attributes` the in-process exporter uses.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from opentelemetry.exporter.conversation_analytics.derive import derive_rows
from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    row_from_attributes,
)
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.genai import ROLE_ATTRIBUTES

#: The attribute older Logs-API event emitters use for the event name.
EVENT_NAME_ATTRIBUTE: Final = "event.name"
_ID_KEYS: Final = frozenset({"traceId", "spanId", "parentSpanId"})


class MalformedRequest(ValueError):
    """The request body is not a valid OTLP message of the expected kind."""


@dataclass
class Extracted:
    """Rows from one request, and what was rejected (by reason, and as OTLP items)."""

    rows: list[EventRow] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_items: int = 0

    @property
    def message(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.rejected.items()))
        return f"conversation events rejected: {reasons}" if reasons else ""


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
    out = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        # Strings first: nearly every conversation attribute is one (the hot path).
        out[pair.key] = value.string_value if kind == "string_value" else _any_value(value)
    return out


def _service_name(resource_attributes: Iterable[KeyValue]) -> str:
    for pair in resource_attributes:
        if pair.key == semconv.SERVICE_NAME:
            return str(_any_value(pair.value) or "")
    return ""


def _add(
    extracted: Extracted,
    name: str,
    attributes: dict[str, Any],
    time_ns: int,
    *,
    service: str,
    trace_id: str,
    span_id: str,
    store_content: bool,
) -> bool:
    """Add one event if it is a conversation event; False when it was rejected."""
    kind = semconv.event_type_of(name)
    if kind is None:
        return True
    try:
        extracted.rows.append(
            row_from_attributes(
                kind,
                attributes,
                time_ns,
                service_name=service,
                trace_id=trace_id,
                span_id=span_id,
                store_content=store_content,
            )
        )
    except RejectedEvent as exc:
        extracted.rejected[exc.reason] += 1
        return False
    return True


def _derive(extracted: Extracted, span: Span, service: str) -> bool:
    """Add the events a GenAI span implies; False when one was rejected."""
    if not any(pair.key in ROLE_ATTRIBUTES for pair in span.attributes):
        return True
    before = sum(extracted.rejected.values())
    derive_rows(
        attributes_of(span.attributes),
        name=span.name,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        has_parent=bool(span.parent_span_id),
        failed=span.status.code == Status.STATUS_CODE_ERROR,
        rows=extracted.rows,
        rejected=extracted.rejected,
        service=service,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
    )
    return sum(extracted.rejected.values()) == before


def rows_from_traces(request: ExportTraceServiceRequest, store_content: bool = False) -> Extracted:
    extracted = Extracted()
    for resource_spans in request.resource_spans:
        service = _service_name(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                ok = _derive(extracted, span, service)
                trace_id = span_id = ""
                for event in span.events:
                    name = event.name
                    if not name.startswith(semconv.EVENT_PREFIX):
                        continue
                    if not trace_id:
                        trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
                    ok &= _add(
                        extracted,
                        name,
                        attributes_of(event.attributes),
                        # 0 means unset in OTLP: fall back to the span's start, then arrival.
                        event.time_unix_nano or span.start_time_unix_nano or time.time_ns(),
                        service=service,
                        trace_id=trace_id,
                        span_id=span_id,
                        store_content=store_content,
                    )
                if not ok:
                    extracted.rejected_items += 1
    return extracted


def rows_from_logs(request: ExportLogsServiceRequest, store_content: bool = False) -> Extracted:
    extracted = Extracted()
    for resource_logs in request.resource_logs:
        service = _service_name(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = attributes_of(record.attributes)
                name = record.event_name or str(attributes.get(EVENT_NAME_ATTRIBUTE) or "")
                if not name.startswith(semconv.EVENT_PREFIX):
                    continue
                ok = _add(
                    extracted,
                    name,
                    attributes,
                    record.time_unix_nano or record.observed_time_unix_nano or time.time_ns(),
                    service=service,
                    trace_id=record.trace_id.hex(),
                    span_id=record.span_id.hex(),
                    store_content=store_content,
                )
                if not ok:
                    extracted.rejected_items += 1
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
