"""Hand-built conversations for the exit-context and conversations tests: every event placed
by hand at a known second, so what came last, each outcome and each score is worked out by
reading the test, not by re-running the product's rules."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from opentelemetry.exporter.conversation_analytics.collector.config import CollectorConfig
from opentelemetry.exporter.conversation_analytics.collector.run import start_collector
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Hours old whatever the clock says, so the default 7-day window holds every event.
BASE = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
E = ConversationEvent


@dataclass
class Events:
    """Rows with unique event ids, each at ``BASE + seconds``."""

    rows: list[EventRow] = field(default_factory=list)

    def add(
        self, cid: str, kind: E | str, seconds: float, agent: str = "bot", **fields: Any
    ) -> EventRow:
        moment = BASE + timedelta(seconds=seconds)
        value = kind.value if isinstance(kind, E) else kind
        row = EventRow(
            f"{cid}/{len(self.rows)}",
            value,
            cid,
            (moment - EPOCH) // timedelta(microseconds=1) * 1000,
            agent_name=agent,
            **fields,
        )
        self.rows.append(row)
        return row


def at(seconds: float) -> str:
    """The ISO 8601 time the store reports for an event at ``BASE + seconds``."""
    return (BASE + timedelta(seconds=seconds)).isoformat()


def collector_api(
    store: ConversationStore, store_url: str, tmp_path: Path, **extra: Any
) -> AbstractContextManager[str]:
    """A real collector serving the admin API over ``store`` (no receivers; no inference within
    a test's lifetime, so hand-built outcomes stay as built); a context manager yielding its
    base URL."""

    @contextmanager
    def running() -> Iterator[str]:
        config = CollectorConfig(
            store=store_url,
            grpc_endpoint="",
            http_endpoint="",
            metrics_endpoint="127.0.0.1:0",
            spool_dir=str(tmp_path / "spool"),
            idle_timeout=10.0**9,
            **extra,
        )
        collector = start_collector(config, store=store)
        try:
            yield f"http://127.0.0.1:{collector.ports['metrics']}"
        finally:
            collector.stop()

    return running()


def get_json(base_url: str, path: str, token: str | None = None) -> tuple[int, Any]:
    """``GET`` a JSON document: status and body, error statuses included."""
    request = urllib.request.Request(base_url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
