"""The embedded store: ClickHouse's engine in-process through chDB, on a local directory."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.rows import (
    ATTRIBUTES_INDEX,
    TIMESTAMP_INDEX,
    EventRow,
    row_columns,
)
from opentelemetry.exporter.conversation_analytics.store.base import (
    ConversationStore,
    Params,
    StoreError,
    StoreInUse,
    insert_token,
)
from opentelemetry.exporter.conversation_analytics.store.import_sql import STAGE_COLUMN_NAMES
from opentelemetry.exporter.conversation_analytics.store.sql import (
    EVENT_COLUMN_NAMES,
    EVENTS_INSERT_SETTINGS,
    Schema,
    settings_clause,
)

#: The file chDB's embedded server holds an exclusive ``flock`` on while it owns a directory
#: (removed on close).
_STATUS_FILE: Final = "status"


def _check_not_in_use(path: str) -> None:
    """Raise :class:`StoreInUse` when another process holds the directory's lock.

    Asked before chDB is: its own refusal is two engine errors (``Cannot lock file``, ``Error
    initializing EmbeddedServer``), one of them written straight to the terminal by native code.
    The probe takes the lock for an instant only when it is free, and creates no file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: let chDB decide
        return
    try:
        fd = os.open(os.path.join(path, _STATUS_FILE), os.O_RDONLY)
    except OSError:
        return  # no status file: no server owns the directory
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StoreInUse(
            f"the embedded store at {path} is in use by another process: chDB lets one "
            "process open a store directory at a time (stop it, or use a ClickHouse server)"
        ) from None
    except OSError:
        return  # cannot tell (e.g. no flock on this file system): let chDB decide
    finally:
        os.close(fd)  # also releases the probe's lock


# chDB runs one embedded server per process, on one directory at a time: stores on the same
# directory share it, and it is closed when the last of them closes.
_lock = threading.RLock()
_open: dict[str, tuple[Any, int]] = {}


def _acquire(path: str) -> Any:
    with _lock:
        if path in _open:
            session, users = _open[path]
            _open[path] = (session, users + 1)
            return session
        if _open:
            other = next(iter(_open))
            raise StoreError(
                f"chDB serves one store directory per process and {other} is open; "
                f"close it before opening {path}"
            )
        try:
            from chdb import session as chdb_session
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError(
                "the embedded store needs chdb: pip install "
                "'opentelemetry-exporter-conversation-analytics[embedded]'"
            ) from exc
        _check_not_in_use(path)
        os.makedirs(path, exist_ok=True)
        try:
            session = chdb_session.Session(path)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise StoreError(f"cannot open chDB store at {path}: {exc}") from exc
        _open[path] = (session, 1)
        return session


def _release(path: str) -> None:
    with _lock:
        session, users = _open[path]
        if users > 1:
            _open[path] = (session, users - 1)
            return
        del _open[path]
        session.close()


# ClickHouse parses query parameter values in its escaped text format (as TSV fields), so a
# backslash, tab or newline in a value must be escaped or the value is cut short.
_PARAM_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f"}
)


def _param_text(value: Any) -> Any:
    return value.translate(_PARAM_ESCAPES) if isinstance(value, str) else value


_EPOCH = datetime(1970, 1, 1)  # naive: the column's time zone (UTC) applies


#: From 2001-09-09 on, epoch seconds have ten digits and ClickHouse reads ``S.ffffff`` as a unix
#: time; shorter numbers it may read as a date, so earlier times travel as date-time text.
_NUMERIC_FROM_US: Final = 1_000_000_000 * 1_000_000


def _micros_text(timestamp_ns: int) -> str:
    micros = timestamp_ns // 1000
    if micros >= _NUMERIC_FROM_US:
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"  # the fast, common case
    return (_EPOCH + timedelta(microseconds=micros)).isoformat(" ", "microseconds")


_NO_ATTRIBUTES: Final[dict[str, str]] = {}


def _json_columns(rows: Sequence[EventRow], *leading: list[Any]) -> str:
    columns: list[Any] = row_columns(rows)
    # _micros_text's common case inline (no call per row); earlier times take the function.
    columns[TIMESTAMP_INDEX] = [
        f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        if (micros := ns // 1000) >= _NUMERIC_FROM_US
        else _micros_text(ns)
        for ns in columns[TIMESTAMP_INDEX]
    ]
    columns[ATTRIBUTES_INDEX] = [value or _NO_ATTRIBUTES for value in columns[ATTRIBUTES_INDEX]]
    return json.dumps([*leading, *columns], ensure_ascii=False, separators=(",", ":"))


#: Each ``\n``-terminated line of a local file, numbered from 1 (``_row_number`` is 0-based and
#: follows the file's order, parallel parsing included).
_LINES_OF_FILE: Final = (
    "SELECT _row_number + 1 AS line_no, line FROM file({path:String}, 'LineAsString')"
)


class ChdbStore(ConversationStore):
    """Zero-setup store: the same SQL and MergeTree engines as a ClickHouse server, in-process."""

    def __init__(self, path: str, schema: Schema | None = None) -> None:
        super().__init__(schema or Schema())
        if self.schema.cluster:
            raise ValueError("the embedded store is single-node: drop the cluster setting")
        self.path = os.path.abspath(path)
        self._session = _acquire(self.path)
        self._closed = False
        self._insert_sql = (
            f"INSERT INTO {self.schema.events} ({', '.join(EVENT_COLUMN_NAMES)}) SETTINGS "
            "insert_deduplication_token = '{token}', "
            "deduplicate_blocks_in_dependent_materialized_views = 1, "
            f"{settings_clause(EVENTS_INSERT_SETTINGS)} "
            "FORMAT JSONCompactColumns\n"
        )

    def _query(self, sql: str, fmt: str, params: Params | None = None) -> str:
        if self._closed:
            raise StoreError("store is closed")
        with _lock:
            try:
                escaped = {k: _param_text(v) for k, v in params.items()} if params else None
                result = self._session.query(sql, fmt, params=escaped)
            except Exception as exc:
                raise StoreError(str(exc)) from exc
        return str(result)

    def execute(self, sql: str, params: Params | None = None) -> None:
        self._query(sql, "CSV", params)

    def select(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        text = self._query(sql, "JSONEachRow", params)
        # split("\n"), not splitlines(): values may hold U+2028 and friends, which JSON keeps raw.
        return [json.loads(line) for line in text.split("\n") if line]

    def insert(self, rows: Sequence[EventRow]) -> None:
        if not rows:
            return
        # Values travel as the data of a FORMAT clause, never as SQL text.
        # The token is a hex digest of the rows' event ids: a retried batch is stored once.
        sql = self._insert_sql.format(token=insert_token(rows))
        self._query(sql + _json_columns(rows), "CSV")

    @contextmanager
    def lines_of(self, path: str) -> Iterator[tuple[str, Params]]:
        yield _LINES_OF_FILE, {"path": os.path.abspath(path)}  # the engine reads the file itself

    def insert_staged(self, stage: str, rows: Sequence[EventRow], line_numbers: list[int]) -> None:
        if not rows:
            return
        names = ", ".join((*STAGE_COLUMN_NAMES, *EVENT_COLUMN_NAMES))
        sql = f"INSERT INTO {stage} ({names}) FORMAT JSONCompactColumns\n"
        self._query(sql + _json_columns(rows, line_numbers, [True] * len(rows)), "CSV")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self.path)
