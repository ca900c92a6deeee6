"""Collector settings: a flag, else its ``CONVERSATION_ANALYTICS_*`` variable, else the default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.store.url import (
    DEFAULT_STORE_URL,
    resolve_store_url,
)
from opentelemetry.instrumentation.conversation import environment_variables as env

DEFAULT_MAX_REQUEST_BYTES: Final = 20 * 1024 * 1024
DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024
MAX_DECODE_WORKERS: Final = 64
#: How a setting's type reads in an error message.
_KIND_WORDS: Final = {"int": "a whole number", "float": "a number", "str": "text"}


@dataclass
class CollectorConfig:
    """Everything the collector service needs; each field has an env var (see ``env_name``).

    ``default_text`` in a field's metadata is what ``--help`` shows for a default that is empty
    here but means something (the default store, "none").
    """

    store: str = field(default="", metadata={"default_text": DEFAULT_STORE_URL})
    grpc_endpoint: str = field(default="127.0.0.1:4317", metadata={"help": "'' disables"})
    http_endpoint: str = field(default="127.0.0.1:4318", metadata={"help": "'' disables"})
    metrics_endpoint: str = field(
        default="127.0.0.1:9464", metadata={"help": "/metrics, /healthz, /readyz, /api/v1"}
    )
    idle_timeout: float = field(
        default=env.DEFAULT_IDLE_TIMEOUT_SECONDS, metadata={"help": "seconds"}
    )
    inference_lookback: float = field(default=2 * 86_400.0, metadata={"help": "seconds"})
    auth_token: str = field(
        default="",
        metadata={"help": "bearer token required on requests", "default_text": "none"},
    )
    tls_cert_file: str = field(default="", metadata={"default_text": "plain text"})
    tls_key_file: str = field(default="", metadata={"default_text": "plain text"})
    max_request_bytes: int = field(
        default=DEFAULT_MAX_REQUEST_BYTES, metadata={"help": "cap after decompression"}
    )
    max_concurrent_requests: int = 8
    decode_workers: int = field(
        default=0,
        metadata={"help": "processes that decode OTLP requests (0: the collector's own)"},
    )
    spool_dir: str = field(
        default="",
        metadata={"default_text": "<chdb dir>-spool, else .conversation-analytics-spool"},
    )
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    store_content: bool = False
    feedback_evaluations: str = field(
        default=",".join(env.DEFAULT_FEEDBACK_EVALUATIONS),
        metadata={"help": "evaluation names counted as user feedback (comma-separated)"},
    )
    cors_origins: str = field(
        default="",
        metadata={
            "help": "browser origins allowed to POST /api/v1/feedback (comma-separated)",
            "default_text": "none (no CORS)",
        },
    )

    def __post_init__(self) -> None:
        self.store = resolve_store_url(self.store or None)
        if self.idle_timeout <= 0:
            raise ValueError("idle timeout must be positive")
        if self.max_request_bytes < 1024:
            raise ValueError("max request bytes must be at least 1024")
        if self.max_concurrent_requests < 1:
            raise ValueError("max concurrent requests must be at least 1")
        if not 0 <= self.decode_workers <= MAX_DECODE_WORKERS:
            raise ValueError(f"decode workers must be between 0 and {MAX_DECODE_WORKERS}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("TLS needs both a certificate and a key file")

    @property
    def allowed_origins(self) -> frozenset[str]:
        """Browser origins allowed to call ``POST /api/v1/feedback`` (``*``: any)."""
        return frozenset(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @staticmethod
    def env_name(name: str) -> str:
        """The variable of the field ``name``, as :mod:`environment_variables` defines it."""
        return env.variable(name)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> CollectorConfig:
        """Explicit values win, then the environment, then the defaults."""
        environ = os.environ if environ is None else environ
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for item in fields(cls):
            if overrides.get(item.name) is not None:
                values[item.name] = overrides[item.name]
                continue
            raw = environ.get(cls.env_name(item.name))
            if raw is None or (raw == "" and item.type != "str"):
                continue
            kind = item.type if isinstance(item.type, str) else item.type.__name__
            try:
                if kind == "bool":
                    values[item.name] = env.parse_bool(raw)
                elif kind == "int":
                    values[item.name] = int(raw)
                elif kind == "float":
                    values[item.name] = float(raw)
                else:
                    values[item.name] = raw
            except ValueError:
                accepted = env.BOOLEAN_VALUES if kind == "bool" else _KIND_WORDS[kind]
                raise ValueError(
                    f"{cls.env_name(item.name)} must be {accepted}, got {raw!r:.40}"
                ) from None
        return cls(**values)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) into its parts; ``ValueError`` when it is not one."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"endpoint must be HOST:PORT, got {endpoint!r:.80}")
    return host.strip("[]") or "127.0.0.1", int(port)
