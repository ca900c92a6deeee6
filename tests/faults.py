"""Fault injection around the real store (the engine is real; only its availability is not)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, StoreError
from opentelemetry.exporter.conversation_analytics.store.base import Params


class FlakyStore(ConversationStore):
    """The real store, with writes failing while ``down`` (a fault, not a fake engine)."""

    def __init__(self, inner: ConversationStore) -> None:
        super().__init__(inner.schema)
        self.inner = inner
        self.down = True
        self.attempts = 0
        self.inserted = 0

    def execute(self, sql: str, params: Params | None = None) -> None:
        self.inner.execute(sql, params)

    def lines_of(self, path: str) -> AbstractContextManager[tuple[str, Params]]:
        return self.inner.lines_of(path)

    def insert_staged(self, stage: str, rows: Sequence[EventRow], line_numbers: list[int]) -> None:
        if self.down:
            raise StoreError("connection refused")
        self.inner.insert_staged(stage, rows, line_numbers)

    def select(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        if self.down:
            raise StoreError("connection refused")
        return self.inner.select(sql, params)

    def insert(self, rows: Sequence[EventRow]) -> None:
        self.attempts += 1
        if self.down:
            raise StoreError("connection refused")
        self.inner.insert(rows)
        self.inserted += len(rows)

    def close(self) -> None:
        """The inner store belongs to the fixture."""
