"""The store interface: one schema, one set of queries, two engines (chDB and ClickHouse server)."""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.analytics import (
    CONVERSATION_ORDERS,
    MAX_CONVERSATIONS_LIMIT,
    ConversationOutcome,
)
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store.sql import COMPARE_DIMENSIONS, Schema
from opentelemetry.instrumentation.conversation import environment_variables as env

Params = Mapping[str, Any]


class StoreError(RuntimeError):
    """The store could not complete an operation (unreachable, rejected a write, ...)."""


class StoreInUse(StoreError):
    """Another process owns the embedded store's directory (chDB allows one)."""


class NoStore(StoreError):
    """A read named a store nobody has written: an error, so that a mistyped ``--store`` is not
    answered with an empty report (and a new, empty store left behind)."""


class UnknownConversation(LookupError):
    """A conversation the store has no events for: one message for ``conversation`` (exit 1),
    ``GET /api/v1/conversation`` (404) and late feedback (refused)."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"unknown conversation {conversation_id!r}")
        self.conversation_id = conversation_id


#: The widest report window (a century). One bound for the CLI, the API and library callers: far
#: wider than any retention, and far from the dates ``datetime`` cannot represent.
MAX_DAYS: Final = 36_500
_WHOLE_NUMBER: Final = re.compile(r"[+-]?[0-9]+")


def check_days(days: object, name: str = "days") -> int:
    """``days`` if it is a whole number of days in 1..:data:`MAX_DAYS`; else a ``ValueError``
    that names ``name`` (``--days`` on the command line, ``days`` in the API)."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValueError(f"{name} must be a whole number of days, got {days!r:.40}")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"{name} must be between 1 and {MAX_DAYS}, got {days}")
    return days


def parse_days(text: str, name: str = "days") -> int:
    """A window in days from user text (a flag or a query parameter), checked by
    :func:`check_days`; the same messages wherever the text came from."""
    stripped = text.strip()
    if not _WHOLE_NUMBER.fullmatch(stripped):
        raise ValueError(f"{name} must be a whole number of days, got {text!r:.40}")
    if len(stripped.lstrip("+-").lstrip("0")) > len(str(MAX_DAYS)):
        # Too many digits to be in range, and int() refuses past 4,300 digits anyway.
        raise ValueError(f"{name} must be between 1 and {MAX_DAYS}, got {stripped:.40}")
    return check_days(int(stripped), name)


def check_dimension(value: object, name: str = "by") -> str:
    """``value`` if ``compare`` can group by it; else a ``ValueError`` naming ``name`` (``--by``
    on the command line, ``by`` in the API) and listing the accepted values."""
    if isinstance(value, str) and value in COMPARE_DIMENSIONS:
        return value
    accepted = ", ".join(COMPARE_DIMENSIONS)
    if value is None or value == "":
        raise ValueError(f"{name} is required: one of {accepted}")
    raise ValueError(f"{name} must be one of {accepted}; got {value!r:.40}")


#: The most user turns ``--min-turns`` accepts (far beyond any conversation).
MAX_MIN_TURNS: Final = 1_000_000
_OUTCOME_VALUES: Final = tuple(outcome.value for outcome in ConversationOutcome)


def parse_count(text: str, name: str, low: int, high: int) -> int:
    """A whole number in ``low..high`` from user text (a flag or a query parameter); the same
    messages wherever the text came from, naming ``name``."""
    stripped = text.strip()
    if not _WHOLE_NUMBER.fullmatch(stripped):
        raise ValueError(f"{name} must be a whole number, got {text!r:.40}")
    if len(stripped.lstrip("+-").lstrip("0")) > len(str(high)):
        raise ValueError(f"{name} must be between {low} and {high}, got {stripped:.40}")
    value = int(stripped)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def check_outcome(value: object, name: str = "outcome") -> str | None:
    """``value`` if it names a :class:`ConversationOutcome` (``None`` or '' for any outcome);
    else a ``ValueError`` naming ``name`` and listing the accepted values."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in _OUTCOME_VALUES:
        return value
    raise ValueError(f"{name} must be one of {', '.join(_OUTCOME_VALUES)}; got {value!r:.40}")


def check_order(value: object, name: str = "order") -> str:
    """``value`` if ``conversations`` can order by it; else a ``ValueError`` naming ``name``."""
    if isinstance(value, str) and value in CONVERSATION_ORDERS:
        return value
    raise ValueError(f"{name} must be one of {', '.join(CONVERSATION_ORDERS)}; got {value!r:.40}")


def parse_flag(text: str, name: str) -> bool:
    """A yes/no query parameter: empty is no, else the one boolean reading of the project
    (:func:`~opentelemetry.instrumentation.conversation.environment_variables.parse_bool`)."""
    if not text.strip():
        return False
    try:
        return env.parse_bool(text)
    except ValueError:
        raise ValueError(f"{name} must be true or false, got {text!r:.40}") from None


def check_limit(value: object, name: str = "limit") -> int:
    """``value`` if it is a whole number of conversations in 1..:data:`MAX_CONVERSATIONS_LIMIT`."""
    return _check_int(value, name, 1, MAX_CONVERSATIONS_LIMIT)


def check_min_turns(value: object, name: str = "min_turns") -> int:
    """``value`` if it is a whole number of user turns in 0..:data:`MAX_MIN_TURNS`."""
    return _check_int(value, name, 0, MAX_MIN_TURNS)


def _check_int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r:.40}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def insert_token(rows: Sequence[EventRow]) -> str:
    """Insert deduplication token: the same batch again (a retry, a replayed spool segment, a
    client resending) is recognised by ClickHouse and stored, and rolled up, once."""
    digest = hashlib.blake2b(digest_size=16)
    for row in rows:
        digest.update(row.event_id.encode("utf-8", "replace"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def format_time(moment: datetime) -> str:
    """A UTC datetime as ClickHouse's DateTime64(6) text, for a query parameter."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def window_params(days: int, now: datetime | None, agent: str = "") -> dict[str, str]:
    """``since``/``edge``/``agent`` for :meth:`Schema.conversations_in_window`: the last
    ``days`` before ``now`` (default: the current time), the hour-aligned edge of the rollup."""
    check_days(days)
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    since = now - timedelta(days=days)
    edge = since.replace(minute=0, second=0, microsecond=0)
    if edge < since:
        edge += timedelta(hours=1)
    return {
        "since": format_time(since),
        "edge": edge.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "agent": agent,
    }


class ConversationStore(abc.ABC):
    """Where conversation events live: the engine (schema, execute, select, insert).

    What the events mean (report, compare, one conversation) is :class:`~.reader.StoreReader`'s
    job, over any engine."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    # ---- what each engine provides ------------------------------------------------------------

    @abc.abstractmethod
    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT), with server-side
        parameters."""

    @abc.abstractmethod
    def select(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Run a query with server-side parameters; rows as dicts."""

    @abc.abstractmethod
    def insert(self, rows: Sequence[EventRow]) -> None:
        """Write rows in one batch; raise :class:`StoreError` when the write did not happen."""

    @abc.abstractmethod
    def lines_of(self, path: str) -> AbstractContextManager[tuple[str, Params]]:
        """A subquery yielding ``line_no`` (from 1) and ``line`` of a local file, one row per
        ``\\n``-terminated line, and its parameters, for as long as the context lasts."""

    @abc.abstractmethod
    def insert_staged(self, stage: str, rows: Sequence[EventRow], line_numbers: list[int]) -> None:
        """Write rows Python parsed into an import stage (with their line numbers)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine (the embedded store's directory lock, the HTTP pool)."""

    # ---- shared behaviour ---------------------------------------------------------------------

    def apply_schema(self) -> None:
        """Create the schema, or bring one made by an earlier version up to date."""
        for statement in self.schema.table_ddl():
            self.execute(statement)
        existing: dict[str, set[str]] = {}
        params = {"database": self.schema.database}
        for row in self.select(self.schema.existing_columns(), params):
            existing.setdefault(row["table"], set()).add(row["name"])
        for statement in self.schema.upgrade(existing):
            self.execute(statement)
        if not self.schema.view_is_current(existing):
            # No view yet, or an older one computing fewer rollup columns: (re)create it.
            # Inserts between the two statements would miss the rollup, so this runs only when
            # a store is opened, before the pipeline writes.
            self.execute(self.schema.drop_view())
            self.execute(self.schema.view_ddl())
        if not self.schema.abandonments_view_exists(existing):
            self.execute(self.schema.abandonments_view_ddl())
            self.execute(self.schema.backfill_abandonments())

    def has_schema(self) -> bool:
        """Whether the store's database has any table: what tells a store from an empty place."""
        params = {"database": self.schema.database}
        return bool(self.select(self.schema.existing_columns(), params))

    def ping(self) -> None:
        """Raise unless the store answers a trivial query."""
        self.select("SELECT 1 AS ok")

    def count_events(self) -> int:
        return int(self.select(self.schema.count_events())[0]["events"])
