"""Exporter throughput: finished SDK spans -> ``ConversationAnalyticsExporter`` -> chDB, one core.

What it measures
----------------
Spans are made by the real ``ConversationTracker`` on a real SDK ``TracerProvider`` whose
``SimpleSpanProcessor`` hands them to an ``InMemorySpanExporter``: one span per simulated
conversation (started, user_message / tool_called / agent_response per turn, then completed,
handoff or abandoned, feedback sometimes; about ``--events-per-span`` events, default ~10), across
5 agents. They are made batch by batch (``--batch`` spans, default 4096, outside the timed region)
so memory stays bounded, ``--spans`` in total (default 200,000, i.e. about 2 million events).

For every batch, timed separately, in the same run:

* **export** -- ``ConversationAnalyticsExporter(store).export(batch)`` into a fresh embedded store
  (``chdb://<tempdir>``): extraction, dedupe, Prometheus series, serialisation, chDB insert with
  the materialized rollup view. This is the figure the target applies to.
* **extract only** -- ``rows_from_spans(batch)``: the pure-Python span -> row step.
* **serialise** -- the same rows to the store's insert payload shape, ``JSONCompactColumns``
  (this script's copy of the store's transpose + one ``json.dumps``).
* **raw chDB insert** -- that payload, inserted by one ``INSERT`` into an identical schema (same
  DDL, materialized view included) in a second database of the same chDB session: what the
  engine itself costs.

The rest (export - extract - serialise - raw insert) is the pipeline's bookkeeping (dedupe,
sorting, Prometheus series) plus the cyclic GC's pauses inside export, which are measured
separately through ``gc.callbacks`` (GC stays enabled while timing, as in production; the
baselines, which allocate less, trigger fewer collections).

``--what-if`` also times two candidate optimisations on the same batches (extraction over
plain-dict attributes; a columnar Arrow insert through chDB's ``Python()`` table function) so
their gain is measured, not guessed.

The process pins itself to one CPU (re-exec under ``taskset -c 0``, else
``os.sched_setaffinity``), so chDB's threads share that core too: "per core" as SPEC section 7
states it. Target: >= 50,000 conversation events/s per core for export. ``--profile N`` prints a
cProfile of export over a few batches. No wall-clock asserts.

Run: ``python benchmarks/bench_exporter.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeVar

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import use_span

import _util
from opentelemetry.exporter.conversation_analytics import (
    ConversationAnalyticsExporter,
    ConversationStore,
    open_store,
)
from opentelemetry.exporter.conversation_analytics.extract import rows_from_spans
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store.sql import (
    EVENT_COLUMN_NAMES,
    EVENT_COLUMNS,
    EVENTS_INSERT_SETTINGS,
    Schema,
    settings_clause,
)
from opentelemetry.instrumentation.conversation import ConversationEvent, ConversationTracker

TARGET_EVENTS_PER_SECOND = 50_000
AGENTS = ("support-bot", "research-assistant", "billing-bot", "onboarding-guide", "sales-agent")
MODELS = ("gpt-4o-mini", "claude-haiku", "gpt-4o")
TOOLS = ("search_kb", "lookup_order", "create_ticket", "web_search")
CHANNELS = ("web", "slack", "voice", "api")
BASELINE_DATABASE = "bench_baseline"
WHATIF_DATABASE = "bench_whatif"

Event = ConversationEvent


class SpanFactory:
    """Realistic conversation spans from the real tracker on a real SDK provider."""

    def __init__(self, seed: int, turns: float) -> None:
        self.rng = random.Random(seed)
        self.turns = turns
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "bench-fleet"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("bench")
        self.trackers = [
            ConversationTracker(
                self.provider,
                agent_name=agent,
                agent_version="1.0",
                prompt_version=self.rng.choice(("v1", "v2")),
                user_id_key=b"bench",
            )
            for agent in AGENTS
        ]

    def batch(self, spans: int) -> list[ReadableSpan]:
        for _ in range(spans):
            self._conversation()
        finished = list(self.memory.get_finished_spans())
        self.memory.clear()
        return finished

    def _conversation(self) -> None:
        rng = self.rng
        tracker = rng.choice(self.trackers)
        conversation_id = f"conv-{uuid.UUID(int=rng.getrandbits(128)).hex}"
        user_id = f"user-{rng.randrange(50_000)}"
        model = rng.choice(MODELS)
        record = tracker.record
        # ~turns on average: geometric-ish, at least one turn, at most 12.
        turns = min(12, 1 + int(rng.expovariate(1.0 / max(0.01, self.turns - 1))))
        span = self.tracer.start_span("invoke_agent")
        with use_span(span, end_on_exit=True):
            record(conversation_id, user_id, Event.STARTED, channel=rng.choice(CHANNELS))
            for turn in range(1, turns + 1):
                record(
                    conversation_id,
                    user_id,
                    Event.USER_MESSAGE,
                    turn=turn,
                    message_length=rng.randint(8, 400),
                    similarity=round(rng.uniform(0.1, 0.97), 3),
                    model=model,
                )
                if rng.random() < 0.4:
                    record(
                        conversation_id,
                        user_id,
                        Event.TOOL_CALLED,
                        turn=turn,
                        tool_name=rng.choice(TOOLS),
                    )
                record(
                    conversation_id,
                    user_id,
                    Event.AGENT_RESPONSE,
                    turn=turn,
                    response_length=rng.randint(40, 1500),
                    model=model,
                )
            outcome = rng.random()
            if outcome < 0.1:
                record(conversation_id, user_id, Event.HANDOFF_REQUESTED, turn=turns)
            if rng.random() < 0.3:
                rating = "positive" if rng.random() < 0.75 else "negative"
                record(conversation_id, user_id, Event.FEEDBACK_RECEIVED, rating=rating)
            if outcome < 0.7:
                record(conversation_id, user_id, Event.COMPLETED, total_turns=turns)
            else:
                record(conversation_id, user_id, Event.ABANDONED, abandoned_at_turn=turns)


_ROW_FIELDS = attrgetter(
    *(("timestamp_ns" if name == "timestamp" else name) for name in EVENT_COLUMN_NAMES)
)
_TIMESTAMP_INDEX = EVENT_COLUMN_NAMES.index("timestamp")


def _payload(rows: Sequence[EventRow]) -> str:
    """The rows as one ``JSONCompactColumns`` document in ``EVENT_COLUMN_NAMES`` order.

    The embedded store's insert shape (one transposing pass, one ``json.dumps``), written out
    here so the baseline does not depend on the store's private helpers.
    """
    columns: list[Any] = list(zip(*map(_ROW_FIELDS, rows), strict=True))
    columns[_TIMESTAMP_INDEX] = [
        f"{ns // 1000 // 1_000_000}.{ns // 1000 % 1_000_000:06d}"
        for ns in columns[_TIMESTAMP_INDEX]
    ]
    return json.dumps(columns, ensure_ascii=False, separators=(",", ":"))


EXPORT = "export (exporter.export)"
EXTRACT = "extract only (rows_from_spans)"
SERIALISE = "serialise rows to JSONCompactColumns"
RAW_INSERT = "raw chDB insert (same rows, MV)"
WHATIF_EXTRACT = "what-if: extract, plain-dict attrs"
WHATIF_ARROW = "what-if: rows -> Arrow table"
WHATIF_INSERT = "what-if: Arrow insert (same rows, MV)"
EXPORT_GC = "  of which cyclic GC pauses in export"


class GcClock:
    """Seconds the cyclic garbage collector runs while ``active`` (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.active = False
        self.seconds = 0.0
        self.full_collections = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if not self.active:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full_collections += info.get("generation") == 2

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


@dataclass
class Totals:
    events: int = 0
    spans: int = 0
    batch_events: list[int] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: str, seconds: float) -> None:
        self.seconds.setdefault(step, []).append(seconds)


T = TypeVar("T")


def _timed(func: Callable[..., T], *args: Any) -> tuple[float, T]:
    gc.collect()
    started = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - started, result


class _PlainEvent:
    __slots__ = ("attributes", "name", "timestamp")

    def __init__(self, event: Any, attributes: dict[str, Any]) -> None:
        self.name = event.name
        self.attributes = attributes
        self.timestamp = event.timestamp


class _PlainSpan:
    """What ``rows_from_spans`` reads of a span, with event attributes as plain dicts."""

    __slots__ = ("context", "events", "resource")

    def __init__(self, span: ReadableSpan, copies: Iterator[dict[str, Any]]) -> None:
        self.events = [_PlainEvent(event, next(copies)) for event in span.events]
        self.context = span.context
        self.resource = span.resource


def _whatif_extract(spans: Sequence[ReadableSpan]) -> float:
    """Seconds to extract if attributes were read from plain dicts.

    Timed: ``BoundedAttributes.copy()`` of every event's attributes (the SDK's C-level dict
    copy) plus ``rows_from_spans`` over spans whose events hold those dicts. Not timed: building
    the stand-in span objects, which a real implementation would not need.
    """
    copy_time, copies = _timed(
        lambda: [event.attributes.copy() for span in spans for event in span.events]
    )
    feed = iter(copies)
    plain: Any = [_PlainSpan(span, feed) for span in spans]
    extract_time, _ = _timed(rows_from_spans, plain)
    return copy_time + extract_time


def _arrow_table(rows: Sequence[EventRow]) -> Any:
    """The rows as a typed Arrow table in ``EVENT_COLUMNS`` order (one transposing pass)."""
    import pyarrow as pa

    fields = [("timestamp_ns" if name == "timestamp" else name) for name in EVENT_COLUMN_NAMES]
    columns = list(zip(*map(attrgetter(*fields), rows), strict=True))
    arrays = []
    for (name, ctype), values in zip(EVENT_COLUMNS, columns, strict=True):
        if name == "timestamp":
            array = pa.array(values, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
        elif name == "attributes":
            items = [list(value.items()) for value in values]
            array = pa.array(items, pa.map_(pa.string(), pa.string()))
        elif "Int32" in ctype:
            array = pa.array(values, pa.int32())
        elif "Float64" in ctype:
            array = pa.array(values, pa.float64())
        elif ctype == "Bool":
            array = pa.array(values, pa.bool_())
        else:
            array = pa.array(values, pa.string())
        arrays.append(array)
    return pa.table(arrays, names=list(EVENT_COLUMN_NAMES))


def _arrow_insert(store: ConversationStore, sql: str, whatif_rows: Any) -> None:
    # chDB's Python() table function finds ``whatif_rows`` among the caller's frames' locals.
    store.execute(sql)


def run(args: argparse.Namespace, directory: str) -> Totals:
    store = open_store(f"chdb://{directory}")
    try:
        return _run(args, store)
    finally:
        store.close()


def _run(args: argparse.Namespace, store: ConversationStore) -> Totals:
    columns = ", ".join(EVENT_COLUMN_NAMES)
    baseline = Schema(database=BASELINE_DATABASE)
    whatif = Schema(database=WHATIF_DATABASE)
    for schema in (baseline, whatif) if args.what_if else (baseline,):
        for statement in schema.ddl():
            store.execute(statement)
    # The store's own insert settings, so the baseline is the insert the exporter could reach.
    settings = f"SETTINGS {settings_clause(EVENTS_INSERT_SETTINGS)}"
    raw_insert_sql = (
        f"INSERT INTO {baseline.events} ({columns}) {settings} FORMAT JSONCompactColumns\n"
    )
    arrow_insert_sql = (
        f"INSERT INTO {whatif.events} ({columns}) {settings} SELECT * FROM Python(whatif_rows)"
    )
    exporter = ConversationAnalyticsExporter(store)
    factory = SpanFactory(args.seed, args.turns)
    totals = Totals()
    batches = max(1, -(-args.spans // args.batch))
    factory.batch(64)  # warm-up of the generator (not exported)
    gc_clock = GcClock()
    for index in range(batches):
        size = min(args.batch, args.spans - index * args.batch)
        spans = factory.batch(size)
        events = sum(len(span.events) for span in spans)
        extract_time, (rows, _rejected) = _timed(rows_from_spans, spans)
        serialise_time, body = _timed(_payload, rows)
        gc_clock.active, gc_before = True, gc_clock.seconds
        export_time, result = _timed(exporter.export, spans)
        gc_clock.active = False
        gc_seconds = gc_clock.seconds - gc_before
        if result is not SpanExportResult.SUCCESS:
            raise SystemExit(f"export of batch {index} failed: {result}")
        insert_time, _ = _timed(store.execute, raw_insert_sql + body)
        totals.events += events
        totals.spans += len(spans)
        totals.batch_events.append(events)
        totals.add(EXPORT, export_time)
        totals.add(EXPORT_GC, gc_seconds)
        totals.add(EXTRACT, extract_time)
        totals.add(SERIALISE, serialise_time)
        totals.add(RAW_INSERT, insert_time)
        if args.what_if:
            totals.add(WHATIF_EXTRACT, _whatif_extract(spans))
            arrow_time, table = _timed(_arrow_table, rows)
            totals.add(WHATIF_ARROW, arrow_time)
            totals.add(WHATIF_INSERT, _timed(_arrow_insert, store, arrow_insert_sql, table)[0])
        if args.verbose:
            print(
                f"  batch {index + 1}/{batches}: {events:,} events, export "
                f"{events / export_time:,.0f} ev/s, extract {events / extract_time:,.0f} ev/s, "
                f"raw insert {events / insert_time:,.0f} ev/s",
                flush=True,
            )
    gc_clock.close()
    print(
        f"cyclic GC during export: {gc_clock.seconds:.2f} s, "
        f"{gc_clock.full_collections} full (generation 2) collections"
    )
    stored = store.count_events()
    if stored != totals.events:
        print(f"!! store holds {stored:,} distinct events, expected {totals.events:,}")
    exporter.shutdown()
    if args.profile:
        _profile_export(args, store, factory)
    return totals


def _profile_export(
    args: argparse.Namespace, store: ConversationStore, factory: SpanFactory
) -> None:
    """cProfile of export over fresh batches (fresh event ids, so nothing is deduplicated away)."""
    exporter = ConversationAnalyticsExporter(store)
    for sort in ("tottime", "cumulative"):
        batches = [factory.batch(args.batch) for _ in range(args.profile_batches)]
        events = sum(len(span.events) for batch in batches for span in batch)

        def export_all(batches: list[list[ReadableSpan]] = batches) -> None:
            for batch in batches:
                exporter.export(batch)

        print()
        print(f"cProfile of export, {len(batches)} batches ({events:,} events), sorted by {sort}:")
        print(_util.profile(export_all, args.profile, sort=sort))
    exporter.shutdown()


def report(totals: Totals) -> None:
    def median_batch_rate(times: Sequence[float]) -> float:
        ordered = sorted(e / t for e, t in zip(totals.batch_events, times, strict=True))
        return ordered[len(ordered) // 2]

    export_seconds = sum(totals.seconds[EXPORT])
    export_rate = totals.events / export_seconds
    print()
    print(
        f"{totals.spans:,} spans, {totals.events:,} events "
        f"({totals.events / max(1, totals.spans):.1f} events/span), "
        f"{len(totals.batch_events)} batches"
    )
    print(
        f"  {'step':<40} {'events/s (all)':>15} {'median batch':>13} {'s total':>8} "
        f"{'vs export time':>15}"
    )
    for step, times in totals.seconds.items():
        if step == EXPORT_GC:
            print(
                f"  {step:<40} {'':>15} {'':>13} {sum(times):>8.2f} "
                f"{sum(times) / export_seconds:>15.0%}"
            )
            continue
        print(
            f"  {step:<40} {totals.events / sum(times):>15,.0f} {median_batch_rate(times):>13,.0f} "
            f"{sum(times):>8.2f} {sum(times) / export_seconds:>15.0%}"
        )
    rest = export_seconds - sum(sum(totals.seconds[s]) for s in (EXTRACT, SERIALISE, RAW_INSERT))
    print(
        f"  {'rest of export (GC, dedupe, sort, metrics)':<40} {'':>15} {'':>13} {rest:>8.2f} "
        f"{rest / export_seconds:>15.0%}"
    )
    # Same-run ratios: the machine's speed cancels out, so runs on a loaded machine compare.
    insert_rate = totals.events / sum(totals.seconds[RAW_INSERT])
    serialise_rate = totals.events / sum(totals.seconds[SERIALISE])
    print(
        f"  same-run ratios: export / raw chDB insert {export_rate / insert_rate:.3f}, "
        f"export / serialise {export_rate / serialise_rate:.3f} (the target needs export at "
        f"{TARGET_EVENTS_PER_SECOND / insert_rate:.2f}x this run's raw insert rate)"
    )
    verdict = "PASS" if export_rate >= TARGET_EVENTS_PER_SECOND else "MISS"
    print(
        f"  => export {export_rate:,.0f} events/s on one core "
        f"({export_rate / TARGET_EVENTS_PER_SECOND:.2f}x the {TARGET_EVENTS_PER_SECOND:,} "
        f"target): {verdict}"
    )
    if WHATIF_EXTRACT in totals.seconds:
        now = sum(sum(totals.seconds[s]) for s in (EXTRACT, SERIALISE, RAW_INSERT))
        then = sum(sum(totals.seconds[s]) for s in (WHATIF_EXTRACT, WHATIF_ARROW, WHATIF_INSERT))
        print(
            f"  what-if: extract+serialise+insert {totals.events / now:,.0f} ev/s today vs "
            f"{totals.events / then:,.0f} ev/s with plain-dict attributes and an Arrow insert "
            f"({now / then:.2f}x); add the 'rest' above for a whole-export estimate of "
            f"{totals.events / (then + rest):,.0f} ev/s"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=200_000, help="spans in total (200,000)")
    parser.add_argument("--batch", type=int, default=4096, help="spans per export call (4096)")
    parser.add_argument(
        "--turns", type=float, default=3.5, help="mean user turns per conversation (3.5: ~10 ev)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--verbose", action="store_true", help="print every batch")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print the top N of a cProfile"
    )
    parser.add_argument("--profile-batches", type=int, default=3, help="batches to profile")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also time two candidate optimisations per batch: extraction over plain-dict "
        "attributes, and a columnar Arrow insert (chDB Python() table function)",
    )
    args = parser.parse_args(argv)
    pinned = _util.pin_to_one_core(not args.no_pin)
    print(f"bench_exporter: {_util.machine_note()}; {pinned}")
    directory = tempfile.mkdtemp(prefix="bench-exporter-")
    try:
        totals = run(args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report(totals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
