"""A WSGI agent for the pre-fork tests: each request is one conversation, tracked and exported.

gunicorn imports this module in every worker (no ``--preload``), so each worker has its own
tracer provider and exporter, configured only by the environment as a user's would be.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from opentelemetry.exporter.conversation_analytics import ConversationAnalyticsExporter
from opentelemetry.instrumentation.conversation import ConversationEvent, ConversationTracker

#: How long the agent "thinks" per request, so that concurrent requests reach both workers.
WORK_SECONDS = 0.02

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(ConversationAnalyticsExporter()))
tracker = ConversationTracker(tracer_provider=provider, agent_name="prefork-agent")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/healthz``: 200. ``/chat?ID``: conversation ID starts and gets one user message."""
    if environ.get("PATH_INFO") == "/chat":
        cid = environ.get("QUERY_STRING") or "unnamed"
        tracker.record(cid, "user-1", ConversationEvent.STARTED, channel="web")
        tracker.record(cid, "user-1", ConversationEvent.USER_MESSAGE, turn=1)
        time.sleep(WORK_SECONDS)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
