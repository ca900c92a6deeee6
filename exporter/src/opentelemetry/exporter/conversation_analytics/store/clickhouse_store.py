"""A ClickHouse server (single node or cluster) through clickhouse-connect's HTTP client."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.rows import (
    ATTRIBUTES_INDEX,
    TIMESTAMP_INDEX,
    EventRow,
    row_values,
)
from opentelemetry.exporter.conversation_analytics.store.base import (
    ConversationStore,
    Params,
    StoreError,
    insert_token,
)
from opentelemetry.exporter.conversation_analytics.store.import_sql import STAGE_COLUMN_NAMES
from opentelemetry.exporter.conversation_analytics.store.sql import (
    EVENT_COLUMN_NAMES,
    EVENTS_INSERT_SETTINGS,
    Schema,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: clickhouse-connect's logger. On a failed connection it logs a bare "Unexpected Http Driver
#: Exception" warning and then raises; the error raised here says what happened, once.
_DRIVER_LOGGER: Final = "clickhouse_connect"
#: Lines per insert when a file's lines travel to the server for an import.
_LINES_PER_INSERT: Final = 100_000


class _QuietDriver:
    """Hides the driver's warnings while connecting; nested and concurrent connections share
    one raised level, restored when the last of them is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved_level = logging.NOTSET

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        logger = logging.getLogger(_DRIVER_LOGGER)
        with self._lock:
            if self._users == 0:
                self._saved_level = logger.level
                logger.setLevel(logging.ERROR)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    logger.setLevel(self._saved_level)


_quiet_driver = _QuietDriver()


def _reason(exc: BaseException) -> str:
    """The innermost OS error's text ("Connection refused") rather than the driver's retry and
    pool wrappers around it; the exception's own text when there is none (e.g. bad password)."""
    found: BaseException | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found = current
        current = current.__cause__ or current.__context__
    if isinstance(found, OSError) and found.strerror:
        return found.strerror
    return (str(found or exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _row_values(row: EventRow) -> list[Any]:
    values = row_values(row)
    values[TIMESTAMP_INDEX] = _EPOCH + timedelta(microseconds=row.timestamp_ns // 1000)
    values[ATTRIBUTES_INDEX] = row.attributes or {}
    return values


class ClickHouseStore(ConversationStore):
    """Server deployments: the same schema and queries as the embedded store."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str = "default",
        password: str = "",
        secure: bool = False,
        schema: Schema | None = None,
    ) -> None:
        super().__init__(schema or Schema())
        import clickhouse_connect  # deferred: only server deployments pay for the import

        try:
            with _quiet_driver():
                self._client = clickhouse_connect.get_client(
                    host=host,
                    port=port,
                    username=username,
                    password=password,
                    secure=secure,
                    autogenerate_session_id=False,
                )
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {host}:{port}: {_reason(exc)}") from exc
        self._lock = threading.Lock()

    def execute(self, sql: str, params: Params | None = None) -> None:
        with self._lock:
            try:
                self._client.command(sql, parameters=dict(params) if params else None)
            except Exception as exc:
                raise StoreError(str(exc)) from exc

    def select(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        with self._lock:
            try:
                result = self._client.query(sql, parameters=dict(params or {}))
            except Exception as exc:
                raise StoreError(str(exc)) from exc
        return list(result.named_results())

    def insert(self, rows: Sequence[EventRow]) -> None:
        if not rows:
            return
        table = self.schema.events.replace("`", "").split(".", 1)
        with self._lock:
            try:
                self._client.insert(
                    table[1],
                    [_row_values(row) for row in rows],
                    column_names=list(EVENT_COLUMN_NAMES),
                    database=table[0],
                    settings={
                        "insert_deduplication_token": insert_token(rows),
                        "deduplicate_blocks_in_dependent_materialized_views": 1,
                        **EVENTS_INSERT_SETTINGS,
                    },
                )
            except Exception as exc:
                raise StoreError(str(exc)) from exc

    @contextmanager
    def lines_of(self, path: str) -> Iterator[tuple[str, Params]]:
        """The server cannot read the client's file: its lines travel into a temporary table
        (bytes as they are, numbered here), dropped when the context ends."""
        table = f"import_lines_{uuid.uuid4().hex}"
        database = self.schema.database
        self.execute(
            f"CREATE TABLE `{database}`.`{table}` (line_no UInt64, line String) ENGINE = Memory"
        )
        try:
            with open(path, "rb") as stream:
                batch: list[list[Any]] = []
                for number, line in enumerate(stream, start=1):
                    batch.append([number, line.removesuffix(b"\n")])
                    if len(batch) >= _LINES_PER_INSERT:
                        self._insert(table, batch, ["line_no", "line"])
                        batch = []
                self._insert(table, batch, ["line_no", "line"])
            yield f"SELECT line_no, line FROM `{database}`.`{table}`", {}
        finally:
            self.execute(f"DROP TABLE IF EXISTS `{database}`.`{table}`")

    def insert_staged(self, stage: str, rows: Sequence[EventRow], line_numbers: list[int]) -> None:
        values = [[n, True, *_row_values(row)] for n, row in zip(line_numbers, rows, strict=True)]
        self._insert(
            stage.split(".", 1)[1].strip("`"),
            values,
            list(STAGE_COLUMN_NAMES) + list(EVENT_COLUMN_NAMES),
        )

    def _insert(self, table: str, values: list[list[Any]], names: list[str]) -> None:
        if not values:
            return
        with self._lock:
            try:
                self._client.insert(
                    table, values, column_names=names, database=self.schema.database
                )
            except Exception as exc:
                raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()
