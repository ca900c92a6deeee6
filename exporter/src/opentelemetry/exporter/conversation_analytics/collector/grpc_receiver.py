"""OTLP/gRPC receiver (traces and logs) on the collector service.

Requests arrive as raw bytes and are decoded by the service, so a malformed message is the
service's ``INVALID_ARGUMENT`` (and a counted rejection), not an opaque transport error. gRPC
enforces the size cap on the decompressed message (``RESOURCE_EXHAUSTED``).
"""

from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from opentelemetry.exporter.conversation_analytics.collector.otlp import Signal
from opentelemetry.exporter.conversation_analytics.collector.service import (
    CollectorService,
    ExportResult,
    Status,
)

SOURCE = "otlp_grpc"
_SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
}


def _response(signal: Signal, result: ExportResult) -> Any:
    if signal is Signal.TRACES:
        partial = ExportTracePartialSuccess(
            rejected_spans=result.rejected_items, error_message=result.message
        )
        return ExportTraceServiceResponse(partial_success=partial if result.message else None)
    logs_partial = ExportLogsPartialSuccess(
        rejected_log_records=result.rejected_items, error_message=result.message
    )
    return ExportLogsServiceResponse(partial_success=logs_partial if result.message else None)


def _authorized(context: grpc.ServicerContext, token: str) -> bool:
    if not token:
        return True
    expected = f"Bearer {token}"
    for key, value in context.invocation_metadata():
        if key == "authorization" and hmac.compare_digest(str(value), expected):
            return True
    return False


def _handler(service: CollectorService, signal: Signal) -> grpc.RpcMethodHandler:
    def export(body: bytes, context: grpc.ServicerContext) -> Any:
        if not _authorized(context, service.config.auth_token):
            service.reject_request("unauthenticated")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        result = service.export(signal, body, is_json=False, source=SOURCE)
        if result.status is Status.INVALID:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, result.message)
        if result.status is Status.UNAVAILABLE:
            context.abort(grpc.StatusCode.UNAVAILABLE, result.message)
        return _response(signal, result)

    return grpc.unary_unary_rpc_method_handler(
        export,
        request_deserializer=None,  # raw bytes: the service decodes and judges them
        response_serializer=lambda message: message.SerializeToString(),
    )


def start_grpc_receiver(service: CollectorService, host: str, port: int) -> tuple[grpc.Server, int]:
    """Start serving; returns the server and the bound port (``port`` 0 picks a free one)."""
    config = service.config
    server = grpc.server(
        ThreadPoolExecutor(max_workers=config.max_concurrent_requests),
        maximum_concurrent_rpcs=config.max_concurrent_requests * 4,
        options=[
            ("grpc.max_receive_message_length", config.max_request_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
    )
    for signal, name in _SERVICES.items():
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(name, {"Export": _handler(service, signal)}),)
        )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if config.tls_cert_file:
        with open(config.tls_key_file, "rb") as key, open(config.tls_cert_file, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"cannot bind the OTLP/gRPC receiver to {address}")
    server.start()
    return server, bound
