"""The bulk import's SQL: ClickHouse reads article-shaped JSON lines itself.

Python parses and reshapes about 20,000 records a second; the engine, hundreds of thousands.
Each line is parsed in SQL into an events row and flagged ``fast`` when the SQL reading is
certainly the one :func:`~..importer.row_from_record` gives: every value of a type whose
conversion the SQL repeats exactly (strings, integers, booleans; timestamps as
``YYYY-MM-DD[T ]HH:MM:SS[.fff|.ffffff]`` with an optional ``Z`` or ``±HH:MM``, or integer epoch
seconds). Every other line is handed to Python (a blank one it skips), which either makes the row
(then staged beside the engine's) or reports the line as bad: the engine never decides that a
line is bad, so error messages and edge cases stay Python's.

Everything here is generated from the contract's own tables (:mod:`semconv`, the row converters'
:data:`~..rows.FIELD_CONVERSIONS`), so a keyword or field added there is read here too. Only
those constants are formatted into SQL, quoted by :func:`_literal`; values are query parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from opentelemetry.exporter.conversation_analytics.rows import (
    FIELD_CONVERSIONS,
    MAX_EVALUATION_SCORE,
    MAX_ID_LENGTH,
    MAX_METADATA_ENTRIES,
    MAX_STRING_LENGTH,
    MAX_TIMESTAMP_NS,
    UNKNOWN_AGENT,
)
from opentelemetry.exporter.conversation_analytics.store.sql import (
    EVENT_COLUMNS,
    EVENTS_INSERT_SETTINGS,
    check_identifier,
    settings_clause,
)
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

#: Record-level attributes: the record's own fields set them, a metadata key of that name is
#: ignored (on every import path).
RECORD_ATTRIBUTES: Final = frozenset({semconv.CONVERSATION_ID, semconv.EVENT_ID, semconv.USER_ID})
#: Extra columns of a stage table, before the event columns.
STAGE_COLUMNS: Final = (("line_no", "UInt64"), ("fast", "Bool"))
STAGE_COLUMN_NAMES: Final = tuple(name for name, _ in STAGE_COLUMNS)

_SAFE_LITERAL = re.compile(r"^[A-Za-z0-9_.:\- ]*$")


def _literal(value: str) -> str:
    """A contract constant as a SQL string literal (only plain characters are ever formatted)."""
    if not _SAFE_LITERAL.match(value):
        raise ValueError(f"not a plain constant: {value!r:.80}")
    return f"'{value}'"


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def _kind(raw: str) -> str:
    """A JSON value's type from its raw text's first character ('' when absent): ClickHouse's raw
    text normalises numbers (``3.0`` reads ``3``), so integers and decimals are both ``number``."""
    first = f"substring({raw}, 1, 1)"
    return (
        f"multiIf({raw} = '', '', {first} = '\"', 'string', {first} IN ('t', 'f'), 'bool', "
        f"{first} = 'n', 'null', {first} IN ('{{', '['), 'nested', 'number')"
    )


def _string(raw: str) -> str:
    """A JSON string's value from its raw text: without a backslash the text between the quotes
    is the value (JSON allows no raw control characters), a cut cheaper than parsing it."""
    return (
        f"if(position({raw}, '\\\\') = 0, substring({raw}, 2, length({raw}) - 2), "
        f"JSONExtractString({raw}))"
    )


def _text(kind: str, raw: str) -> str:
    """Python's ``_text(value)`` of a string or boolean JSON value (``str()`` of it, capped)."""
    return (
        f"multiIf({kind} = 'string', substringUTF8({_string(raw)}, 1, "
        f"{MAX_STRING_LENGTH}), {kind} = 'bool', if({raw} = 'true', 'True', 'False'), '')"
    )


def _conversion(conversion: str, kind: str, raw: str) -> str:
    """One metadata value read for a field by ``conversion``, when :data:`_READABLE` says the SQL
    reads its kind exactly as Python does."""
    if conversion == "text":
        return _text(kind, raw)
    if conversion == "int":
        number = f"toInt64OrNull({raw})"
        return (
            f"if({kind} = 'number' AND {number} BETWEEN {-(2**31)} AND {2**31 - 1}, "
            f"toInt32({number}), NULL)"
        )
    if conversion in ("float", "score"):
        number = f"toFloat64OrNull({raw})"
        bound = f" AND abs({number}) <= {MAX_EVALUATION_SCORE:.0f}" if conversion == "score" else ""
        return f"if({kind} = 'number' AND isFinite({number}){bound}, {number}, NULL)"
    if conversion == "bool":
        return (
            f"multiIf({kind} = 'bool', {raw} = 'true', {kind} = 'number', "
            f"toFloat64OrZero({raw}) != 0, false)"
        )
    raise ValueError(f"no SQL for conversion {conversion!r}")  # pragma: no cover - import time


#: The value kinds each conversion reads exactly (metadata entries not naming a field are text).
_READABLE: Final = {"text": ("string", "bool"), "number": ("number", "bool")}


def _readable(attribute: str, kind: str) -> str:
    """Whether every metadata entry's value is of a kind its conversion reads exactly: one pass
    over the entries (``attribute``, ``kind``: the entry's parts)."""
    numeric = sorted(a for a, (_, c) in FIELD_CONVERSIONS.items() if c != "text")
    return (
        f"if(has({_list(numeric)}, {attribute}), {kind} IN {_READABLE['number']}, "
        f"{kind} IN {_READABLE['text']})"
    )


def _metadata_attribute(key: str, kind: str) -> str:
    """:func:`semconv.metadata_attribute` in SQL ('' for content keywords: dropped), as one
    lookup: every key with a fixed meaning, then ``model``, then the metadata prefix."""
    known: dict[str, str] = {name: name for name in semconv.CONTRACT_ATTRIBUTES}
    known.update(dict.fromkeys(semconv.CONTENT_KEYWORDS, ""))
    known.update(semconv.KEYWORD_ATTRIBUTES)
    known.pop(semconv.MODEL_KEYWORD, None)
    prefix = _literal(semconv.METADATA_PREFIX)
    return (
        f"multiIf({key} = {_literal(semconv.MODEL_KEYWORD)}, "
        f"if({kind} = {_literal(ConversationEvent.AGENT_RESPONSE.value)}, "
        f"{_literal(semconv.RESPONSE_MODEL)}, {_literal(semconv.REQUEST_MODEL)}), "
        f"startsWith({key}, {prefix}), {key}, "
        f"transform({key}, {_list(known)}, {_list(known.values())}, concat({prefix}, {key})))"
    )


_TIMESTAMP_SHAPE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\\.[0-9]{3}|\\.[0-9]{6})?(Z|z|[+-][0-9]{2}:[0-9]{2})?$"
)
_MAX_EPOCH_SECONDS = MAX_TIMESTAMP_NS // 1_000_000_000


def _timestamp_levels(kind: str, raw: str) -> list[list[str]]:
    """Levels computing ``ts_us``: microseconds since the epoch of the ``timestamp`` text or
    integer (NULL when it is not one this SQL reads exactly as Python's
    ``datetime.fromisoformat`` does, on 3.10 as on 3.13). The text's shape is checked first, so
    its fields sit at fixed positions; it needs ``ts_text``."""

    def at(start: int, length: int) -> str:
        return f"toInt64OrZero(substring(ts_text, {start}, {length}))"

    parts = [
        f"match(ts_text, '{_TIMESTAMP_SHAPE}') AS ts_shape",
        f"{at(1, 4)} AS ts_year",
        f"{at(6, 2)} AS ts_month",
        f"{at(9, 2)} AS ts_day",
        f"{at(12, 2)} * 3600 + {at(15, 2)} * 60 + {at(18, 2)} AS ts_clock",
        f"{at(12, 2)} <= 23 AND {at(15, 2)} <= 59 AND {at(18, 2)} <= 59 AS ts_clock_ok",
        "multiIf(endsWith(ts_text, 'Z') OR endsWith(ts_text, 'z'), 'Z', "
        "substring(ts_text, -6, 1) IN ('+', '-'), substring(ts_text, -6), '') AS ts_zone",
    ]
    zone_hours = "toInt64OrZero(substring(ts_zone, 2, 2))"
    zone_minutes = "toInt64OrZero(substring(ts_zone, 5, 2))"
    fraction = "substring(ts_text, 20, length(ts_text) - 19 - length(ts_zone))"
    year = "greatest(1969, least(2262, ts_year))"
    month = "greatest(1, least(12, ts_month))"
    day = "greatest(1, least(28, ts_day))"  # makeDate32 of a valid day; the rest added
    fields = [
        f"if(length(ts_zone) = 6, if(startsWith(ts_zone, '-'), -1, 1) "
        f"* ({zone_hours} * 3600 + {zone_minutes} * 60), 0) AS ts_offset",
        f"length(ts_zone) != 6 OR ({zone_hours} <= 23 AND {zone_minutes} <= 59) AS ts_zone_ok",
        f"if(length({fraction}) = 0, 0, toInt64OrZero(substring({fraction}, 2)) "
        f"* if(length({fraction}) = 4, 1000, 1)) AS ts_fraction_us",
        f"ts_year BETWEEN 1969 AND 2262 AND ts_month BETWEEN 1 AND 12 AND ts_day >= 1 "
        f"AND ts_day <= toDayOfMonth(toLastDayOfMonth(makeDate32({year}, {month}, 1))) "
        "AS ts_date_ok",
        f"toInt64(makeDate32({year}, {month}, {day})) + ts_day - {day} AS ts_days",
    ]
    micros = [
        "(ts_days * 86400 + ts_clock - ts_offset) * 1000000 + ts_fraction_us AS ts_text_us",
        f"toInt64OrNull({raw}) AS ts_integer",
    ]
    text_ok = (
        f"ts_shape AND ts_clock_ok AND ts_zone_ok AND ts_date_ok AND ts_text_us >= 0 "
        f"AND ts_text_us < {MAX_TIMESTAMP_NS // 1000}"
    )
    integer_ok = f"ts_integer >= 0 AND ts_integer < {_MAX_EPOCH_SECONDS}"
    result = (
        f"multiIf({kind} = 'string' AND {text_ok}, ts_text_us, "
        f"{kind} = 'number' AND {integer_ok}, ts_integer * 1000000, NULL) AS ts_us"
    )
    return [parts, fields, micros, [result]]


def _event_types() -> tuple[list[str], list[str]]:
    names = [member.value for member in ConversationEvent]
    names += [member.event_name for member in ConversationEvent]
    values = [member.value for member in ConversationEvent] * 2
    return names, values


#: Attributes a metadata key can name (the rest of the row's fields keep their empty value).
_FROM_METADATA: Final = (
    semconv.CONTRACT_ATTRIBUTES
    | set(semconv.KEYWORD_ATTRIBUTES.values())
    | {semconv.REQUEST_MODEL, semconv.RESPONSE_MODEL}
) - RECORD_ATTRIBUTES
_RECORD_KEYS: Final = ("id", "conversation_id", "user_id", "event_type", "timestamp", "metadata")


def _levels(source: str, levels: list[list[str]], final: list[str]) -> str:
    """Nested SELECTs, each adding its columns to the one below: a column computed once in its
    level, where aliases in one SELECT would be expanded (and computed) at every use."""
    sql = source
    for level in levels:
        sql = "SELECT *,\n    " + ",\n    ".join(level) + f"\nFROM ({sql})"
    return "SELECT " + ",\n    ".join(final) + f"\nFROM ({sql})"


def parse_lines_sql(source: str, service_name: str) -> str:
    """A SELECT of the stage's columns (:func:`stage_ddl`) from ``source``, a subquery yielding
    ``line_no`` and ``line``. Parameters: ``pseudonymize`` (UInt8), ``inner_pad`` and
    ``outer_pad`` (String, hex: the HMAC key's pads; unused when not pseudonymising)."""
    names, values = _event_types()
    columns: dict[str, str] = {}
    entries: list[str] = []
    for attribute, (field_name, conversion) in FIELD_CONVERSIONS.items():
        if attribute in _FROM_METADATA:
            entry = f"e_{field_name}"
            entries.append(f"md[indexOf(md.1, {_literal(attribute)})] AS {entry}")
            value = _conversion(conversion, f"{entry}.2", f"{entry}.3")
        else:  # no metadata key reaches it: the column's empty value
            value = _conversion(conversion, "''", "''")
        if conversion == "text" and field_name == "agent_name":  # the others default to ''
            value = f"if(({value}) = '', {_literal(service_name or UNKNOWN_AGENT)}, {value})"
        columns[field_name] = value
    columns["rephrase"] = (
        f"if(has(md.1, {_literal(semconv.REPHRASE)}), {columns['rephrase']}, "
        f"ifNull(({columns['rephrase_similarity']}) >= {semconv.REPHRASE_THRESHOLD}, false))"
    )
    extra_key = (
        f"substringUTF8(if(startsWith(x.1, {_literal(semconv.METADATA_PREFIX)}), "
        f"substring(x.1, {len(semconv.METADATA_PREFIX) + 1}), x.1), 1, {MAX_STRING_LENGTH})"
    )
    hashed = (
        "substring(lower(hex(SHA256(concat(unhex({outer_pad:String}), "
        "SHA256(concat(unhex({inner_pad:String}), user_text)))))), 1, 32)"
    )
    columns.update(
        event_id="event_id_text",
        event_type="event_type_value",
        conversation_id="conversation_text",
        timestamp="fromUnixTimestamp64Micro(ifNull(ts_us, 0), 'UTC')",
        user_id=(
            "if(user_text = '', '', if({pseudonymize:UInt8} = 1, "
            f"{hashed}, substringUTF8(user_text, 1, {MAX_STRING_LENGTH})))"
        ),
        service_name=_literal(service_name),
        trace_id="''",
        span_id="''",
        attributes="mapFromArrays(extra_keys, extra_values)",
    )
    fast = " AND ".join(
        [
            "valid",
            "startsWith(trimLeft(doc), '{')",
            "length(top.1) = length(arrayDistinct(top.1))",
            f"k_id = 'string' AND event_id_text != '' "
            f"AND lengthUTF8(event_id_text) <= {MAX_ID_LENGTH}",
            f"k_conversation_id = 'string' AND conversation_text != '' "
            f"AND lengthUTF8(conversation_text) <= {MAX_ID_LENGTH}",
            "event_type_value != ''",
            "ts_us IS NOT NULL",
            "k_user_id IN ('', 'null', 'string')",
            "(k_metadata IN ('', 'null') OR startsWith(r_metadata, '{'))",
            # A key named twice is Python's: its parser keeps the last value, null or not.
            "length(md_raw.1) = length(arrayDistinct(md_raw.1))",
            "length(md.1) = length(arrayDistinct(md.1))",
            f"length(extras) <= {MAX_METADATA_ENTRIES}",
            f"arrayAll(x -> {_readable('x.1', 'x.2')}, md)",
            "length(extra_keys) = length(arrayDistinct(extra_keys))",
        ]
    )
    ignored = _list(sorted(RECORD_ATTRIBUTES))
    decoded = [
        f"if(k_id = 'string', {_string('r_id')}, '') AS event_id_text",
        f"if(k_conversation_id = 'string', {_string('r_conversation_id')}, '') "
        "AS conversation_text",
        f"if(k_user_id = 'string', {_string('r_user_id')}, '') AS user_text",
        f"transform(if(k_event_type = 'string', {_string('r_event_type')}, ''), "
        f"{_list(names)}, {_list(values)}, '') AS event_type_value",
        f"if(k_timestamp = 'string', {_string('r_timestamp')}, '') AS ts_text",
        "if(startsWith(r_metadata, '{'), JSONExtractKeysAndValuesRaw(r_metadata), []) AS md_raw",
    ]
    levels = [
        [
            f"isValidJSON(line) AND NOT ({_MAY_NEED_PYTHON} AND match(line, '{_PYTHON_READS}')) "
            "AS valid",
        ],
        ["if(valid, line, '{}') AS doc"],
        ["JSONExtractKeysAndValuesRaw(doc) AS top"],
        [f"top.2[indexOf(top.1, '{key}')] AS r_{key}" for key in _RECORD_KEYS],
        [f"{_kind(f'r_{key}')} AS k_{key}" for key in _RECORD_KEYS],
        decoded,
        *_timestamp_levels("k_timestamp", "r_timestamp"),
        [
            # Null values dropped first (a valid document's raw value starting with ``n`` is
            # ``null``), so only the entries that are kept are mapped.
            f"arrayFilter(x -> x.1 != '' AND NOT has({ignored}, x.1), "
            f"arrayMap(x -> ({_metadata_attribute('x.1', 'event_type_value')}, "
            f"{_kind('x.2')}, x.2), arrayFilter(x -> x.2 != 'null', md_raw))) AS md",
        ],
        [f"arrayFilter(x -> NOT has({_list(sorted(FIELD_CONVERSIONS))}, x.1), md) AS extras"],
        [
            f"arrayMap(x -> {extra_key}, extras) AS extra_keys",
            f"arrayMap(x -> {_text('x.2', 'x.3')}, extras) AS extra_values",
            *entries,
        ],
    ]
    final = ["line_no", f"({fast}) AS fast"]
    final += [f"{columns[name]} AS `{name}`" for name, _ in EVENT_COLUMNS]
    return _levels(f"SELECT line_no, line FROM ({source})", levels, final)


#: What only Python reads right: a ``\\uD800``-``\\uDFFF`` escape (Python keeps a lone
#: surrogate, ClickHouse does not), and numbers of 19 digits and more (ClickHouse reads them as
#: text; a value follows ``:``, ``,`` or ``[``, so long digit runs inside strings stay fast).
#: ``isValidJSON`` already refuses invalid UTF-8 and raw control characters, as Python's
#: strict parser does.
_PYTHON_READS = r"\\\\u[dD][89abAB]|[:,\\[][[:space:]]*-?[0-9]{19}"
#: Whether a line can match :data:`_PYTHON_READS` at all: it holds ``\\u``, or a run of 19
#: digits (found as 19 zeros once every digit reads ``0``). Substring searches, about half the
#: cost of the regular expression, which then runs only on the lines they let through.
_MAY_NEED_PYTHON = (
    "(position(line, '\\\\u') > 0 "
    f"OR position(translate(line, '123456789', '000000000'), '{'0' * 19}') > 0)"
)


def stage_table(database: str, token: str) -> str:
    """The name of one import's stage (``token``: hex, so concurrent imports never share one)."""
    return f"`{check_identifier(database)}`.`{check_identifier('import_stage_' + token)}`"


def stage_ddl(stage: str) -> str:
    """A stage: one chunk's lines parsed, in memory, before they become events."""
    columns = ",\n    ".join(
        f"`{name}` {ctype}" for name, ctype in (*STAGE_COLUMNS, *EVENT_COLUMNS)
    )
    return f"CREATE TABLE IF NOT EXISTS {stage} (\n    {columns}\n) ENGINE = Memory"


def stage_insert_sql(stage: str, source: str, service_name: str) -> str:
    """Parse the lines of ``source`` into the stage (parameters: :func:`parse_lines_sql`'s).

    ``query_plan_merge_expressions = 0`` keeps each level's columns computed once: merged, the
    levels' expressions would be expanded at every use."""
    return (
        f"INSERT INTO {stage}\n{parse_lines_sql(source, service_name)}\n"
        "SETTINGS query_plan_merge_expressions = 0"
    )


def slow_lines_sql(stage: str) -> str:
    """The line numbers of the stage's lines Python must read, in order."""
    return f"SELECT line_no FROM {stage} WHERE NOT fast ORDER BY line_no"


def stage_counts_sql(stage: str) -> str:
    """The stage's lines, and those the engine read."""
    return f"SELECT count() AS lines, countIf(fast) AS fast FROM {stage}"


def events_from_stage_sql(stage: str, events: str, on_cluster: bool, threads: int = 1) -> str:
    """Move the stage's rows into the events table: each event id once (its first line), and
    none already stored in the chunk's time range, so a re-import stores and rolls up nothing
    twice, however the file is cut. ``threads``: how many insert threads may write it (the
    events table and its rollup view are most of an import's time)."""
    columns = ", ".join(f"`{name}`" for name, _ in EVENT_COLUMNS)
    in_ = "GLOBAL NOT IN" if on_cluster else "NOT IN"
    return f"""INSERT INTO {events} ({columns})
SELECT {columns}
FROM {stage}
WHERE fast
    AND line_no IN (SELECT min(line_no) FROM {stage} WHERE fast GROUP BY event_id)
    AND event_id {in_} (
        SELECT event_id FROM {events}
        WHERE timestamp >= (SELECT min(timestamp) FROM {stage} WHERE fast)
          AND timestamp <= (SELECT max(timestamp) FROM {stage} WHERE fast)
    )
SETTINGS max_insert_threads = {max(1, int(threads))}, {settings_clause(EVENTS_INSERT_SETTINGS)}"""


def clear_stage_sql(stage: str) -> str:
    return f"TRUNCATE TABLE {stage}"


def drop_stage_sql(stage: str) -> str:
    return f"DROP TABLE IF EXISTS {stage}"
