"""OTLP/HTTP receiver (``/v1/traces``, ``/v1/logs``; protobuf or JSON; gzip) and the admin server
(``/metrics``, ``/healthz``, ``/readyz``, ``/api/v1/report``, ``/api/v1/compare``,
``/api/v1/conversations``, ``/api/v1/conversation``, ``POST /api/v1/feedback``).
"""

from __future__ import annotations

import hmac
import json
import ssl
import threading
import zlib
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs, urlsplit

from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from opentelemetry.exporter.conversation_analytics.analytics import (
    CONVERSATION_ORDERS,
    DEFAULT_CONVERSATIONS_LIMIT,
    DEFAULT_DAYS,
    MAX_CONVERSATIONS_LIMIT,
)
from opentelemetry.exporter.conversation_analytics.collector.grpc_receiver import _response
from opentelemetry.exporter.conversation_analytics.collector.otlp import Signal
from opentelemetry.exporter.conversation_analytics.collector.service import (
    RETRY_AFTER_SECONDS,
    CollectorService,
    Status,
)
from opentelemetry.exporter.conversation_analytics.store import (
    UnknownConversation,
    check_dimension,
    check_order,
    check_outcome,
    parse_count,
    parse_days,
    parse_flag,
)
from opentelemetry.exporter.conversation_analytics.store.base import MAX_MIN_TURNS

SOURCE: Final = "otlp_http"
PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
_PATHS: Final = {"/v1/traces": Signal.TRACES, "/v1/logs": Signal.LOGS}
FEEDBACK_PATH: Final = "/api/v1/feedback"
#: Largest feedback body accepted (after decompression): a rating is a few hundred bytes.
MAX_FEEDBACK_BYTES: Final = 64 * 1024
#: ``--cors-origins`` value allowing every origin (the bearer token still guards the endpoint).
ALL_ORIGINS: Final = "*"
CORS_MAX_AGE_SECONDS: Final = 600


class TooLarge(Exception):
    """The body is (or decompresses to) more than the cap."""


def _read_body(handler: BaseHTTPRequestHandler, cap: int) -> bytes:
    length_header = handler.headers.get("Content-Length")
    if length_header is None or not length_header.isdigit():
        raise ValueError("Content-Length is required")
    length = int(length_header)
    if length > cap:
        raise TooLarge
    body = handler.rfile.read(length)
    encoding = (handler.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise ValueError(f"unsupported Content-Encoding {encoding!r:.40}")
    inflater = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)  # 47: gzip or zlib
    try:
        data = inflater.decompress(body, cap + 1)
    except zlib.error as exc:
        raise ValueError(f"bad {encoding} body: {exc}") from None
    if len(data) > cap or inflater.unconsumed_tail:
        raise TooLarge  # a decompression bomb stops at the cap, not at memory's end
    if not inflater.eof:
        raise ValueError(f"truncated {encoding} body")
    return data


class _Handler(BaseHTTPRequestHandler):
    """Shared by both servers: auth, replies, quiet logs."""

    service: ClassVar[CollectorService]
    protocol_version = "HTTP/1.1"
    server_version = "conversation-analytics"

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs would be one line per export: keep them out of the service's output."""

    def _authorized(self) -> bool:
        token = self.service.config.auth_token
        if not token:
            return True
        return hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}")

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**self._cors_headers(), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(document, ensure_ascii=False, default=str).encode()
        self._reply(status, data, JSON, headers)

    def _cors_headers(self) -> dict[str, str]:
        """CORS headers for a browser origin the operator allowed (none otherwise)."""
        return {}


class OtlpHandler(_Handler):
    def _status(self, status: HTTPStatus, message: str, is_json: bool, **headers: str) -> None:
        # OTLP/HTTP errors carry a google.rpc.Status; its JSON form is {"code", "message"}.
        code = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}.get(status.value, 2)
        if is_json:
            self._json(status.value, {"code": code, "message": message}, headers)
        else:
            from google.rpc import status_pb2  # shipped with protobuf's common protos

            body = status_pb2.Status(code=code, message=message).SerializeToString()
            self._reply(status.value, body, PROTOBUF, headers)

    def do_POST(self) -> None:
        service = self.service
        signal = _PATHS.get(urlsplit(self.path).path)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        is_json = content_type == JSON
        if signal is None:
            self._status(HTTPStatus.NOT_FOUND, "unknown path", is_json)
            return
        if not self._authorized():
            service.reject_request("unauthenticated")
            self._status(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token", is_json)
            return
        if content_type not in (PROTOBUF, JSON):
            service.reject_request("unsupported_media_type")
            self._status(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "use protobuf or JSON", is_json)
            return
        slots = self.server.slots  # type: ignore[attr-defined]
        if not slots.acquire(blocking=False):
            service.reject_request("overloaded")
            self._status(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too many concurrent requests",
                is_json,
                **{"Retry-After": "1"},
            )
            return
        try:
            self._export(signal, is_json)
        finally:
            slots.release()

    def _export(self, signal: Signal, is_json: bool) -> None:
        service = self.service
        try:
            body = _read_body(self, service.config.max_request_bytes)
        except TooLarge:
            service.reject_request("too_large")
            self.close_connection = True
            self._status(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large", is_json)
            return
        except ValueError as exc:
            service.reject_request("malformed")
            self.close_connection = True
            self._status(HTTPStatus.BAD_REQUEST, str(exc), is_json)
            return
        result = service.export(signal, body, is_json=is_json, source=SOURCE)
        if result.status is Status.INVALID:
            self._status(HTTPStatus.BAD_REQUEST, result.message, is_json)
        elif result.status is Status.UNAVAILABLE:
            self._status(
                HTTPStatus.SERVICE_UNAVAILABLE,
                result.message,
                is_json,
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        else:
            response = _response(signal, result)
            if is_json:
                self._json(200, json_format.MessageToDict(response))
            else:
                self._reply(200, response.SerializeToString(), PROTOBUF)


class AdminHandler(_Handler):
    def _cors_headers(self) -> dict[str, str]:
        """Only the feedback endpoint is for browsers, and only for the configured origins."""
        origin = self.headers.get("Origin")
        if not origin or urlsplit(self.path).path != FEEDBACK_PATH:
            return {}
        allowed = self.service.config.allowed_origins
        if origin not in allowed and ALL_ORIGINS not in allowed:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def do_OPTIONS(self) -> None:
        """A browser's preflight for ``POST /api/v1/feedback`` (it carries no credentials)."""
        if urlsplit(self.path).path != FEEDBACK_PATH:
            self._json(404, {"error": "not found"})
            return
        if not self._cors_headers():
            self._json(403, {"error": "origin not allowed (see --cors-origins)"})
            return
        self._reply(
            204,
            b"",
            JSON,
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": str(CORS_MAX_AGE_SECONDS),
            },
        )

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        route: Callable[[dict[str, str]], None] | None = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/api/v1/report": self._report,
            "/api/v1/compare": self._compare,
            "/api/v1/conversations": self._conversations,
            "/api/v1/conversation": self._conversation,
        }.get(parts.path)
        if route is None:
            self._json(404, {"error": "not found"})
            return
        if parts.path.startswith("/api/") and not self._authorized():
            self._json(401, {"error": "missing or wrong bearer token"})
            return
        try:
            route(query)
        except UnknownConversation as exc:
            self._json(404, {"error": str(exc)})
        except ValueError as exc:
            self._json(400, {"error": str(exc)})
        except Exception as exc:
            self._json(503, {"error": f"store unavailable: {str(exc)[:200]}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != FEEDBACK_PATH:
            self._json(404, {"error": "not found"})
            return
        if not self._authorized():
            self._json(401, {"error": "missing or wrong bearer token"})
            return
        cap = min(MAX_FEEDBACK_BYTES, self.service.config.max_request_bytes)
        try:
            body = json.loads(_read_body(self, cap))
            self._json(202, self.service.feedback(body))
        except TooLarge:
            self._json(413, {"error": f"body larger than {cap} bytes"}, {"Connection": "close"})
            self.close_connection = True
        except UnknownConversation as exc:
            self._json(404, {"error": str(exc)})
        except ValueError as exc:  # includes a body that is not JSON
            self._json(400, {"error": f"bad feedback: {str(exc)[:300]}"})
        except Exception as exc:
            self._json(
                503,
                {"error": f"store unavailable: {str(exc)[:200]}"},
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    def _metrics(self, _query: dict[str, str]) -> None:
        self._reply(200, generate_latest(self.service.metrics.registry), CONTENT_TYPE_LATEST)

    def _healthz(self, _query: dict[str, str]) -> None:
        self._json(200, {"status": "ok"})

    def _readyz(self, _query: dict[str, str]) -> None:
        ready, detail = self.service.ready()
        self._json(200 if ready else 503, {"ready": ready, "detail": detail})

    def _report(self, query: dict[str, str]) -> None:
        days = parse_days(query.get("days", str(DEFAULT_DAYS)), "days")
        self._json(200, self.service.report(days, query.get("agent", "")))

    def _compare(self, query: dict[str, str]) -> None:
        """``?by=`` (required), ``days``, ``agent``, ``baseline`` (absent: the largest group),
        checked as the CLI checks ``--by`` and ``--days``."""
        by = check_dimension(query.get("by"), "by")
        days = parse_days(query.get("days", str(DEFAULT_DAYS)), "days")
        document = self.service.compare(by, days, query.get("baseline"), query.get("agent", ""))
        self._json(200, document)

    def _conversations(self, query: dict[str, str]) -> None:
        """``days``, ``agent``, ``outcome``, ``rephrased`` (true/false), ``min_turns``,
        ``order``, ``limit``: checked by the functions behind the CLI's flags, so a bad value
        is a 400 in the words the CLI exits 2 with (the parameter named as here)."""
        document = self.service.conversations(
            parse_days(query.get("days", str(DEFAULT_DAYS)), "days"),
            agent=query.get("agent", ""),
            outcome=check_outcome(query.get("outcome"), "outcome"),
            rephrased=parse_flag(query.get("rephrased", ""), "rephrased"),
            min_turns=parse_count(query.get("min_turns", "0"), "min_turns", 0, MAX_MIN_TURNS),
            order=check_order(query.get("order", CONVERSATION_ORDERS[0]), "order"),
            limit=parse_count(
                query.get("limit", str(DEFAULT_CONVERSATIONS_LIMIT)),
                "limit",
                1,
                MAX_CONVERSATIONS_LIMIT,
            ),
        )
        self._json(200, document)

    def _conversation(self, query: dict[str, str]) -> None:
        if not query.get("id"):
            raise ValueError("id is required")
        self._json(200, self.service.conversation(query["id"]))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def start_http_server(
    service: CollectorService, host: str, port: int, handler: type[_Handler]
) -> tuple[ThreadingHTTPServer, int]:
    """Serve ``handler`` in a thread; returns the server and its bound port."""
    bound_handler = type(handler.__name__, (handler,), {"service": service})
    server = _Server((host, port), bound_handler)
    server.slots = threading.BoundedSemaphore(  # type: ignore[attr-defined]
        service.config.max_concurrent_requests
    )
    config = service.config
    if config.tls_cert_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name=handler.__name__, daemon=True)
    thread.start()
    return server, int(server.server_address[1])
