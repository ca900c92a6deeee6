"""Every ``CONVERSATION_ANALYTICS_*`` environment variable, its default, and how to read it.

The one place such a name is spelled (as ``opentelemetry.sdk.environment_variables`` is for
``OTEL_*``): the agent, the exporter, the collector and the CLI import their names from here, the
README's configuration tables are checked against :data:`VARIABLES`, and :func:`parse_bool` is
the only reading of a boolean, so ``STORE_CONTENT=enabled`` means one thing everywhere.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Final

from opentelemetry.instrumentation.conversation import semconv

_logger = logging.getLogger(__name__)

_PREFIX: Final = "CONVERSATION_ANALYTICS_"

# The agent (tracker, span processor, instrumentor).
CONVERSATION_ANALYTICS_AGENT_NAME: Final = "CONVERSATION_ANALYTICS_AGENT_NAME"
CONVERSATION_ANALYTICS_USER_ID_KEY: Final = "CONVERSATION_ANALYTICS_USER_ID_KEY"
CONVERSATION_ANALYTICS_PSEUDONYMIZE_USER_ID: Final = "CONVERSATION_ANALYTICS_PSEUDONYMIZE_USER_ID"
CONVERSATION_ANALYTICS_DETECT_REPHRASES: Final = "CONVERSATION_ANALYTICS_DETECT_REPHRASES"
CONVERSATION_ANALYTICS_BAGGAGE_KEY: Final = "CONVERSATION_ANALYTICS_BAGGAGE_KEY"
# The store, read by the exporter, the collector and the CLI.
CONVERSATION_ANALYTICS_STORE: Final = "CONVERSATION_ANALYTICS_STORE"
CONVERSATION_ANALYTICS_TTL_DAYS: Final = "CONVERSATION_ANALYTICS_TTL_DAYS"
CONVERSATION_ANALYTICS_STORE_CONTENT: Final = "CONVERSATION_ANALYTICS_STORE_CONTENT"
CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS: Final = "CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS"
CONVERSATION_ANALYTICS_IDLE_TIMEOUT: Final = "CONVERSATION_ANALYTICS_IDLE_TIMEOUT"
# The in-process exporter.
CONVERSATION_ANALYTICS_METRICS_PORT: Final = "CONVERSATION_ANALYTICS_METRICS_PORT"
CONVERSATION_ANALYTICS_METRICS_HOST: Final = "CONVERSATION_ANALYTICS_METRICS_HOST"
CONVERSATION_ANALYTICS_MAX_LABEL_VALUES: Final = "CONVERSATION_ANALYTICS_MAX_LABEL_VALUES"
CONVERSATION_ANALYTICS_INFER_ABANDONMENT: Final = "CONVERSATION_ANALYTICS_INFER_ABANDONMENT"
# The collector service.
CONVERSATION_ANALYTICS_GRPC_ENDPOINT: Final = "CONVERSATION_ANALYTICS_GRPC_ENDPOINT"
CONVERSATION_ANALYTICS_HTTP_ENDPOINT: Final = "CONVERSATION_ANALYTICS_HTTP_ENDPOINT"
CONVERSATION_ANALYTICS_METRICS_ENDPOINT: Final = "CONVERSATION_ANALYTICS_METRICS_ENDPOINT"
CONVERSATION_ANALYTICS_INFERENCE_LOOKBACK: Final = "CONVERSATION_ANALYTICS_INFERENCE_LOOKBACK"
CONVERSATION_ANALYTICS_AUTH_TOKEN: Final = "CONVERSATION_ANALYTICS_AUTH_TOKEN"  # noqa: S105
CONVERSATION_ANALYTICS_TLS_CERT_FILE: Final = "CONVERSATION_ANALYTICS_TLS_CERT_FILE"
CONVERSATION_ANALYTICS_TLS_KEY_FILE: Final = "CONVERSATION_ANALYTICS_TLS_KEY_FILE"
CONVERSATION_ANALYTICS_MAX_REQUEST_BYTES: Final = "CONVERSATION_ANALYTICS_MAX_REQUEST_BYTES"
CONVERSATION_ANALYTICS_MAX_CONCURRENT_REQUESTS: Final = (
    "CONVERSATION_ANALYTICS_MAX_CONCURRENT_REQUESTS"
)
CONVERSATION_ANALYTICS_DECODE_WORKERS: Final = "CONVERSATION_ANALYTICS_DECODE_WORKERS"
CONVERSATION_ANALYTICS_SPOOL_DIR: Final = "CONVERSATION_ANALYTICS_SPOOL_DIR"
CONVERSATION_ANALYTICS_SPOOL_MAX_BYTES: Final = "CONVERSATION_ANALYTICS_SPOOL_MAX_BYTES"
CONVERSATION_ANALYTICS_CORS_ORIGINS: Final = "CONVERSATION_ANALYTICS_CORS_ORIGINS"
# The CLI reading through a collector.
CONVERSATION_ANALYTICS_COLLECTOR_URL: Final = "CONVERSATION_ANALYTICS_COLLECTOR_URL"

#: OpenTelemetry's own switch for GenAI message capture (read, never defined, by us).
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: Final = (
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
)

#: client_python's switch for multiprocess mode (pre-fork servers): read, never defined, by us.
PROMETHEUS_MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"

DEFAULT_STORE_URL: Final = "chdb://.conversation-analytics"
DEFAULT_FEEDBACK_EVALUATIONS: Final = ("user_feedback",)
DEFAULT_IDLE_TIMEOUT_SECONDS: Final = 1800.0
DEFAULT_METRICS_HOST: Final = "127.0.0.1"
DEFAULT_MAX_LABEL_VALUES: Final = 50


@dataclass(frozen=True)
class Variable:
    """One environment variable and the default its README rows state."""

    name: str
    default: str


#: Every variable, in the order of the README's tables. ``default`` is the README's wording.
VARIABLES: Final[tuple[Variable, ...]] = (
    Variable(CONVERSATION_ANALYTICS_STORE, f"`{DEFAULT_STORE_URL}`"),
    Variable(CONVERSATION_ANALYTICS_TTL_DAYS, "0"),
    Variable(CONVERSATION_ANALYTICS_METRICS_PORT, "off (demo: 9464)"),
    Variable(CONVERSATION_ANALYTICS_METRICS_HOST, f"`{DEFAULT_METRICS_HOST}`"),
    Variable(CONVERSATION_ANALYTICS_MAX_LABEL_VALUES, str(DEFAULT_MAX_LABEL_VALUES)),
    Variable(CONVERSATION_ANALYTICS_USER_ID_KEY, "a public default key (logged as a warning)"),
    Variable(CONVERSATION_ANALYTICS_PSEUDONYMIZE_USER_ID, "hashed"),
    Variable(CONVERSATION_ANALYTICS_AGENT_NAME, "the resource's `service.name`"),
    Variable(CONVERSATION_ANALYTICS_DETECT_REPHRASES, "off"),
    Variable(CONVERSATION_ANALYTICS_STORE_CONTENT, "off"),
    Variable(CONVERSATION_ANALYTICS_INFER_ABANDONMENT, "off"),
    Variable(CONVERSATION_ANALYTICS_IDLE_TIMEOUT, "1800 s"),
    Variable(CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS, f"`{DEFAULT_FEEDBACK_EVALUATIONS[0]}`"),
    Variable(CONVERSATION_ANALYTICS_BAGGAGE_KEY, f"`{semconv.DEFAULT_BAGGAGE_KEY}`"),
    Variable(CONVERSATION_ANALYTICS_GRPC_ENDPOINT, "`127.0.0.1:4317`"),
    Variable(CONVERSATION_ANALYTICS_HTTP_ENDPOINT, "`127.0.0.1:4318`"),
    Variable(CONVERSATION_ANALYTICS_METRICS_ENDPOINT, "`127.0.0.1:9464`"),
    Variable(CONVERSATION_ANALYTICS_INFERENCE_LOOKBACK, "172800"),
    Variable(CONVERSATION_ANALYTICS_AUTH_TOKEN, "none"),
    Variable(CONVERSATION_ANALYTICS_TLS_CERT_FILE, "plain text"),
    Variable(CONVERSATION_ANALYTICS_TLS_KEY_FILE, "plain text"),
    Variable(CONVERSATION_ANALYTICS_MAX_REQUEST_BYTES, "20971520"),
    Variable(CONVERSATION_ANALYTICS_MAX_CONCURRENT_REQUESTS, "8"),
    Variable(CONVERSATION_ANALYTICS_DECODE_WORKERS, "0"),
    Variable(
        CONVERSATION_ANALYTICS_SPOOL_DIR,
        "`<chdb dir>-spool`, else `.conversation-analytics-spool`",
    ),
    Variable(CONVERSATION_ANALYTICS_SPOOL_MAX_BYTES, "268435456"),
    Variable(CONVERSATION_ANALYTICS_CORS_ORIGINS, "none (no CORS)"),
    Variable(
        CONVERSATION_ANALYTICS_COLLECTOR_URL,
        "the collector that owns an embedded store, else the store",
    ),
)

_TRUE: Final = frozenset({"1", "true", "yes", "on", "enabled"})
_FALSE: Final = frozenset({"0", "false", "no", "off", "disabled"})
#: What :func:`parse_bool` accepts, for error messages.
BOOLEAN_VALUES: Final = "true/false, 1/0, yes/no, on/off, enabled/disabled"


def variable(name: str) -> str:
    """The full name of the variable ``name`` (``"store"`` or ``"STORE"``); ``KeyError`` if none."""
    full = name if name.startswith(_PREFIX) else _PREFIX + name.upper()
    if full not in _NAMES:
        raise KeyError(name)
    return full


def parse_bool(raw: str) -> bool:
    """The one reading of a boolean setting; ``ValueError`` (naming what is accepted) otherwise."""
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected one of {BOOLEAN_VALUES}, got {raw!r:.40}")


_warned: set[str] = set()


def env_flag(name: str, default: bool) -> bool:
    """A boolean variable for code inside the agent: an unset or empty one is ``default``; a
    value :func:`parse_bool` rejects is logged once and read as ``default``, never raised."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return parse_bool(raw)
    except ValueError as error:
        if name not in _warned:
            _warned.add(name)
            _logger.warning("%s: %s; using %s", name, error, "true" if default else "false")
        return default


def env_str(name: str, default: str = "") -> str:
    """A text variable; unset or empty reads as ``default``."""
    return os.environ.get(name) or default


_NAMES: Final = frozenset(item.name for item in VARIABLES)
