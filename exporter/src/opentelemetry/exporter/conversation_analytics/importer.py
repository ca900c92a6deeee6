"""Backfill from JSON lines shaped like the article's event records.

Each line: ``{"id", "conversation_id", "user_id", "event_type", "timestamp", "metadata"}``.
Bad lines are reported with their line numbers and skipped; every good line is kept.

:func:`import_file` lets the engine read the file (:mod:`~.store.import_sql`): Python reads only
the lines the engine's SQL cannot read exactly as :func:`row_from_record` does, and every bad line.
:func:`import_lines` is the all-Python path through the pipeline, the reference it must equal.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Final

from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline, Outcome
from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    derived_event_id,
    row_from_attributes,
)
from opentelemetry.exporter.conversation_analytics.store import import_sql
from opentelemetry.exporter.conversation_analytics.store.base import ConversationStore, StoreError
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

SOURCE = "import"
_BATCH = 10_000
#: What a bad line's message is cut to (room for the list of accepted event types).
_MAX_ERROR_CHARS = 300
#: Bad lines whose messages are kept (all are counted).
MAX_ERRORS_KEPT: Final = 1000
#: Bytes of the file the engine reads per step: what one step holds in memory, parsed.
DEFAULT_CHUNK_BYTES: Final = 128 * 1024 * 1024
#: ``event_type`` values a record may have, as a bad line's message lists them.
EVENT_TYPES: Final = tuple(member.value for member in ConversationEvent)


@dataclass
class ImportResult:
    """Counts of one import, and the first errors with their line numbers."""

    imported: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    #: Of the imported lines, those the engine read itself (the rest Python read).
    read_by_engine: int = 0

    def reject(self, number: int, message: str) -> None:
        """Count a bad line; keep its message while there are fewer than MAX_ERRORS_KEPT."""
        self.skipped += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append((number, message[:_MAX_ERROR_CHARS]))


def parse_timestamp(value: object) -> int:
    """ISO 8601 text (naive means UTC, as the article's ``utcnow``) or epoch seconds, as ns."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO 8601 text or epoch seconds")
    if isinstance(value, (int, float)):
        return round(value * 1_000_000) * 1000  # to the microsecond: floats can't hold ns
    if not isinstance(value, str):
        raise ValueError("timestamp must be ISO 8601 text or epoch seconds")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def row_from_record(record: object, pseudonymize: UserIdPseudonymizer) -> EventRow:
    """One article-shaped record as a row; ``ValueError`` says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError("a record must be a JSON object")
    kind = _event_type(record.get("event_type"))
    if "timestamp" not in record:
        raise ValueError("timestamp is missing")
    timestamp_ns = parse_timestamp(record["timestamp"])
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
    attributes: dict[str, object] = {}
    for key, value in metadata.items():
        name = semconv.metadata_attribute(kind, str(key))
        if value is not None and name not in import_sql.RECORD_ATTRIBUTES:
            attributes[name] = value  # the record's own fields set its ids, never its metadata
    attributes[semconv.CONVERSATION_ID] = record.get("conversation_id")
    user_id = record.get("user_id")
    if user_id not in (None, ""):
        attributes[semconv.USER_ID] = pseudonymize(str(user_id))
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    attributes[semconv.EVENT_ID] = record.get("id") or derived_event_id(SOURCE, canonical)
    try:
        return row_from_attributes(kind, attributes, timestamp_ns, service_name=SOURCE)
    except RejectedEvent as exc:
        raise ValueError(str(exc)) from None


def _event_type(value: object) -> ConversationEvent:
    """The record's event type; a bad one is answered with the accepted ones, so the fix is
    in the message."""
    accepted = f"accepted: {', '.join(EVENT_TYPES)}"
    if value is None or value == "":
        raise ValueError(f"event_type is missing ({accepted})")
    try:
        return ConversationEvent.parse(value)
    except ValueError:
        raise ValueError(f"unknown event_type {value!r:.60} ({accepted})") from None


def _read_line(
    number: int, line: str, result: ImportResult, pseudonymize: UserIdPseudonymizer
) -> EventRow | None:
    """One line as a row, or ``None`` (blank, or bad: then counted with its message)."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as exc:  # JSONDecodeError; UnicodeDecodeError
        # The parser's own "line 1 column 5" would sit beside the file's line number and
        # contradict it: keep only what is wrong.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        result.reject(number, f"not valid JSON ({reason})")
        return None
    if "\\u" in line and not _is_text(record):
        result.reject(number, "a string holds a lone surrogate escape (\\ud800-\\udfff): not text")
        return None
    try:
        return row_from_record(record, pseudonymize)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        result.reject(number, str(exc))
        return None


def _is_text(record: object) -> bool:
    """Whether every string in the record is text (JSON can escape a lone UTF-16 surrogate,
    which no store can hold)."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rows(
    lines: Iterable[str], result: ImportResult, pseudonymize: UserIdPseudonymizer
) -> Iterator[EventRow]:
    for number, line in enumerate(lines, start=1):
        row = _read_line(number, line, result, pseudonymize)
        if row is not None:
            yield row


def import_lines(
    lines: Iterable[str],
    pipeline: ConversationPipeline,
    pseudonymize: UserIdPseudonymizer | None = None,
) -> ImportResult:
    """Import every good line through the pipeline (deduplicated, retried); report the bad ones."""
    result = ImportResult()
    pseudonymize = pseudonymize or UserIdPseudonymizer()
    batch: list[EventRow] = []
    for row in _rows(lines, result, pseudonymize):
        batch.append(row)
        if len(batch) >= _BATCH:
            result.imported += _submit(pipeline, batch)
            batch = []
    result.imported += _submit(pipeline, batch)
    return result


class ImportFailed(RuntimeError):
    """The store did not take a batch: the import stopped there."""


def _submit(pipeline: ConversationPipeline, batch: list[EventRow]) -> int:
    if batch and pipeline.submit(batch, SOURCE) is not Outcome.WRITTEN:
        raise ImportFailed("the store did not accept the import; nothing after this was read")
    return len(batch)


# ---- the engine-side import ---------------------------------------------------------------------


def import_file(
    path: str,
    store: ConversationStore,
    pseudonymize: UserIdPseudonymizer | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> ImportResult:
    """Import a JSON-lines file with the engine reading it, chunk by chunk; the same rows, line
    numbers and messages as :func:`import_lines`, and a re-import stores nothing twice.

    Lines are ``\\n``-terminated (a trailing ``\\r`` is whitespace). Raises :class:`ImportFailed`
    when the store stops taking the import (the chunks before are in).
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be at least 1")
    result = ImportResult()
    pseudonymize = pseudonymize or UserIdPseudonymizer()
    stage = import_sql.stage_table(store.schema.database, uuid.uuid4().hex)
    pads = pseudonymize.hmac_pads()
    params = {
        "pseudonymize": int(pads is not None),
        "inner_pad": pads[0].hex() if pads else "",
        "outer_pad": pads[1].hex() if pads else "",
    }
    try:
        store.execute(import_sql.stage_ddl(stage))
        first_line = 1
        with _chunks(path, chunk_bytes) as chunks:
            for chunk in chunks:
                with store.lines_of(chunk) as (source, source_params):
                    parse = import_sql.stage_insert_sql(stage, source, SOURCE)
                    store.execute(parse, {**params, **source_params})
                first_line += _finish_chunk(store, stage, chunk, first_line, result, pseudonymize)
    except StoreError as exc:
        raise ImportFailed(f"the store did not accept the import: {exc}") from exc
    finally:
        with suppress(StoreError):  # a store that is gone took its in-memory stage with it
            store.execute(import_sql.drop_stage_sql(stage))
    return result


def _finish_chunk(
    store: ConversationStore,
    stage: str,
    chunk: str,
    first_line: int,
    result: ImportResult,
    pseudonymize: UserIdPseudonymizer,
) -> int:
    """Python reads the chunk's lines the engine left, then the stage becomes events; returns
    the chunk's line count."""
    counts = store.select(import_sql.stage_counts_sql(stage))[0]
    slow = [int(row["line_no"]) for row in store.select(import_sql.slow_lines_sql(stage))]
    rows: list[EventRow] = []
    numbers: list[int] = []
    for number, line in _lines_numbered(chunk, slow):
        if isinstance(line, UnicodeDecodeError):
            result.reject(first_line - 1 + number, f"not valid UTF-8 ({line.reason})")
            continue
        row = _read_line(first_line - 1 + number, line, result, pseudonymize)
        if row is not None:
            rows.append(row)
            numbers.append(number)
    for start in range(0, len(rows), _BATCH):
        store.insert_staged(stage, rows[start : start + _BATCH], numbers[start : start + _BATCH])
    on_cluster = store.schema.cluster is not None
    threads = os.cpu_count() or 1
    store.execute(import_sql.events_from_stage_sql(stage, store.schema.events, on_cluster, threads))
    store.execute(import_sql.clear_stage_sql(stage))
    result.read_by_engine += int(counts["fast"])
    result.imported += int(counts["fast"]) + len(rows)
    return int(counts["lines"])


def _lines_numbered(path: str, wanted: list[int]) -> Iterator[tuple[int, str | UnicodeDecodeError]]:
    """The file's lines numbered ``wanted`` (ascending), as Python reads them: split at
    ``\\n`` as the engine splits them, decoded as UTF-8 (a bad byte is the line's own error)."""
    if not wanted:
        return
    targets = iter(wanted)
    target = next(targets)
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if number != target:
                continue
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, exc
            target = next(targets, 0)
            if not target:
                return


@contextmanager
def spooled(path: str, stdin: IO[bytes]) -> Iterator[str]:
    """``path``, or for ``-`` standard input copied to a temporary file (the engine reads
    files), removed afterwards."""
    if path != "-":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path}")
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="conversation-import-", suffix=".jsonl") as spool:
        shutil.copyfileobj(stdin, spool, 8 * 1024 * 1024)
        spool.flush()
        yield spool.name


@contextmanager
def _chunks(path: str, chunk_bytes: int) -> Iterator[Iterator[str]]:
    """The file cut at line ends into files of about ``chunk_bytes`` (the file itself when it is
    smaller), in a temporary directory removed afterwards."""
    size = os.path.getsize(path)
    if size <= chunk_bytes:
        yield iter([path])
        return
    directory = tempfile.mkdtemp(prefix="conversation-import-")
    try:
        yield _cut(path, size, chunk_bytes, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _cut(path: str, size: int, chunk_bytes: int, directory: str) -> Iterator[str]:
    with open(path, "rb") as source:
        start, index = 0, 0
        while start < size:
            source.seek(min(size, start + chunk_bytes))
            source.readline()  # on to the end of the line the cut fell in
            end = min(size, source.tell()) if start + chunk_bytes < size else size
            chunk = os.path.join(directory, f"{index:06d}.jsonl")
            with open(chunk, "wb") as target:
                _copy_range(source, target, start, end - start)
            yield chunk
            os.remove(chunk)
            start, index = end, index + 1


def _copy_range(source: IO[bytes], target: IO[bytes], offset: int, length: int) -> None:
    source.seek(offset)
    remaining = length
    while remaining:
        block = source.read(min(remaining, 8 * 1024 * 1024))
        if not block:
            break
        target.write(block)
        remaining -= len(block)
