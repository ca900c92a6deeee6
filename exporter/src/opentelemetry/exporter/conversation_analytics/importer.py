"""Backfill from JSON lines shaped like the article's event records.

Each line: ``{"id", "conversation_id", "user_id", "event_type", "timestamp", "metadata"}``.
Bad lines are reported with their line numbers and skipped; every good line is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final

from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline, Outcome
from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    derived_event_id,
    row_from_attributes,
)
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

SOURCE = "import"
_BATCH = 10_000
#: What a bad line's message is cut to (room for the list of accepted event types).
_MAX_ERROR_CHARS = 300
#: ``event_type`` values a record may have, as a bad line's message lists them.
EVENT_TYPES: Final = tuple(member.value for member in ConversationEvent)


@dataclass
class ImportResult:
    """Counts of one import, and the first errors with their line numbers."""

    imported: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


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
    attributes: dict[str, object] = {
        semconv.metadata_attribute(kind, str(key)): value
        for key, value in metadata.items()
        if value is not None
    }
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


def _rows(
    lines: Iterable[str], result: ImportResult, pseudonymize: UserIdPseudonymizer
) -> Iterator[EventRow]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:  # JSONDecodeError; UnicodeDecodeError
            # The parser's own "line 1 column 5" would sit beside the file's line number and
            # contradict it: keep only what is wrong.
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            result.skipped += 1
            result.errors.append((number, f"not valid JSON ({reason})"[:_MAX_ERROR_CHARS]))
            continue
        try:
            yield row_from_record(record, pseudonymize)
        except (ValueError, TypeError, OverflowError) as exc:
            result.skipped += 1
            result.errors.append((number, str(exc)[:_MAX_ERROR_CHARS]))


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
