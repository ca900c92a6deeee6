"""Report latency: ``report(7)`` over 1M and 10M stored events, rollup vs a naive full scan.

What it measures
----------------
Events are generated inside ClickHouse (chDB) by ``INSERT INTO <events table> ... SELECT ...
FROM numbers(...)``: a real insert into the real raw events table, so the materialized view
maintains the per-conversation rollup exactly as it does for the exporter's inserts. Each
conversation is realistic: ``started``, then 1-6 turns of ``user_message`` / ``agent_response``
(a ``tool_called`` in ~40% of conversations, rephrases sometimes), a ``handoff_requested`` in ~8%,
``feedback_received`` in ~30%, and ends ``completed`` (~55-80% by agent), ``abandoned`` with
``abandoned_at_turn`` (some flagged inferred), or not yet (still open); ~9-10 events each, five
agents, spread uniformly over the last ``--spread-days`` (default 7.25, so the 7-day window cuts
through conversations at its start and the exact-window logic is exercised).

For each size in ``--events`` (default 1,000,000 and 10,000,000; the store grows from one size
to the next, same distribution) it times, ``--repeats`` times each, interleaved:

* **rollup** -- ``report(7, now=NOW)``: the product's three queries (summary, drop-off,
  per-agent summary) over the materialized rollup (plus raw events of the window's partial
  first hour);
* **naive** -- the seed article's SQL shape translated to ClickHouse, straight over the raw
  events: ``WHERE timestamp >= since GROUP BY conversation_id`` then the section 4 aggregates,
  the same three result sets (overall, per agent, drop-off). Exact counts go through the
  product's own rounding (``analytics.summarize``), so the two are comparable digit for digit.

It prints the median and min latency of both and the rollup's speedup, and cross-checks that the
rollup's report equals the naive full scan's (every field, overall, per agent and drop-off).

Target (SPEC section 7): the report over 10M events in < 1 s on a 2-core machine. chDB uses all
cores here (no pinning: the target is per machine). No wall-clock asserts.

Run: ``python benchmarks/bench_report.py`` (``--events 1000000`` for a quick run;
``--dir PATH`` keeps the generated store for a later ``--dir PATH --reuse``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import _util
from opentelemetry.exporter.conversation_analytics import ConversationStore, Report, open_store
from opentelemetry.exporter.conversation_analytics.analytics import summarize
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store.base import format_time, window_params
from opentelemetry.exporter.conversation_analytics.store.sql import EVENT_COLUMN_NAMES
from opentelemetry.instrumentation.conversation.semconv import (
    RATING_NEGATIVE,
    RATING_POSITIVE,
    ConversationEvent,
)

TARGET_SECONDS = 1.0
DAYS = 7
AGENTS = ("support-bot", "research-assistant", "billing-bot", "onboarding-guide", "sales-agent")
MODELS = ("gpt-4o-mini", "claude-haiku", "gpt-4o")
TOOLS = ("search_kb", "lookup_order", "create_ticket", "web_search")
CHANNELS = ("web", "slack", "voice", "api")
#: Conversations per INSERT ... SELECT (about 1M events).
CHUNK_CONVERSATIONS = 100_000
MEAN_EVENTS_GUESS = 9.5
#: Where --dir/--reuse remembers the generator's progress and "now" (not a product table).
META_TABLE = "`bench_report_meta`.`generator`"

E = ConversationEvent


def _sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def generation_sql(events_table: str, seed: int, spread_days: float) -> str:
    """An INSERT ... SELECT producing realistic conversations ``{first}`` .. ``{first}+{count}``.

    Parameters: ``first`` and ``count`` (UInt64, conversation numbers) and ``now_us`` (Int64,
    the run's fixed "now" in epoch microseconds). Only the generator's constants (event names,
    agent names) are formatted in; they are this file's literals.
    """
    spread_us = int(spread_days * 86_400 * 1_000_000)
    tuple_array = "Array(Tuple(String, UInt32))"
    none = f"CAST([], '{tuple_array}')"

    def rnd(salt: int, *extra: str) -> str:
        """A uniform [0, 1) number from the conversation number (and more keys), deterministic."""
        keys = ", ".join(("n", *extra, str(salt), str(seed)))
        return f"(sipHash64({keys}) % 1000000) / 1000000.0"

    columns = ", ".join(EVENT_COLUMN_NAMES)
    return f"""INSERT INTO {events_table} ({columns})
SELECT
    lower(hex(sipHash128(n, i, {seed}))) AS event_id,
    ev.1 AS event_type,
    conversation_id,
    fromUnixTimestamp64Micro(start_us + toInt64(i - 1) * step_us + toInt64(i * 1234), 'UTC')
        AS timestamp,
    user_id,
    agent_name,
    '1.0' AS agent_version,
    prompt_version,
    if(ev.1 = '{E.USER_MESSAGE.value}', model, '') AS request_model,
    if(ev.1 = '{E.AGENT_RESPONSE.value}', model, '') AS response_model,
    if(ev.1 = '{E.STARTED.value}', channel, '') AS channel,
    if(ev.1 IN ('{E.USER_MESSAGE.value}', '{E.AGENT_RESPONSE.value}', '{E.TOOL_CALLED.value}',
                '{E.HANDOFF_REQUESTED.value}'), toInt32(ev.2), NULL) AS turn,
    if(ev.1 = '{E.USER_MESSAGE.value}', toInt32(8 + sipHash64(n, i, 11) % 400), NULL)
        AS message_length,
    if(ev.1 = '{E.AGENT_RESPONSE.value}', toInt32(40 + sipHash64(n, i, 12) % 1500), NULL)
        AS response_length,
    if(ev.1 = '{E.TOOL_CALLED.value}', {_sql_list(TOOLS)}[1 + sipHash64(n, 13) % {len(TOOLS)}],
       '') AS tool_name,
    if(ev.1 = '{E.TOOL_CALLED.value}' AND {rnd(14)} < 0.08, 'TimeoutError', '') AS error_type,
    if(ev.1 = '{E.HANDOFF_REQUESTED.value}', 'user asked for a human', '') AS handoff_reason,
    if(ev.1 = '{E.FEEDBACK_RECEIVED.value}', rating, '') AS feedback_rating,
    CAST(NULL, 'Nullable(Float64)') AS feedback_score,
    if(ev.1 = '{E.COMPLETED.value}', toInt32(ev.2), NULL) AS total_turns,
    if(ev.1 = '{E.ABANDONED.value}', toInt32(ev.2), NULL) AS abandoned_at_turn,
    ev.1 = '{E.ABANDONED.value}' AND {rnd(15)} < 0.5 AS abandon_inferred,
    ev.1 = '{E.USER_MESSAGE.value}' AND ev.2 > 1 AND {rnd(16, "i")} < 0.12 AS rephrase,
    if(ev.1 = '{E.USER_MESSAGE.value}' AND ev.2 > 1,
       if(rephrase, 0.9, 0.3), NULL) AS rephrase_similarity,
    'bench-fleet' AS service_name,
    lower(hex(sipHash128(n, {seed}, 'trace'))) AS trace_id,
    substring(lower(hex(sipHash128(n, ev.2, {seed}, 'span'))), 1, 16) AS span_id,
    map() AS attributes,
    false AS derived,
    '' AS evaluation_name,
    CAST(NULL, 'Nullable(Float64)') AS evaluation_score,
    '' AS evaluation_label
FROM (
    SELECT
        n, conversation_id, user_id, agent_name, prompt_version, model, channel, rating,
        start_us, step_us, evs
    FROM (
        SELECT
            number AS n,
            toUInt32(sipHash64(n, 1, {seed}) % {len(AGENTS)}) AS agent_index,
            {_sql_list(AGENTS)}[1 + agent_index] AS agent_name,
            concat('conv-', lower(hex(sipHash64(n, {seed}))), '-', toString(n))
                AS conversation_id,
            lower(hex(sipHash128('user', n % 50000, {seed}))) AS user_id,
            if({rnd(2)} < 0.5, 'v1', 'v2') AS prompt_version,
            {_sql_list(MODELS)}[1 + sipHash64(n, 3) % {len(MODELS)}] AS model,
            {_sql_list(CHANNELS)}[1 + sipHash64(n, 4) % {len(CHANNELS)}] AS channel,
            toUInt32(1 + sipHash64(n, 5, {seed}) % 6) AS k,
            if({rnd(6)} < 0.4, toUInt32(1 + sipHash64(n, 7) % k), toUInt32(0)) AS tool_turn,
            {rnd(8)} < 0.08 AS handoff,
            {rnd(9)} < 0.3 AS feedback,
            if({rnd(10)} < 0.75, '{RATING_POSITIVE}', '{RATING_NEGATIVE}') AS rating,
            {rnd(17)} AS outcome,
            0.55 + 0.06 * agent_index AS completes,
            {{now_us:Int64}} - 3600000000 - toInt64({rnd(18)} * {spread_us}) AS start_us,
            toInt64(5 + sipHash64(n, 19) % 90) * 1000000 AS step_us,
            arrayConcat(
                [('{E.STARTED.value}', toUInt32(0))],
                arrayFlatten(arrayMap(t -> if(t = tool_turn,
                    [('{E.USER_MESSAGE.value}', toUInt32(t)),
                     ('{E.TOOL_CALLED.value}', toUInt32(t)),
                     ('{E.AGENT_RESPONSE.value}', toUInt32(t))],
                    [('{E.USER_MESSAGE.value}', toUInt32(t)),
                     ('{E.AGENT_RESPONSE.value}', toUInt32(t))]), range(1, k + 1))),
                if(handoff, [('{E.HANDOFF_REQUESTED.value}', k)], {none}),
                if(feedback, [('{E.FEEDBACK_RECEIVED.value}', toUInt32(0))], {none}),
                multiIf(outcome < completes, [('{E.COMPLETED.value}', k)],
                        outcome < completes + 0.25, [('{E.ABANDONED.value}', k)],
                        {none})
            ) AS evs
        FROM numbers({{first:UInt64}}, {{count:UInt64}})
    )
)
ARRAY JOIN evs AS ev, arrayEnumerate(evs) AS i"""


def _is(kind: ConversationEvent) -> str:
    return f"event_type = '{kind.value}'"


#: Per-conversation aggregates of raw events (the article's CTE, in ClickHouse).
_PER_CONVERSATION = f"""minIfOrNull(timestamp, {_is(E.STARTED)}) AS started_at,
        maxIfOrNull(timestamp, {_is(E.COMPLETED)}) AS completed_at,
        toUInt8(countIf({_is(E.COMPLETED)}) > 0) AS was_completed,
        toUInt8(countIf({_is(E.ABANDONED)}) > 0) AS was_abandoned,
        toUInt8(countIf({_is(E.HANDOFF_REQUESTED)}) > 0) AS had_handoff,
        countIf({_is(E.USER_MESSAGE)}) AS user_messages,
        countIf({_is(E.USER_MESSAGE)} AND rephrase) AS rephrases,
        countIf({_is(E.FEEDBACK_RECEIVED)} AND feedback_rating = '{RATING_POSITIVE}') AS positive,
        countIf({_is(E.FEEDBACK_RECEIVED)} AND feedback_rating = '{RATING_NEGATIVE}') AS negative"""


def _summary_sql(agent: str, per_conversation: str, group_by: str) -> str:
    """Section 4 sums over per-conversation rows; satisfaction written out independently of the
    product's SQL (explicit feedback; one implicit outcome signal; one for length; else 0.5)."""
    return f"""SELECT {agent} AS agent,
    count() AS conversations,
    countIf(was_completed = 1) AS completed,
    countIf(was_abandoned = 1) AS abandoned,
    countIf(had_handoff = 1) AS handoffs,
    sum(user_messages) AS messages_total,
    sum(rephrases) AS rephrases_total,
    countIf(started_at IS NOT NULL AND completed_at IS NOT NULL) AS timed,
    sumIf(dateDiff('microsecond', started_at, completed_at),
          started_at IS NOT NULL AND completed_at IS NOT NULL) AS duration_us,
    sum(if(signals = 0, 0.5, (positive + implicit + length_signal) / signals))
        AS satisfaction_sum
FROM (
    SELECT *,
        multiIf(was_completed AND user_messages <= 3, 0.9, had_handoff, 0.3,
                NOT was_completed, 0.1, NULL) AS implicit_or_null,
        if(user_messages > 2, greatest(0.0, 0.8 - 0.1 * greatest(0, toInt64(user_messages) - 3)),
           NULL) AS length_or_null,
        toFloat64(ifNull(implicit_or_null, 0.0)) AS implicit,
        toFloat64(ifNull(length_or_null, 0.0)) AS length_signal,
        positive + negative + (implicit_or_null IS NOT NULL) + (length_or_null IS NOT NULL)
            AS signals
    FROM ({per_conversation})
)
GROUP BY {group_by}
ORDER BY conversations DESC, agent"""


def naive_sql(events_table: str, by_agent: bool) -> str:
    """The article's report, as ClickHouse over raw events: one full scan of the window.

    Per conversation (``GROUP BY conversation_id``; per agent and conversation when
    ``by_agent``), then the section 4 sums. Parameter ``since`` (DateTime64(6)).
    """
    keys = "agent_name, conversation_id" if by_agent else "conversation_id"
    per_conversation = f"""SELECT {keys},
        {_PER_CONVERSATION}
    FROM {events_table}
    WHERE timestamp >= {{since:DateTime64(6, 'UTC')}}
    GROUP BY {keys}"""
    group = "agent_name" if by_agent else "''"
    return _summary_sql(group, per_conversation, "agent")


# ---- what-if: a rollup of plain counters, read once for overall and per agent ----------------

WHATIF_TABLE = "`bench_report_meta`.`counter_rollup`"
_TS = "DateTime64(6, 'UTC')"
_WHATIF_COLUMNS = (
    ("started_at", f"SimpleAggregateFunction(min, Nullable({_TS}))", "min"),
    ("completed_at", f"SimpleAggregateFunction(max, Nullable({_TS}))", "max"),
    ("was_completed", "SimpleAggregateFunction(max, UInt8)", "max"),
    ("was_abandoned", "SimpleAggregateFunction(max, UInt8)", "max"),
    ("had_handoff", "SimpleAggregateFunction(max, UInt8)", "max"),
    ("user_messages", "SimpleAggregateFunction(sum, UInt64)", "sum"),
    ("rephrases", "SimpleAggregateFunction(sum, UInt64)", "sum"),
    ("positive", "SimpleAggregateFunction(sum, UInt64)", "sum"),
    ("negative", "SimpleAggregateFunction(sum, UInt64)", "sum"),
)


def whatif_build(store: ConversationStore) -> float:
    """(Re)build the counter rollup from raw events: what its materialized view would hold."""
    columns = ",\n    ".join(f"`{name}` {ctype}" for name, ctype, _ in _WHATIF_COLUMNS)
    store.execute(f"DROP TABLE IF EXISTS {WHATIF_TABLE}")
    store.execute(
        f"""CREATE TABLE {WHATIF_TABLE} (
    `bucket` DateTime('UTC'),
    `agent_name` LowCardinality(String),
    `conversation_id` String,
    {columns}
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, agent_name, conversation_id)"""
    )
    started = time.perf_counter()
    store.execute(
        f"""INSERT INTO {WHATIF_TABLE}
SELECT toStartOfHour(timestamp) AS bucket, agent_name, conversation_id,
        {_PER_CONVERSATION}
FROM {store.schema.events}
GROUP BY bucket, agent_name, conversation_id"""
    )
    return time.perf_counter() - started


def whatif_sql(events_table: str) -> str:
    """Overall and per-agent summaries in ONE pass over the counter rollup (GROUPING SETS).

    Same exact window as the product: full hours from the rollup, the partial first hour from
    raw events. Parameters ``since`` and ``edge``. The overall row is the one with agent ''.
    Counts conversations per (agent, conversation): equal to the product's overall count when
    no conversation spans two agents, as in this generator's data.
    """
    names = ", ".join(name for name, _, _ in _WHATIF_COLUMNS)
    merges = ",\n        ".join(f"{func}({name}) AS {name}" for name, _, func in _WHATIF_COLUMNS)
    per_conversation = f"""SELECT agent_name, conversation_id,
        {merges}
    FROM (
        SELECT agent_name, conversation_id, {names}
        FROM {WHATIF_TABLE}
        WHERE bucket >= {{edge:DateTime('UTC')}}
        UNION ALL
        SELECT agent_name, conversation_id,
            {_PER_CONVERSATION}
        FROM {events_table}
        WHERE timestamp >= {{since:{_TS}}} AND timestamp < {{edge:DateTime('UTC')}}
        GROUP BY agent_name, conversation_id
    )
    GROUP BY agent_name, conversation_id"""
    return _summary_sql("agent_name", per_conversation, "GROUPING SETS ((agent_name), ())")


def whatif_report(store: ConversationStore, now: datetime) -> dict[str, Any]:
    params = window_params(DAYS, now)
    rows = store.select(whatif_sql(store.schema.events), params)
    overall = next((summarize(row) for row in rows if row["agent"] == ""), {})
    agents = [{"agent": str(r["agent"]), **summarize(r)} for r in rows if r["agent"] != ""]
    drop_off = [
        {"turn": None if r["turn"] is None else int(r["turn"]), "count": int(r["count"])}
        for r in store.select(naive_drop_off_sql(store.schema.events), params)
    ]
    return {**overall, "drop_off": drop_off, "agents": agents, "days": DAYS}


def naive_drop_off_sql(events_table: str) -> str:
    return f"""SELECT abandoned_at_turn AS turn, count() AS count
FROM {events_table}
WHERE event_type = '{E.ABANDONED.value}' AND timestamp >= {{since:DateTime64(6, 'UTC')}}
GROUP BY turn
ORDER BY count DESC, turn ASC
LIMIT 10"""


def naive_report(store: ConversationStore, now: datetime) -> dict[str, Any]:
    """The naive full-scan report, rounded by the product's own ``summarize``."""
    events = store.schema.events
    params = {"since": format_time(now - timedelta(days=DAYS))}
    overall_rows = store.select(naive_sql(events, False), params)
    overall = summarize(overall_rows[0]) if overall_rows else {}
    drop_off = [
        {"turn": None if r["turn"] is None else int(r["turn"]), "count": int(r["count"])}
        for r in store.select(naive_drop_off_sql(events), params)
    ]
    agents = [
        {"agent": str(row["agent"]), **summarize(row)}
        for row in store.select(naive_sql(events, True), params)
    ]
    return {**overall, "drop_off": drop_off, "agents": agents, "days": DAYS}


def comparable(report: Report) -> dict[str, Any]:
    """The product's report as a plain dict with the naive report's keys."""
    data = asdict(report)
    data["drop_off"] = [{"turn": d["turn"], "count": d["count"]} for d in data["drop_off"]]
    return data


def differences(rollup: dict[str, Any], naive: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key, expected in naive.items():
        if key == "agents":
            continue
        if rollup.get(key) != expected:
            found.append(f"{key}: rollup {rollup.get(key)!r} vs naive {expected!r}")
    rollup_agents = {a["agent"]: a for a in rollup.get("agents", [])}
    naive_agents = {a["agent"]: a for a in naive.get("agents", [])}
    if set(rollup_agents) != set(naive_agents):
        found.append(f"agents: rollup {sorted(rollup_agents)} vs naive {sorted(naive_agents)}")
    for name, expected_agent in naive_agents.items():
        got = rollup_agents.get(name, {})
        for key, expected in expected_agent.items():
            if got.get(key) != expected:
                found.append(f"agents[{name}].{key}: rollup {got.get(key)!r} vs naive {expected!r}")
    return found


def count_rows(store: ConversationStore, table: str) -> int:
    return int(store.select(f"SELECT count() AS c FROM {table}")[0]["c"])


def _parts(store: ConversationStore, table: str) -> tuple[int, int]:
    """(active parts, their compressed bytes on disk) of ``table``."""
    database, name = (part.strip("`") for part in table.split("."))
    rows = store.select(
        "SELECT count() AS c, sum(bytes_on_disk) AS b FROM system.parts WHERE active "
        "AND database = {d:String} AND table = {t:String}",
        {"d": database, "t": name},
    )
    return int(rows[0]["c"]), int(rows[0]["b"] or 0)


def active_parts(store: ConversationStore, table: str) -> int:
    return _parts(store, table)[0]


def disk_mib(store: ConversationStore, table: str) -> float:
    """Compressed bytes of the table's active parts on disk, in MiB."""
    return _parts(store, table)[1] / 2**20


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: ``5`` into ``clear_refs``), so that the next
    :func:`_util.memory_mib` is the peak since now; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def grow(store: ConversationStore, target: int, state: dict[str, int], args: Any) -> float:
    """Insert conversations until the events table holds at least ``target`` rows."""
    sql = generation_sql(store.schema.events, args.seed, args.spread_days)
    started = time.perf_counter()
    stored = count_rows(store, store.schema.events)
    while stored < target:
        missing = target - stored
        count = max(1, min(CHUNK_CONVERSATIONS, int(missing / MEAN_EVENTS_GUESS) + 1))
        store.select(
            sql, {"first": state["next"], "count": count, "now_us": state["now_us"]}
        )  # select() runs it with server-side parameters; an INSERT returns no rows
        state["next"] += count
        stored = count_rows(store, store.schema.events)
        if args.verbose:
            print(f"    ... {stored:,} events", flush=True)
    return time.perf_counter() - started


def settle(store: ConversationStore, limit: float) -> float:
    """Wait (up to ``limit`` s) until no background merge runs, as in a steady-state store."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        running = store.select("SELECT count() AS c FROM system.merges")
        if not running or int(running[0]["c"]) == 0:
            break
        time.sleep(0.5)
    return time.perf_counter() - started


def breakdown(store: ConversationStore, now: datetime, repeats: int) -> str:
    """Median latency of each of the report's queries, run alone."""
    params = window_params(DAYS, now)
    queries = [
        (
            "summary (overall, per agent, survival, exit context, daily, satisfaction bins)",
            store.schema.summary(),
        ),
        ("drop_off", store.schema.drop_off()),
        ("compare by prompt_version", store.schema.compare("prompt_version")),
    ]
    candidates = [(name, lambda sql=sql: store.select(sql, params)) for name, sql in queries]
    timings = _util.interleaved(candidates, repeats, pause_gc=False)
    return ", ".join(f"{name} {timings[name].median * 1000:.0f} ms" for name, _ in queries)


def measure(store: ConversationStore, now: datetime, repeats: int, what_if: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def rollup() -> None:
        results["rollup"] = StoreReader(store).report(DAYS, now=now)

    def naive() -> None:
        results["naive"] = naive_report(store, now)

    def whatif() -> None:
        results["whatif"] = whatif_report(store, now)

    candidates = [("rollup", rollup), ("naive", naive)]
    if what_if:
        candidates.append(("whatif", whatif))
    for _, func in candidates:  # warm-up: caches, first-query compilation
        func()
    timings = _util.interleaved(candidates, repeats, pause_gc=False)
    return {"timings": timings, **results}


def describe(report: dict[str, Any]) -> str:
    keys = (
        "total_conversations",
        "completion_rate",
        "abandonment_rate",
        "handoff_rate",
        "avg_turns",
        "avg_duration_seconds",
        "avg_satisfaction",
        "rephrase_rate",
    )
    head = ", ".join(f"{key}={report.get(key)}" for key in keys)
    drops = ", ".join(f"{d['turn']}:{d['count']}" for d in report.get("drop_off", [])[:6])
    return f"{head}; drop_off(turn:count)={drops}"


def load_postgres(store: ConversationStore, connection: Any, work: str) -> float:
    """The store's events, as the article stores them, into its PostgreSQL table; seconds."""
    from article_design import CREATE_TABLE

    path = os.path.join(work, "events.csv")
    store.execute(
        f"""INSERT INTO FUNCTION file({{path:String}}, 'CSV')
SELECT event_id, conversation_id, user_id, toString(event_type),
    formatDateTime(timestamp, '%Y-%m-%d %H:%i:%S.%f+00'),
    toJSONString(CAST((turn, abandoned_at_turn, total_turns), 'Tuple(turn Nullable(Int32),
        abandoned_at_turn Nullable(Int32), total_turns Nullable(Int32))'))
FROM {store.schema.events}
SETTINGS engine_file_truncate_on_insert = 1""",
        {"path": path},
    )
    started = time.perf_counter()
    connection.execute("DROP TABLE IF EXISTS conversation_events")
    connection.execute(CREATE_TABLE)
    copy_sql = (
        "COPY conversation_events (id, conversation_id, user_id, event_type, timestamp, "
        "metadata) FROM STDIN (FORMAT csv)"
    )
    with connection.cursor() as cursor, cursor.copy(copy_sql) as copy, open(path, "rb") as data:
        while block := data.read(8 * 1024 * 1024):
            copy.write(block)
    connection.execute("VACUUM ANALYZE conversation_events")
    os.remove(path)
    return time.perf_counter() - started


def postgres_report(connection: Any, now: datetime) -> None:
    """The article's section 4 report on PostgreSQL: its metrics SQL and its drop-off SQL."""
    from article_design import ARTICLE_DROP_OFF_SQL, ARTICLE_METRICS_SQL

    params = {"now": now, "days": DAYS}
    connection.execute(ARTICLE_METRICS_SQL, params).fetchall()
    connection.execute(ARTICLE_DROP_OFF_SQL, params).fetchall()


def section4(store: ConversationStore, now: datetime) -> None:
    """The product's queries behind section 4's numbers: the summary pass and drop-off."""
    params = window_params(DAYS, now)
    store.select(store.schema.summary(), params)
    store.select(store.schema.drop_off(), params)


@contextlib.contextmanager
def _postgres() -> Iterator[Any]:
    """A connection to a private PostgreSQL server (tests/postgres_server.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import psycopg

    from postgres_server import find_bin_dir, postgres_server

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("--postgres needs the PostgreSQL server (apt-get install postgresql)")
    with (
        postgres_server(bin_dir) as server,
        psycopg.connect(**server.conninfo(), autocommit=True) as connection,
    ):
        yield connection


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--events",
        type=int,
        nargs="+",
        default=[1_000_000, 10_000_000],
        help="stored event counts to measure at, ascending (default 1000000 10000000)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--spread-days", type=float, default=7.25, help="conversation starts spread (7.25)"
    )
    parser.add_argument("--verbose", action="store_true", help="print generation progress")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the report's three queries alone"
    )
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also time a candidate design: a rollup of plain counters (no uniqExact states) "
        "read once for overall + per-agent (GROUPING SETS), drop-off from raw events",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=300.0,
        help="wait up to this many seconds for background merges to finish before timing (300)",
    )
    parser.add_argument("--dir", help="store directory to use and keep (default: a temp dir)")
    parser.add_argument(
        "--reuse", action="store_true", help="with --dir: keep the events already stored there"
    )
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="also time after OPTIMIZE TABLE ... FINAL of the rollup (fully merged parts)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also load the same events into the article's PostgreSQL table and time the "
        "article's own SQL (metrics + drop-off) against report(7) (issue #13's baseline)",
    )
    args = parser.parse_args(argv)
    sizes = sorted(args.events)
    print(f"bench_report: {_util.machine_note()}; chDB on all cores")
    directory = args.dir or tempfile.mkdtemp(prefix="bench-report-")
    if args.dir and not args.reuse:
        shutil.rmtree(directory, ignore_errors=True)
    # A fixed "now" (whole seconds) for generation and every report, so runs are comparable.
    now = datetime.now(timezone.utc).replace(microsecond=0)
    store = open_store(f"chdb://{directory}")
    summary: list[str] = []
    all_equal = True
    stack = contextlib.ExitStack()
    connection = stack.enter_context(_postgres()) if args.postgres else None
    try:
        store.execute("CREATE DATABASE IF NOT EXISTS `bench_report_meta`")
        store.execute(
            f"CREATE TABLE IF NOT EXISTS {META_TABLE} (next UInt64, now_us Int64) "
            "ENGINE = MergeTree ORDER BY tuple()"
        )
        saved = store.select(f"SELECT next, now_us FROM {META_TABLE}") if args.reuse else []
        if saved:  # continue the stored generation: same "now", next conversation number
            state = {"next": int(saved[0]["next"]), "now_us": int(saved[0]["now_us"])}
            now = datetime.fromtimestamp(state["now_us"] / 1e6, timezone.utc)
        else:
            state = {"next": 0, "now_us": int(now.timestamp()) * 1_000_000}
        print(f"store {directory}; now = {now.isoformat()}")
        for size in sizes:
            print()
            seconds = grow(store, size, state, args)
            store.execute(f"TRUNCATE TABLE {META_TABLE}")
            store.execute(
                f"INSERT INTO {META_TABLE} VALUES ({int(state['next'])}, {int(state['now_us'])})"
            )
            waited = settle(store, args.settle)
            stored = count_rows(store, store.schema.events)
            rollup_rows = count_rows(store, store.schema.rollup)
            print(
                f"== {stored:,} events stored ({state['next']:,} conversations generated; "
                f"generation {seconds:.1f} s, then {waited:.1f} s until background merges "
                f"were idle); rollup {rollup_rows:,} rows; active parts: "
                f"events {active_parts(store, store.schema.events)}, "
                f"rollup {active_parts(store, store.schema.rollup)}"
            )
            tables = {
                "events": store.schema.events,
                "rollup": store.schema.rollup,
                "abandonments": store.schema.abandonments,
            }
            sizes_mib = {name: disk_mib(store, table) for name, table in tables.items()}
            print(
                "   disk (active parts, compressed): "
                + ", ".join(f"{name} {mib:,.0f} MiB" for name, mib in sizes_mib.items())
                + f"; {sum(sizes_mib.values()) * 2**20 / stored:.1f} bytes per event"
            )
            variants = [("as inserted", False)]
            if args.optimize:
                variants.append(("after OPTIMIZE FINAL", True))
            for label, optimize in variants:
                if optimize:
                    store.execute(f"OPTIMIZE TABLE {store.schema.rollup} FINAL")
                    print(
                        f"   rollup optimized: {count_rows(store, store.schema.rollup):,} rows, "
                        f"{active_parts(store, store.schema.rollup)} parts"
                    )
                if args.what_if:
                    built = whatif_build(store)
                    print(f"   what-if counter rollup built from raw events in {built:.1f} s")
                result = measure(store, now, args.repeats, args.what_if)
                timings = result["timings"]
                if reset_peak_rss():  # one more report(7) alone, for its peak memory
                    before = _util.memory_mib()
                    StoreReader(store).report(DAYS, now=now)
                    print(
                        f"   resident memory of this process (chDB included): {before:,.0f} MiB "
                        f"before one more report(7), peak {_util.memory_mib():,.0f} MiB during it"
                    )
                rollup, naive = timings["rollup"], timings["naive"]
                speedup = naive.median / rollup.median
                verdict = "PASS" if rollup.median < TARGET_SECONDS else "MISS"
                print(f"   [{label}] report(7) latency over {args.repeats} runs each:")
                print(
                    f"     rollup  report(7)   median {rollup.median * 1000:8.1f} ms   "
                    f"min {rollup.best * 1000:8.1f} ms"
                )
                print(
                    f"     naive   raw full scan     median {naive.median * 1000:8.1f} ms   "
                    f"min {naive.best * 1000:8.1f} ms"
                )
                relation = "faster" if speedup >= 1 else "SLOWER"
                print(
                    f"     => naive / rollup = {speedup:.2f}x (the rollup is {relation} than "
                    f"the full scan); target < {TARGET_SECONDS:.0f} s: {verdict}"
                )
                if args.what_if:
                    whatif = timings["whatif"]
                    whatif_diffs = differences(result["whatif"], result["naive"])
                    all_equal = all_equal and not whatif_diffs
                    print(
                        f"     what-if counter rollup, one pass + raw drop-off: median "
                        f"{whatif.median * 1000:.1f} ms, min {whatif.best * 1000:.1f} ms "
                        f"(naive / what-if = {naive.median / whatif.median:.2f}x); "
                        f"{'equals naive' if not whatif_diffs else 'DIFFERS from naive'}"
                    )
                    for line in whatif_diffs[:10]:
                        print(f"       what-if {line}")
                if args.breakdown:
                    print(
                        f"     rollup queries alone (median): {breakdown(store, now, args.repeats)}"
                    )
                if connection is not None:
                    loaded = load_postgres(store, connection, directory)
                    pg_timings = _util.interleaved(
                        [
                            ("postgres", lambda: postgres_report(connection, now)),
                            ("rollup", lambda: StoreReader(store).report(DAYS, now=now)),
                            ("section4", lambda: section4(store, now)),
                        ],
                        args.repeats,
                        pause_gc=False,
                    )
                    pg, ours = pg_timings["postgres"], pg_timings["rollup"]
                    part = pg_timings["section4"]
                    print(
                        f"     article SQL on PostgreSQL (metrics + drop-off; loaded in "
                        f"{loaded:.0f} s): median {pg.median * 1000:.1f} ms, min "
                        f"{pg.best * 1000:.1f} ms; report(7) in the same rounds: median "
                        f"{ours.median * 1000:.1f} ms => PostgreSQL / report = "
                        f"{pg.median / ours.median:.2f}x; the product's section 4 queries "
                        f"(summary + drop-off) median {part.median * 1000:.1f} ms => "
                        f"PostgreSQL / section 4 = {pg.median / part.median:.2f}x (target >= 20x: "
                        f"{'PASS' if pg.median / part.median >= 20 else 'MISS'})"
                    )
                    summary.append(
                        f"  {stored:>12,} events: article SQL on PostgreSQL "
                        f"{pg.median * 1000:7.1f} ms, report {ours.median * 1000:7.1f} ms "
                        f"({pg.median / ours.median:5.2f}x), section 4 queries "
                        f"{part.median * 1000:7.1f} ms ({pg.median / part.median:5.2f}x)"
                    )
                rollup_report = comparable(result["rollup"])
                naive_report_ = result["naive"]
                diffs = differences(rollup_report, naive_report_)
                all_equal = all_equal and not diffs
                print(f"     rollup: {describe(rollup_report)}")
                print(f"     naive:  {describe(naive_report_)}")
                if diffs:
                    print(f"     CROSS-CHECK: {len(diffs)} DIFFERENCES (rollup vs naive):")
                    for line in diffs[:20]:
                        print(f"       {line}")
                else:
                    print(
                        "     CROSS-CHECK: rollup report == naive full-scan report "
                        "(overall, per agent, drop-off)"
                    )
                summary.append(
                    f"  {stored:>12,} events [{label}]: rollup {rollup.median * 1000:7.1f} ms, "
                    f"naive {naive.median * 1000:7.1f} ms, naive/rollup {speedup:5.2f}x, "
                    f"{'equal' if not diffs else 'DIFFERENT'}, {verdict}"
                )
    finally:
        stack.close()
        store.close()
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
    print()
    print("Summary (medians):")
    print("\n".join(summary))
    print(f"Cross-check: {'all equal' if all_equal else 'DIFFERENCES FOUND'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
