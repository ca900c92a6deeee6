"""Every SQL statement the product runs: DDL and queries, for chDB and ClickHouse server alike.

Values always reach ClickHouse as server-side parameters (``{name:Type}``). The only things
formatted into SQL text are identifiers checked against :data:`_IDENTIFIER`, the TTL as a checked
integer, and the contract's own event-type constants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from opentelemetry.exporter.conversation_analytics.analytics import (
    CONVERSATION_ORDERS,
    SATISFACTION_BINS,
    ConversationOutcome,
    ExitKind,
)
from opentelemetry.instrumentation.conversation.semconv import (
    EVALUATION_EVENT_TYPE,
    RATING_NEGATIVE,
    RATING_POSITIVE,
    ConversationEvent,
)

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TS_TYPE: Final = "DateTime64(6, 'UTC')"

#: Raw event columns in insert order (``inserted_at`` is filled by the server).
EVENT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("event_id", "String"),
    ("event_type", "LowCardinality(String)"),
    ("conversation_id", "String"),
    ("timestamp", TS_TYPE),
    ("user_id", "String"),
    ("agent_name", "LowCardinality(String)"),
    ("agent_version", "LowCardinality(String)"),
    ("prompt_version", "LowCardinality(String)"),
    ("request_model", "LowCardinality(String)"),
    ("response_model", "LowCardinality(String)"),
    ("channel", "LowCardinality(String)"),
    ("turn", "Nullable(Int32)"),
    ("message_length", "Nullable(Int32)"),
    ("response_length", "Nullable(Int32)"),
    ("tool_name", "LowCardinality(String)"),
    ("error_type", "LowCardinality(String)"),
    ("handoff_reason", "String"),
    ("feedback_rating", "LowCardinality(String)"),
    ("feedback_score", "Nullable(Float64)"),
    ("total_turns", "Nullable(Int32)"),
    ("abandoned_at_turn", "Nullable(Int32)"),
    ("abandon_inferred", "Bool"),
    ("rephrase", "Bool"),
    ("rephrase_similarity", "Nullable(Float64)"),
    ("service_name", "LowCardinality(String)"),
    ("trace_id", "String"),
    ("span_id", "String"),
    ("attributes", "Map(String, String)"),
    ("derived", "Bool"),
    ("evaluation_name", "LowCardinality(String)"),
    ("evaluation_score", "Nullable(Float64)"),
    ("evaluation_label", "LowCardinality(String)"),
)
EVENT_COLUMN_NAMES: Final = tuple(name for name, _ in EVENT_COLUMNS)


def _is(kind: ConversationEvent) -> str:
    return f"event_type = '{kind.value}'"


_E = ConversationEvent


@dataclass(frozen=True)
class RollupColumn:
    """A per-conversation aggregate: stored type, its value from a block of raw events (``state``;
    ``raw`` where reading raw events that may hold not-yet-merged duplicates), and its merge."""

    name: str
    type: str
    state: str
    merge: str
    raw: str = ""
    #: False for a column read only inside another column's merge (never merged under its
    #: own name: ClickHouse would resolve the other merge's reference to that alias).
    merged: bool = True
    #: ``(old column, expression)``: a store from an earlier version that has the old column
    #: gets this one with the expression as its default, so rows rolled up before the upgrade
    #: read their value from the old column.
    upgrade_from: tuple[str, str] | None = None

    @property
    def from_raw(self) -> str:
        return self.raw or self.state


def _simple(name: str, func: str, value_type: str, state: str) -> RollupColumn:
    stored = f"SimpleAggregateFunction({func}, {value_type})"
    return RollupColumn(name, stored, state, f"{func}({name})")


def _counted_once(
    name: str, condition: str, decided_by: str | None = None
) -> tuple[RollupColumn, RollupColumn]:
    """Explicit and derived events counted apart; the merge takes the explicit count when the
    conversation has explicit events of that kind (``decided_by``: an unmerged flag column, so
    tool errors follow tool calls), else the derived one, so an agent that records events
    explicitly and is also GenAI-instrumented is never counted twice."""
    explicit = _count(name, f"{condition} AND NOT derived")
    derived = replace(_count(f"derived_{name}", f"{condition} AND derived"), merged=False)
    decision = f"max({decided_by})" if decided_by else f"sum({name})"
    merge = f"if({decision} > 0, sum({name}), sum(derived_{name}))"
    return replace(explicit, merge=merge), derived


def _count(name: str, condition: str) -> RollupColumn:
    """Events matching ``condition``: summed in the rollup (each inserted block counts once,
    thanks to insert deduplication), counted by distinct event id when read from raw events."""
    return RollupColumn(
        name,
        "SimpleAggregateFunction(sum, UInt64)",
        f"countIf({condition})",
        f"sum({name})",
        f"uniqExactIf(event_id, {condition})",
    )


_TS_NULL = f"Nullable({TS_TYPE})"
_INFERRED = "abandon_inferred"
_EVALUATION = f"event_type = '{EVALUATION_EVENT_TYPE}'"
#: How each event reads as an exit step, in :class:`ExitKind`'s precedence order (the first
#: condition an event meets names it; at equal timestamps the earlier entry wins).
_EXIT_KINDS: Final[tuple[tuple[str, ExitKind], ...]] = (
    (_is(_E.HANDOFF_REQUESTED), ExitKind.HANDOFF_REQUEST),
    (_is(_E.AGENT_RESPONSE), ExitKind.AGENT_RESPONSE),
    (f"{_is(_E.TOOL_CALLED)} AND error_type != ''", ExitKind.TOOL_ERROR),
    (_is(_E.TOOL_CALLED), ExitKind.TOOL_CALL),
    (f"{_is(_E.USER_MESSAGE)} AND rephrase", ExitKind.REPHRASE),
    (_is(_E.USER_MESSAGE), ExitKind.USER_MESSAGE),
    (_is(_E.STARTED), ExitKind.STARTED),
)
_EXIT_RANK = (
    "multiIf("
    + ", ".join(
        f"{condition}, {len(_EXIT_KINDS) - index}"
        for index, (condition, _) in enumerate(_EXIT_KINDS)
    )
    + ", 0)"
)
#: Not a step of the conversation the user saw: the abandonment itself, feedback, evaluations.
_NOT_A_STEP = f"{_is(_E.ABANDONED)} OR {_is(_E.FEEDBACK_RECEIVED)} OR {_EVALUATION}"
#: Bits of a step key holding the step's precedence rank (every rank of ``_EXIT_RANK`` fits).
_RANK_BITS: Final = 3
if len(_EXIT_KINDS) >= 1 << _RANK_BITS:  # pragma: no cover - import-time
    raise RuntimeError("every exit kind's rank must fit in the step key's rank bits")
#: Digits of the tool name's length at the end of a tool key.
_TOOL_LENGTH_DIGITS: Final = 10


def _step_key(at: str, rank: str) -> str:
    """A step as one Int64 ordered by (time, precedence): microseconds times 8 plus the rank
    (which alone names the kind, so equal keys are the same kind of step)."""
    return f"toUnixTimestamp64Micro({at}) * {1 << _RANK_BITS} + {rank}"


def _tool_key(at: str, event_id: str, tool: str, failed: str) -> str:
    """A tool call as one string ordered as (time, event id) are: the time as 16 hex digits
    (sign bit flipped, so byte order is time order), the event id, a NUL, then what is read
    back from the end: the tool name, ``1`` if it failed (``0`` if not), the name's length."""
    return (
        f"concat(leftPad(hex(bitXor(toUInt64(toUnixTimestamp64Micro({at})), "
        f"9223372036854775808)), 16, '0'), {event_id}, '\\0', {tool}, if({failed}, '1', '0'), "
        f"leftPad(toString(length({tool})), {_TOOL_LENGTH_DIGITS}, '0'))"
    )


ROLLUP_COLUMNS: Final[tuple[RollupColumn, ...]] = (
    _simple("first_seen", "min", TS_TYPE, "min(timestamp)"),
    _simple("last_seen", "max", TS_TYPE, "max(timestamp)"),
    _simple("started_at", "min", _TS_NULL, f"minIfOrNull(timestamp, {_is(_E.STARTED)})"),
    _simple("completed_at", "max", _TS_NULL, f"maxIfOrNull(timestamp, {_is(_E.COMPLETED)})"),
    _simple("was_completed", "max", "UInt8", f"max(toUInt8({_is(_E.COMPLETED)}))"),
    _simple(
        "explicit_abandoned",
        "max",
        "UInt8",
        f"max(toUInt8({_is(_E.ABANDONED)} AND NOT {_INFERRED}))",
    ),
    _simple(
        "inferred_abandoned_at",
        "max",
        _TS_NULL,
        f"maxIfOrNull(timestamp, {_is(_E.ABANDONED)} AND {_INFERRED})",
    ),
    _simple(
        "last_activity",
        "max",
        _TS_NULL,
        # An evaluator's verdict is not the user coming back: it never revokes an inference.
        f"maxIfOrNull(timestamp, NOT ({_is(_E.ABANDONED)} AND {_INFERRED}) AND NOT {_EVALUATION})",
    ),
    _simple(
        "last_user_turn", "max", "Nullable(Int32)", f"maxIfOrNull(turn, {_is(_E.USER_MESSAGE)})"
    ),
    # The turn the user left at (the latest abandonment's, which is the one that can stand).
    _simple(
        "abandoned_turn",
        "max",
        "Nullable(Int32)",
        f"maxIfOrNull(abandoned_at_turn, {_is(_E.ABANDONED)})",
    ),
    _simple("had_handoff", "max", "UInt8", f"max(toUInt8({_is(_E.HANDOFF_REQUESTED)}))"),
    _simple("user_id", "max", "String", "max(toString(user_id))"),
    _simple("channel", "max", "String", "max(toString(channel))"),
    _simple("request_model", "max", "String", "max(toString(request_model))"),
    _simple("response_model", "max", "String", "max(toString(response_model))"),
    _simple("prompt_version", "max", "String", "max(toString(prompt_version))"),
    _simple("agent_version", "max", "String", "max(toString(agent_version))"),
    *_counted_once("user_messages", _is(_E.USER_MESSAGE)),
    _count("rephrases", f"{_is(_E.USER_MESSAGE)} AND rephrase"),
    _count("evaluations", _EVALUATION),
    *_counted_once("tool_calls", _is(_E.TOOL_CALLED)),
    # Never merged under its own name: only tool_errors' merge reads it (see ``merged``).
    replace(
        _simple(
            "explicit_tool_calls",
            "max",
            "UInt8",
            f"max(toUInt8({_is(_E.TOOL_CALLED)} AND NOT derived))",
        ),
        merged=False,
    ),
    *_counted_once(
        "tool_errors", f"{_is(_E.TOOL_CALLED)} AND error_type != ''", "explicit_tool_calls"
    ),
    _count(
        "positive_feedback",
        f"{_is(_E.FEEDBACK_RECEIVED)} AND feedback_rating = '{RATING_POSITIVE}'",
    ),
    _count(
        "negative_feedback",
        f"{_is(_E.FEEDBACK_RECEIVED)} AND feedback_rating = '{RATING_NEGATIVE}'",
    ),
    # What came last before leaving (``exit_context``), kept per conversation so the report
    # reads the rollup, not raw events, and encoded so that merging is a plain ``max`` of a
    # number or a string (a ``max`` of tuples is several times slower): the latest step and
    # the latest tool call (:func:`_step_key`, :func:`_tool_key`), the latest rephrased turn.
    RollupColumn(
        "last_step_key",
        "SimpleAggregateFunction(max, Nullable(Int64))",
        f"maxIfOrNull({_step_key('timestamp', _EXIT_RANK)}, NOT ({_NOT_A_STEP}))",
        "max(last_step_key)",
        upgrade_from=(
            "last_step",
            "if(tupleElement(last_step, 3) = '', NULL, "
            + _step_key("tupleElement(last_step, 1)", "tupleElement(last_step, 2)")
            + ")",
        ),
    ),
    RollupColumn(
        "last_tool_key",
        "SimpleAggregateFunction(max, String)",
        "maxIf("
        + _tool_key("timestamp", "event_id", "toString(tool_name)", "error_type != ''")
        + f", {_is(_E.TOOL_CALLED)})",
        "max(last_tool_key)",
        upgrade_from=(
            "last_tool_call",
            "if(tupleElement(last_tool_call, 2) = '', '', "
            + _tool_key(
                "tupleElement(last_tool_call, 1)",
                "tupleElement(last_tool_call, 2)",
                "tupleElement(last_tool_call, 3)",
                "tupleElement(last_tool_call, 4) = 1",
            )
            + ")",
        ),
    ),
    _simple(
        "last_rephrase_turn",
        "max",
        "Nullable(Int32)",
        f"maxIfOrNull(turn, {_is(_E.USER_MESSAGE)} AND rephrase)",
    ),
    # The tools a conversation called (for ``tool_lift``), each once.
    RollupColumn(
        "tool_names",
        "SimpleAggregateFunction(groupUniqArrayArray, Array(String))",
        f"groupUniqArrayIf(toString(tool_name), {_is(_E.TOOL_CALLED)} AND tool_name != '')",
        "groupUniqArrayArray(tool_names)",
    ),
)
#: The materialized view feeding the rollup.
VIEW: Final = "conversation_rollup_mv"
#: The ``abandoned`` events alone (about one event in forty), so drop-off reads them without
#: scanning every event of the window; kept by :data:`ABANDONMENTS_VIEW`.
ABANDONMENTS: Final = "conversation_abandonments"
ABANDONMENTS_VIEW: Final = "conversation_abandonments_mv"
ABANDONMENT_COLUMNS: Final = tuple(
    (name, ctype)
    for name, ctype in EVENT_COLUMNS
    if name
    in (
        "event_id",
        "conversation_id",
        "timestamp",
        "agent_name",
        "abandoned_at_turn",
        "abandon_inferred",
    )
)
#: How many recent insert blocks each table remembers, so a retried batch is not stored twice.
DEDUPLICATION_WINDOW: Final = 10_000
#: Settings of every insert into the events table. Each block holds an event id once (the
#: pipeline and the import dedupe before writing), so the collapse of a block's equal keys that
#: ReplacingMergeTree and the rollup's AggregatingMergeTree do at insert would find nothing, and
#: it costs more than writing the rows (1M rows into a copy of the events table: 3.2 s with it,
#: 1.2 s without; the import's events step with both views: 4.9 s, 2.4 s).
EVENTS_INSERT_SETTINGS: Final = {"optimize_on_insert": 0}


def settings_clause(settings: Mapping[str, int]) -> str:
    """``settings`` as a ``SETTINGS`` clause's list."""
    return ", ".join(f"{check_identifier(name)} = {int(value)}" for name, value in settings.items())


#: An inferred abandonment stands only while the user has not come back: activity after it
#: revokes it (a new one is inferred if they go idle again).
_INFERRED_STANDS = "(last_activity IS NULL OR {at} >= last_activity)"
_WAS_ABANDONED = (
    "toUInt8(explicit_abandoned = 1 OR (inferred_abandoned_at IS NOT NULL AND "
    + _INFERRED_STANDS.format(at="inferred_abandoned_at")
    + "))"
)

#: Scale of the exact decimals behind every mean: ``Decimal128`` keeps 18 integer digits beside
#: it, and sums of decimals do not depend on the order rows are added in, as float sums do.
DECIMAL_SCALE: Final = 20

#: The satisfaction formula of SPEC section 4, over one merged conversation row: the number of
#: signals, and their sum in tenths (every signal is a whole number of tenths).
_SATISFACTION_SIGNALS = """
    positive_feedback + negative_feedback
      + toUInt64(was_completed AND user_messages <= 3 OR had_handoff OR NOT was_completed)
      + toUInt64(user_messages > 2)"""
_SATISFACTION_TENTHS = """
    10 * positive_feedback
      + multiIf(was_completed AND user_messages <= 3, 9, had_handoff, 3, NOT was_completed, 1, 0)
      + if(user_messages > 2, greatest(0, 8 - greatest(0, toInt64(user_messages) - 3)), 0)"""


def _satisfaction_power(power: int) -> str:
    """One conversation's satisfaction (``power`` 1) or its square (2) as a ``Decimal128``:
    exact integer tenths over ten times the signal count, 0.5 with no signals."""
    tenths = " * ".join([f"({_SATISFACTION_TENTHS})"] * power)
    signals = " * ".join([f"(10 * ({_SATISFACTION_SIGNALS}))"] * power)
    return f"""if(({_SATISFACTION_SIGNALS}) = 0,
    toDecimal128({5**power}, {DECIMAL_SCALE}) / {10**power},
    toDecimal128({tenths}, {DECIMAL_SCALE}) / ({signals}))"""


SATISFACTION_EXPR: Final = _satisfaction_power(1)
#: Its square, for the variance behind ``satisfaction_ci``, exact in the same way.
SATISFACTION_SQUARE_EXPR: Final = _satisfaction_power(2)


#: What ``compare --by`` accepts: each a column of :meth:`Schema.conversations_in_window`
#: (``agent``: the agent of a conversation's first event in the window; the others: the
#: rollup's value from the conversation's events).
COMPARE_DIMENSIONS: Final = (
    "agent",
    "prompt_version",
    "agent_version",
    "request_model",
    "response_model",
    "channel",
)


def _dimension(name: str) -> str:
    """``name`` if it is a :data:`COMPARE_DIMENSIONS` column (the only ones formatted in)."""
    if name not in COMPARE_DIMENSIONS:
        raise ValueError(f"not a compare dimension: {name!r:.80}")
    return name


#: A conversation's duration for the survival curve, in user turns: the turn it was abandoned
#: at when its abandonment stands, else its count of user messages (completed, handed-off and
#: open conversations are censored there); NULL without a user message (left out). A store
#: written before ``abandoned_turn`` existed has it NULL for old conversations: they fall back
#: to their count of user messages (the same turn, unless the agent named an earlier one).
SURVIVAL_TURN: Final = """if(user_messages > 0,
    toInt64(if(was_abandoned = 1 AND abandoned_turn >= 1, abandoned_turn, user_messages)), NULL)"""


#: ``conversations``' outcome, by :class:`ConversationOutcome`'s precedence.
_OUTCOME = (
    f"multiIf(was_completed = 1, '{ConversationOutcome.COMPLETED.value}', "
    f"was_abandoned = 1, '{ConversationOutcome.ABANDONED.value}', "
    f"had_handoff = 1, '{ConversationOutcome.HANDOFF.value}', "
    f"'{ConversationOutcome.OPEN.value}')"
)
#: ``conversations --order``: the only ORDER BY clauses formatted in (ties by id, so a page is
#: the same page every time).
_CONVERSATION_ORDER_BY: Final = {
    "satisfaction": "score ASC, turns DESC, activity_at DESC, conversation_id ASC",
    "last_activity": "activity_at DESC, conversation_id ASC",
}
if set(_CONVERSATION_ORDER_BY) != set(CONVERSATION_ORDERS):  # pragma: no cover - import-time
    raise RuntimeError("every conversations order needs its ORDER BY clause")


#: A conversation's exit context from its merged rollup row (``exit_context``): ``kind``, the
#: :class:`ExitKind` of its latest step (by time, then precedence, then event id); ``tool``, its
#: latest tool call's name and ``tool_failed``, whether that call carried an ``error.type`` (by
#: time, then event id, as the Grafana drop-off panel picks them); ``rephrased``, whether a user
#: turn flagged a rephrase is its last user turn or the one before it.
_TOOL_NAME_LENGTH = f"toUInt64OrZero(right(last_tool_key, {_TOOL_LENGTH_DIGITS}))"
_EXIT_COLUMNS = f"""if(last_step_key IS NULL, '{ExitKind.NONE.value}',
        transform(toUInt8(bitAnd(last_step_key, {(1 << _RANK_BITS) - 1})),
            [{", ".join(str(len(_EXIT_KINDS) - i) for i in range(len(_EXIT_KINDS)))}],
            [{", ".join(f"'{kind.value}'" for _, kind in _EXIT_KINDS)}],
            '{ExitKind.OTHER.value}')) AS kind,
    last_tool_key != '' AS has_tool,
    substring(last_tool_key, length(last_tool_key) - {_TOOL_LENGTH_DIGITS} - {_TOOL_NAME_LENGTH},
        {_TOOL_NAME_LENGTH}) AS tool,
    substring(last_tool_key, length(last_tool_key) - {_TOOL_LENGTH_DIGITS}, 1) = '1'
        AS tool_failed,
    ifNull(last_rephrase_turn >= last_user_turn - 1, 0) = 1 AS rephrased"""


def check_identifier(name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ``ValueError``."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid ClickHouse identifier: {name!r:.80}")
    return name


@dataclass(frozen=True)
class Schema:
    """Table names and DDL for one database, single node or a replicated cluster."""

    database: str = "conversation_analytics"
    cluster: str | None = None
    ttl_days: int = 0

    def __post_init__(self) -> None:
        check_identifier(self.database)
        if self.cluster is not None:
            check_identifier(self.cluster)
        if not isinstance(self.ttl_days, int) or isinstance(self.ttl_days, bool):
            raise ValueError("ttl_days must be an integer")
        if self.ttl_days < 0:
            raise ValueError("ttl_days must be >= 0 (0 keeps events forever)")

    def _table(self, name: str) -> str:
        return f"`{self.database}`.`{name}`"

    @property
    def events(self) -> str:
        """The events table queries read and inserts write (Distributed on a cluster)."""
        return self._table("conversation_events_all" if self.cluster else "conversation_events")

    @property
    def rollup(self) -> str:
        """The per-conversation rollup table queries read."""
        return self._table("conversation_rollup_all" if self.cluster else "conversation_rollup")

    @property
    def abandonments(self) -> str:
        """The ``abandoned`` events table queries read (see :data:`ABANDONMENTS`)."""
        return self._table(ABANDONMENTS + "_all" if self.cluster else ABANDONMENTS)

    def _on_cluster(self) -> str:
        return f" ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def _engine(self, engine: str, local: str) -> str:
        if not self.cluster:
            return f"{engine}()"
        path = f"'/clickhouse/tables/{{shard}}/{self.database}/{local}', '{{replica}}'"
        return f"Replicated{engine}({path})"

    def _dedup_setting(self) -> str:
        prefix = "replicated" if self.cluster else "non_replicated"
        return f"{prefix}_deduplication_window = {DEDUPLICATION_WINDOW}"

    def ddl(self) -> list[str]:
        """Statements that create the schema; each is idempotent (``IF NOT EXISTS``)."""
        return [*self.table_ddl(), self.view_ddl(), self.abandonments_view_ddl()]

    def table_ddl(self) -> list[str]:
        """The database and tables (everything but the view, which needs its tables' columns:
        a store from an earlier version gets :meth:`upgrade` before the view)."""
        on = self._on_cluster()
        events_local = self._table("conversation_events")
        rollup_local = self._table("conversation_rollup")
        columns = ",\n    ".join(f"`{name}` {ctype}" for name, ctype in EVENT_COLUMNS)
        ttl = (
            f"\nTTL toDateTime(timestamp) + INTERVAL {int(self.ttl_days)} DAY"
            if self.ttl_days
            else ""
        )
        rollup_columns = ",\n    ".join(f"`{c.name}` {c.type}" for c in ROLLUP_COLUMNS)
        abandonment_columns = ",\n    ".join(f"`{n}` {t}" for n, t in ABANDONMENT_COLUMNS)
        statements = [
            f"CREATE DATABASE IF NOT EXISTS `{self.database}`{on}",
            f"""CREATE TABLE IF NOT EXISTS {events_local}{on}
(
    {columns},
    `inserted_at` DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX conversation_id_bloom conversation_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = {self._engine("ReplacingMergeTree", "conversation_events")}
PARTITION BY toDate(timestamp)
ORDER BY (agent_name, conversation_id, event_id){ttl}
SETTINGS {self._dedup_setting()}""",
            f"""CREATE TABLE IF NOT EXISTS {rollup_local}{on}
(
    `bucket` DateTime('UTC'),
    `agent_name` LowCardinality(String),
    `conversation_id` String,
    {rollup_columns}
)
ENGINE = {self._engine("AggregatingMergeTree", "conversation_rollup")}
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, agent_name, conversation_id){ttl.replace("timestamp", "bucket")}
SETTINGS {self._dedup_setting()}""",
            f"""CREATE TABLE IF NOT EXISTS {self._table(ABANDONMENTS)}{on}
(
    {abandonment_columns}
)
ENGINE = {self._engine("ReplacingMergeTree", ABANDONMENTS)}
PARTITION BY toDate(timestamp)
ORDER BY (timestamp, event_id){ttl}
SETTINGS {self._dedup_setting()}""",
        ]
        if self.cluster:
            for local in ("conversation_events", "conversation_rollup", ABANDONMENTS):
                statements.append(
                    f"CREATE TABLE IF NOT EXISTS {self._table(local + '_all')}{on} "
                    f"AS {self._table(local)}\n"
                    f"ENGINE = Distributed(`{self.cluster}`, `{self.database}`, `{local}`, "
                    "cityHash64(conversation_id))"
                )
        return statements

    def view_ddl(self) -> str:
        """The materialized view that keeps the rollup."""
        states = ",\n    ".join(f"{c.state} AS `{c.name}`" for c in ROLLUP_COLUMNS)
        return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {self._table(VIEW)}{self._on_cluster()}
TO {self._table("conversation_rollup")}
AS SELECT
    toStartOfHour(timestamp) AS `bucket`,
    agent_name,
    conversation_id,
    {states}
FROM {self._table("conversation_events")}
GROUP BY bucket, agent_name, conversation_id"""

    def abandonments_view_ddl(self) -> str:
        """The materialized view that copies ``abandoned`` events to :data:`ABANDONMENTS`."""
        view = self._table(ABANDONMENTS_VIEW)
        return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{self._on_cluster()}
TO {self._table(ABANDONMENTS)}
AS {self._abandoned_events(self._table("conversation_events"))}"""

    def _abandoned_events(self, events: str) -> str:
        names = ", ".join(f"`{name}`" for name, _ in ABANDONMENT_COLUMNS)
        return f"SELECT {names} FROM {events} WHERE {_is(_E.ABANDONED)}"

    def backfill_abandonments(self) -> str:
        """Copy the ``abandoned`` events already stored (a store from before the table, once,
        right after its view exists: an event copied twice is read once, by event id)."""
        names = ", ".join(f"`{name}`" for name, _ in ABANDONMENT_COLUMNS)
        return f"INSERT INTO {self.abandonments} ({names}) {self._abandoned_events(self.events)}"

    def abandonments_view_exists(self, existing: Mapping[str, set[str]]) -> bool:
        return ABANDONMENTS_VIEW in existing

    def upgrade(self, existing: Mapping[str, set[str]]) -> list[str]:
        """Statements bringing tables made by an earlier version up to date: the columns
        added since, given the columns each table has (:meth:`existing_columns`). Empty when
        the schema is current, so opening a store costs one query, not one ALTER per column."""
        on = self._on_cluster()
        tables: list[tuple[str, tuple[tuple[str, str, tuple[str, str] | None], ...]]] = [
            ("conversation_events", tuple((n, t, None) for n, t in EVENT_COLUMNS))
        ]
        tables.append(
            (
                "conversation_rollup",
                tuple((c.name, c.type, c.upgrade_from) for c in ROLLUP_COLUMNS),
            )
        )
        statements: list[str] = []
        for local, columns in tables:
            for table in [local, local + "_all"] if self.cluster else [local]:
                have = existing.get(table, set())
                statements.extend(
                    f"ALTER TABLE {self._table(table)}{on} ADD COLUMN IF NOT EXISTS "
                    f"`{name}` {ctype}"
                    + (f" DEFAULT {source[1]}" if source and source[0] in have else "")
                    for name, ctype, source in columns
                    if name not in have
                )
        return statements

    def view_is_current(self, existing: Mapping[str, set[str]]) -> bool:
        """Whether the view computes every rollup column (an older one is dropped and made
        again with :meth:`view_ddl`)."""
        return {c.name for c in ROLLUP_COLUMNS} <= existing.get(VIEW, set())

    def existing_columns(self) -> str:
        """``table, name`` of every column in the database; parameter ``database``."""
        return "SELECT table, name FROM system.columns WHERE database = {database:String}"

    def drop_view(self) -> str:
        return f"DROP VIEW IF EXISTS {self._table(VIEW)}{self._on_cluster()}"

    # ---- queries -----------------------------------------------------------------------------

    def conversations_in_window(self) -> str:
        """One merged row per conversation in the window, with its agent.

        Full hours come from the rollup; the partial hour at the window's start is aggregated
        from raw events (counting distinct event ids), so the window is exact to the microsecond,
        as the article's ``timestamp >= NOW() - INTERVAL`` is, without scanning the whole window.
        A conversation's ``agent`` is the agent of its first event in the window.
        Parameters: ``since`` (DateTime64), ``edge`` (the first full hour, DateTime), ``agent``
        (String, '' for all).
        """
        names = ", ".join(f"`{c.name}`" for c in ROLLUP_COLUMNS)
        states = ",\n        ".join(f"{c.from_raw} AS `{c.name}`" for c in ROLLUP_COLUMNS)
        merges = ",\n    ".join(f"{c.merge} AS `{c.name}`" for c in ROLLUP_COLUMNS if c.merged)
        return f"""SELECT *, {_WAS_ABANDONED} AS was_abandoned
FROM (
SELECT conversation_id, argMin(agent_name, agent_since) AS agent,
    {merges}
FROM (
    SELECT agent_name, conversation_id, first_seen AS agent_since, {names}
    FROM {self.rollup}
    WHERE bucket >= {{edge:DateTime('UTC')}}
    UNION ALL
    SELECT agent_name, conversation_id, min(timestamp) AS agent_since,
        {states}
    FROM {self.events}
    WHERE timestamp >= {{since:{TS_TYPE}}} AND timestamp < {{edge:DateTime('UTC')}}
    GROUP BY agent_name, conversation_id
)
GROUP BY conversation_id
)
WHERE {{agent:String}} = '' OR agent = {{agent:String}}"""

    def summary(self) -> str:
        """Everything the report counts per conversation, in one pass over the window's
        conversations, one grouping set per use:

        * section 4 counts overall (``is_total``) and per agent;
        * the survival curve's counts (``is_survival``: conversations per agent, ``turn`` and
          ``turn_abandoned``; overall is their sum);
        * the exit context's counts (``is_exit``: conversations per agent, ``turn_abandoned``
          and the :data:`_EXIT_COLUMNS`; the report keeps the abandoned ones);
        * the daily trend (``is_daily``: per UTC ``day`` of a conversation's first event in the
          window) and the satisfaction histogram (``is_bin``: per ``bin``, tenths 0..9, a score
          of 1.0 in bin 9; exact, from the ``Decimal`` score).

        Rates are rounded in Python, exactly as PostgreSQL rounds them; the Kaplan-Meier product
        is taken in Python too. Parameters those of :meth:`conversations_in_window`.
        """
        last = SATISFACTION_BINS - 1
        return f"""SELECT agent,
    grouping(agent) = 1 AND grouping(day) = 1 AND grouping(bin) = 1 AS is_total,
    grouping(turn) = 0 AS is_survival, grouping(kind) = 0 AS is_exit,
    grouping(day) = 0 AS is_daily, grouping(bin) = 0 AS is_bin,
    turn, was_abandoned AS turn_abandoned, kind, has_tool, tool, tool_failed, rephrased,
    day, bin,
    count() AS conversations,
    countIf(was_completed = 1) AS completed,
    countIf(was_abandoned = 1) AS abandoned,
    countIf(had_handoff = 1) AS handoffs,
    sum(user_messages) AS messages_total,
    sum(rephrases) AS rephrases_total,
    countIf(started_at IS NOT NULL AND completed_at IS NOT NULL) AS timed,
    sumIf(dateDiff('microsecond', started_at, completed_at),
          started_at IS NOT NULL AND completed_at IS NOT NULL) AS duration_us,
    toString(sum(satisfaction)) AS satisfaction_sum
FROM (
    SELECT *, {SURVIVAL_TURN} AS turn,
    {_EXIT_COLUMNS},
    {SATISFACTION_EXPR} AS satisfaction,
    toString(toDate(first_seen, 'UTC')) AS day,
    least({last}, toInt64(floor(satisfaction * {SATISFACTION_BINS}))) AS bin
    FROM ({self.conversations_in_window()})
)
GROUP BY GROUPING SETS (
    (agent), (), (agent, turn, was_abandoned),
    (agent, was_abandoned, kind, has_tool, tool, tool_failed, rephrased),
    (day), (bin)
)
ORDER BY is_exit, is_survival, is_daily, is_bin, is_total DESC, conversations DESC, agent, turn,
    turn_abandoned, kind, tool, tool_failed, rephrased, day, bin"""

    def drop_off(self) -> str:
        """Abandoned events per ``abandoned_at_turn``, most frequent first, top 10.

        Read from :data:`ABANDONMENTS` (the raw ``abandoned`` events, a small table), each
        once; an inferred one counts only while no later activity revoked it (the rollup's
        ``last_activity``, from the hour of the window's start on: earlier hours end before any
        abandonment read here). Parameters ``since`` and ``agent``.
        """
        return f"""SELECT a.abandoned_at_turn AS turn, count() AS count
FROM (
    SELECT event_id, conversation_id, abandoned_at_turn, abandon_inferred, timestamp
    FROM {self.abandonments}
    WHERE timestamp >= {{since:{TS_TYPE}}}
      AND ({{agent:String}} = '' OR agent_name = {{agent:String}})
    LIMIT 1 BY event_id
) AS a
LEFT JOIN (
    SELECT conversation_id, max(last_activity) AS last_activity
    FROM {self.rollup}
    WHERE bucket >= toStartOfHour({{since:{TS_TYPE}}}) AND conversation_id IN (
        SELECT conversation_id FROM {self.abandonments}
        WHERE {_INFERRED} AND timestamp >= {{since:{TS_TYPE}}}
    )
    GROUP BY conversation_id
) AS l ON a.conversation_id = l.conversation_id
WHERE NOT a.abandon_inferred OR l.last_activity IS NULL OR a.timestamp >= l.last_activity
GROUP BY turn
ORDER BY count DESC, turn ASC
LIMIT 10"""

    def compare(self, dimension: str) -> str:
        """Exact counts per value of ``dimension`` (one of :data:`COMPARE_DIMENSIONS`), largest
        group first: outcomes, user messages, and the sum and sum of squares of satisfaction
        (for its mean and interval); and, in the same pass, each group's survival counts
        (``is_survival``: conversations per ``turn`` and ``turn_abandoned``). Parameters those
        of :meth:`conversations_in_window`."""
        column = _dimension(dimension)
        return f"""SELECT value, grouping(turn) = 0 AS is_survival,
    turn, was_abandoned AS turn_abandoned,
    count() AS conversations,
    countIf(was_completed = 1) AS completed,
    countIf(was_abandoned = 1) AS abandoned,
    countIf(had_handoff = 1) AS handoffs,
    sum(user_messages) AS messages_total,
    sum(rephrases) AS rephrases_total,
    toString(sum(satisfaction)) AS satisfaction_sum,
    toString(sum(satisfaction_square)) AS satisfaction_squares
FROM (
    SELECT *, {column} AS value, {SATISFACTION_EXPR} AS satisfaction,
        {SATISFACTION_SQUARE_EXPR} AS satisfaction_square, {SURVIVAL_TURN} AS turn
    FROM ({self.conversations_in_window()})
)
GROUP BY GROUPING SETS ((value), (value, turn, was_abandoned))
ORDER BY is_survival, conversations DESC, value, turn, turn_abandoned"""

    def tool_lift(self) -> str:
        """Per tool called in the window: the conversations that called it and how many of
        them completed (the rest of the window's conversations are the "without" side), the
        ``tools`` (UInt32) called in the most conversations, from the rollup. Parameters those
        of :meth:`conversations_in_window` plus ``tools``."""
        return f"""SELECT tool, count() AS conversations, countIf(was_completed = 1) AS completed
FROM ({self.conversations_in_window()})
ARRAY JOIN tool_names AS tool
GROUP BY tool
ORDER BY conversations DESC, tool ASC
LIMIT {{tools:UInt32}}"""

    def conversation_list(self, order: str) -> str:
        """The window's conversations matching ``outcome`` (String, '' for any),
        ``rephrased`` (UInt8: 1 keeps those with a rephrase), ``min_turns`` (Int64, user
        messages), ordered by ``order`` (one of :data:`CONVERSATION_ORDERS`), the first
        ``limit`` (UInt32). Satisfaction is the exact decimal, as text; times in microseconds.
        Parameters those of :meth:`conversations_in_window` plus these."""
        order_by = _CONVERSATION_ORDER_BY.get(order)
        if order_by is None:
            raise ValueError(f"not a conversations order: {order!r:.80}")
        return f"""SELECT conversation_id, agent, outcome, turns, toString(score) AS satisfaction,
    rephrase_count AS rephrases, handed_off,
    toUnixTimestamp64Micro(activity_at) AS last_activity_us,
    toUnixTimestamp64Micro(began_at) AS started_at_us
FROM (
    SELECT conversation_id, agent, {_OUTCOME} AS outcome, toInt64(user_messages) AS turns,
        {SATISFACTION_EXPR} AS score, toInt64(rephrases) AS rephrase_count,
        had_handoff AS handed_off,
        ifNull(last_activity, last_seen) AS activity_at,
        ifNull(started_at, first_seen) AS began_at
    FROM ({self.conversations_in_window()})
)
WHERE ({{outcome:String}} = '' OR outcome = {{outcome:String}})
  AND ({{rephrased:UInt8}} = 0 OR rephrase_count > 0)
  AND turns >= {{min_turns:Int64}}
ORDER BY {order_by}
LIMIT {{limit:UInt32}}"""

    def idle_conversations(self) -> str:
        """Conversations silent since ``idle_before`` with no outcome: abandonment candidates.

        A handoff counts as an outcome (a human took over; silence afterwards is not the user
        leaving). Parameters: those of :meth:`conversations_in_window` plus ``idle_before``
        (DateTime64) and ``limit`` (UInt32).
        """
        return f"""SELECT agent AS agent_name, conversation_id, user_id,
    toUnixTimestamp64Micro(last_activity) AS last_activity_us,
    last_user_turn, user_messages
FROM ({self.conversations_in_window()})
WHERE last_activity IS NOT NULL AND last_activity < {{idle_before:{TS_TYPE}}}
  AND was_completed = 0 AND was_abandoned = 0 AND had_handoff = 0
ORDER BY last_activity
LIMIT {{limit:UInt32}}"""

    def conversation_events(self) -> str:
        """One conversation's events, oldest first, each event once. Parameter ``cid``."""
        return f"""SELECT event_id, event_type, toUnixTimestamp64Micro(timestamp) AS timestamp_us,
    user_id, agent_name, agent_version, prompt_version, request_model, response_model, channel,
    turn, message_length, response_length, tool_name, error_type, handoff_reason,
    feedback_rating, feedback_score, total_turns, abandoned_at_turn, abandon_inferred, rephrase,
    rephrase_similarity, service_name, trace_id, span_id, attributes, derived,
    evaluation_name, evaluation_score, evaluation_label
FROM {self.events}
WHERE conversation_id = {{cid:String}}
ORDER BY timestamp, event_id
LIMIT 1 BY event_id"""

    def evaluations(self) -> str:
        """Evaluation results in the window, each once, counted per (name, agent, agent version,
        label), with the exact sum of their scores (``Decimal`` arithmetic, so the same data
        always gives the same mean). Parameters ``since`` and ``agent``."""
        return f"""SELECT evaluation_name AS name, agent_name AS agent, agent_version,
    evaluation_label AS label,
    count() AS evaluations, count(evaluation_score) AS scored,
    toString(sum(toDecimal128(evaluation_score, 9))) AS score_sum
FROM (
    SELECT evaluation_name, agent_name, agent_version, evaluation_label, evaluation_score
    FROM {self.events}
    WHERE {_EVALUATION} AND timestamp >= {{since:{TS_TYPE}}}
      AND ({{agent:String}} = '' OR agent_name = {{agent:String}})
    LIMIT 1 BY event_id
)
GROUP BY name, agent, agent_version, label
ORDER BY name, agent, agent_version, label"""

    def count_events(self) -> str:
        """Distinct stored events (duplicates awaiting a merge count once)."""
        return f"SELECT uniqExact(event_id) AS events FROM {self.events}"
