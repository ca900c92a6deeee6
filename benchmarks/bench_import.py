"""Bulk import: ``import_file`` (the engine reads the file) vs PostgreSQL ``COPY`` of the same file.

What it measures
----------------
One JSON-lines file of the article's event records (``id``, ``conversation_id``, ``user_id``,
``event_type``, ``timestamp`` as ``utcnow().isoformat()`` text, ``metadata``), about ten events
per conversation, written by the engine from ``bench_report``'s generator. The same file is then
loaded, in the same run, by:

* **PostgreSQL COPY** -- the article's own design: its ``conversation_events`` table (primary
  key, ``jsonb`` metadata) in a private PostgreSQL server, filled by ``COPY ... FROM STDIN``
  from Python (each line parsed with ``json.loads``, rows written with psycopg's ``write_row``);
* **import_file** -- this project's ``conversation-analytics import`` path: ClickHouse (chDB)
  parses the lines itself into the events table and its rollup, every id pseudonymised, each
  event id once;
* **import_lines** (``--with-python``) -- the all-Python import through the pipeline, the path
  ``import`` took before.

Each is timed once per repeat on a fresh table or store (a load is too long to repeat
interleaved many times); the headline is events per second and the ratio to COPY measured in the
same run. No wall-clock asserts.

Run: ``python benchmarks/bench_import.py`` (``--events 3000000`` as in issue #13).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import _util
import bench_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from article_design import COPY_FROM_STDIN, CREATE_TABLE
from opentelemetry.exporter.conversation_analytics import open_store
from opentelemetry.exporter.conversation_analytics.importer import (
    import_file,
    import_lines,
)
from opentelemetry.exporter.conversation_analytics.pipeline import (
    ConversationPipeline,
)
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation.pseudonymize import (
    UserIdPseudonymizer,
)
from postgres_server import find_bin_dir, postgres_server

TARGET_RATIO = 5.0
T = TypeVar("T")
GENERATED = "`bench_import_gen`.`conversation_events`"


def write_file(path: str, events: int, now: datetime) -> int:
    """Generate about ``events`` article records inside the engine and write them as JSON lines."""
    directory = tempfile.mkdtemp(prefix="bench-import-gen-")
    store = open_store(f"chdb://{directory}")
    try:
        store.execute("CREATE DATABASE IF NOT EXISTS `bench_import_gen`")
        store.execute(f"CREATE TABLE {GENERATED} AS {store.schema.events}")
        sql = bench_report.generation_sql(GENERATED, seed=7, spread_days=6.0)
        conversations = int(events / bench_report.MEAN_EVENTS_GUESS) + 1
        now_us = int(now.timestamp()) * 1_000_000
        for first in range(0, conversations, bench_report.CHUNK_CONVERSATIONS):
            count = min(bench_report.CHUNK_CONVERSATIONS, conversations - first)
            store.execute(sql, {"first": first, "count": count, "now_us": now_us})
        store.execute(
            f"""INSERT INTO FUNCTION file({{path:String}}, 'JSONEachRow')
SELECT event_id AS id, conversation_id, user_id, toString(event_type) AS event_type,
    formatDateTime(timestamp, '%Y-%m-%dT%H:%i:%S.%f') AS timestamp,
    CAST((turn, message_length, response_length, nullIf(toString(tool_name), ''),
          nullIf(toString(channel), ''), nullIf(toString(feedback_rating), ''),
          total_turns, abandoned_at_turn, if(event_type = 'abandoned', abandon_inferred, NULL),
          rephrase_similarity),
         'Tuple(turn Nullable(Int32), message_length Nullable(Int32),
                response_length Nullable(Int32), tool_name Nullable(String),
                channel Nullable(String), rating Nullable(String), total_turns Nullable(Int32),
                abandoned_at_turn Nullable(Int32), inferred Nullable(Bool),
                similarity Nullable(Float64))') AS metadata
FROM {GENERATED}
ORDER BY timestamp
SETTINGS output_format_json_named_tuples_as_objects = 1, engine_file_truncate_on_insert = 1""",
            {"path": path},
        )
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)
    with open(path, "rb") as stream:
        return sum(1 for _ in stream)


def postgres_copy(connection: object, path: str) -> float:
    """The article's table, emptied, then filled by COPY from Python; seconds."""
    import psycopg  # deferred: a benchmark-only dependency of the test suite

    assert isinstance(connection, psycopg.Connection)
    connection.execute("DROP TABLE IF EXISTS conversation_events")
    connection.execute(CREATE_TABLE)
    started = time.perf_counter()
    with connection.cursor() as cursor, cursor.copy(COPY_FROM_STDIN) as copy, open(path) as lines:
        for line in lines:
            rec = json.loads(line)
            metadata = {k: v for k, v in (rec.get("metadata") or {}).items() if v is not None}
            copy.write_row(
                (
                    rec["id"],
                    rec["conversation_id"],
                    rec.get("user_id"),
                    rec["event_type"],
                    rec["timestamp"] + "+00",
                    json.dumps(metadata),
                )
            )
    return time.perf_counter() - started


PARSE = "parse into the stage (engine)"
EVENTS = "stage -> events table and its views"
READS = "stage reads (counts, slow lines)"
OTHER = "other statements (stage DDL, truncate)"
PYTHON = "Python (cutting chunks, lines left to it)"


class StatementClock:
    """Seconds per kind of statement of one import, by wrapping the store's ``execute`` and
    ``select``; what is left of the import's time is Python's."""

    def __init__(self, store: ConversationStore) -> None:
        self.seconds: dict[str, float] = dict.fromkeys((PARSE, EVENTS, READS, OTHER), 0.0)
        self._events = f"INSERT INTO {store.schema.events}"
        for name in ("execute", "select"):
            setattr(store, name, self._timed(getattr(store, name)))

    def _kind(self, sql: str) -> str:
        if sql.startswith(self._events):
            return EVENTS
        if sql.startswith("INSERT INTO"):
            return PARSE
        return READS if sql.startswith("SELECT") else OTHER

    def _timed(self, method: Callable[..., T]) -> Callable[..., T]:
        def timed(sql: str, *args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return method(sql, *args, **kwargs)
            finally:
                self.seconds[self._kind(sql)] += time.perf_counter() - started

        return timed


def engine_import(path: str, key: UserIdPseudonymizer) -> tuple[float, int, int, dict[str, float]]:
    """``import_file`` into a fresh store; seconds, events imported, read by the engine, and
    seconds per kind of statement."""
    directory = tempfile.mkdtemp(prefix="bench-import-")
    store = open_store(f"chdb://{directory}")
    clock = StatementClock(store)
    try:
        started = time.perf_counter()
        result = import_file(path, store, key)
        seconds = time.perf_counter() - started
        assert result.skipped == 0, result.errors[:3]
        phases = {**clock.seconds, PYTHON: seconds - sum(clock.seconds.values())}
        return seconds, result.imported, result.read_by_engine, phases
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


def python_import(path: str, key: UserIdPseudonymizer) -> float:
    """The all-Python import through the pipeline into a fresh store; seconds."""
    directory = tempfile.mkdtemp(prefix="bench-import-py-")
    store = open_store(f"chdb://{directory}")
    pipeline = ConversationPipeline(store)
    try:
        started = time.perf_counter()
        with open(path, encoding="utf-8") as lines:
            import_lines(lines, pipeline, key)
        pipeline.close()
        return time.perf_counter() - started
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the file (1M)")
    parser.add_argument("--repeats", type=int, default=2, help="loads of each (default 2)")
    parser.add_argument(
        "--with-python", action="store_true", help="also time the all-Python import_lines path"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="print where the fastest import_file load spent its time, per kind of statement",
    )
    args = parser.parse_args(argv)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("bench_import needs the PostgreSQL server (apt-get install postgresql)")
        return 2
    print(f"bench_import: {_util.machine_note()}; chDB and PostgreSQL on all cores")
    work = tempfile.mkdtemp(prefix="bench-import-file-")
    path = os.path.join(work, "events.jsonl")
    key = UserIdPseudonymizer("bench-import-key")
    try:
        lines = write_file(path, args.events, datetime.now(timezone.utc).replace(microsecond=0))
        size_mb = os.path.getsize(path) / 1e6
        print(f"file: {lines:,} article records, {size_mb:,.0f} MB")
        import psycopg

        samples: dict[str, list[float]] = {"copy": [], "engine": [], "python": []}
        fastest: dict[str, float] = {}
        with (
            postgres_server(bin_dir) as server,
            psycopg.connect(**server.conninfo(), autocommit=True) as connection,
        ):
            for repeat in range(args.repeats):
                samples["copy"].append(postgres_copy(connection, path))
                seconds, imported, by_engine, phases = engine_import(path, key)
                if not samples["engine"] or seconds < min(samples["engine"]):
                    fastest = phases
                samples["engine"].append(seconds)
                if args.with_python and repeat == 0:
                    samples["python"].append(python_import(path, key))
                print(
                    f"  repeat {repeat + 1}: COPY {samples['copy'][-1]:.2f} s, "
                    f"import_file {seconds:.2f} s ({by_engine:,} of {imported:,} lines read by "
                    "the engine)",
                    flush=True,
                )
        copy_rate = lines / min(samples["copy"])
        engine_rate = lines / min(samples["engine"])
        print()
        print(f"PostgreSQL COPY (article's table)   {copy_rate:>12,.0f} events/s   1.00x")
        print(
            f"import_file (engine reads the file) {engine_rate:>12,.0f} events/s "
            f"{engine_rate / copy_rate:>6.2f}x"
        )
        if samples["python"]:
            python_rate = lines / min(samples["python"])
            print(
                f"import_lines (all Python, before)   {python_rate:>12,.0f} events/s "
                f"{python_rate / copy_rate:>6.2f}x"
            )
        if args.breakdown:
            print(f"\nwhere the fastest import_file load went ({min(samples['engine']):.2f} s):")
            for phase, seconds in fastest.items():
                print(f"  {phase:42s} {seconds:7.2f} s  {seconds / lines * 1e6:6.2f} us/event")
        verdict = "PASS" if engine_rate / copy_rate >= TARGET_RATIO else "MISS"
        print(f"target >= {TARGET_RATIO:.0f}x COPY: {verdict} (best of {args.repeats} loads each)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
