"""``import``: backfill from the article's JSON-lines event records, in-process and via the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from opentelemetry.exporter.conversation_analytics.importer import ImportResult, import_lines
from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import MAX_ID_LENGTH
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, open_store
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer

CLI = (sys.executable, "-m", "opentelemetry.exporter.conversation_analytics.cli")
USER_KEY = "import-test-key"
#: Well inside the default 7-day report window, and clear of the window's edges.
BASE = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


def at(seconds: float) -> str:
    """ISO 8601 text ``seconds`` after :data:`BASE`."""
    return (BASE + timedelta(seconds=seconds)).isoformat()


def record(
    conversation_id: str,
    event_type: str,
    seconds: float,
    *,
    event_id: str | None = None,
    user_id: str = "user-1",
    **metadata: Any,
) -> dict[str, Any]:
    """One article-shaped record (``id`` left out when ``event_id`` is None)."""
    rec: dict[str, Any] = {
        "conversation_id": conversation_id,
        "user_id": user_id,
        "event_type": event_type,
        "timestamp": at(seconds),
        "metadata": metadata,
    }
    if event_id is not None:
        rec["id"] = event_id
    return rec


def jsonl(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(rec, ensure_ascii=False) + "\n" for rec in records]


def fleet(with_ids: bool = True) -> list[dict[str, Any]]:
    """Four small conversations whose section 4 numbers are worked out in :data:`FLEET_REPORT`.

    c1: 1 message, completed after 20 s.  c2: 3 messages, handoff, abandoned at turn 3.
    c3: 2 messages, completed after 45 s.  c4: 1 message, abandoned at turn 1.
    """
    events = [
        ("c1", "started", 0, {"channel": "web"}),
        ("c1", "user_message", 5, {"turn": 1}),
        ("c1", "agent_response", 8, {"turn": 1}),
        ("c1", "completed", 20, {"total_turns": 1}),
        ("c2", "started", 100, {}),
        ("c2", "user_message", 101, {"turn": 1}),
        ("c2", "user_message", 102, {"turn": 2}),
        ("c2", "user_message", 103, {"turn": 3}),
        ("c2", "handoff_requested", 104, {"turn": 3, "reason": "asked for a human"}),
        ("c2", "abandoned", 105, {"abandoned_at_turn": 3}),
        ("c3", "started", 200, {}),
        ("c3", "user_message", 210, {"turn": 1}),
        ("c3", "user_message", 220, {"turn": 2}),
        ("c3", "completed", 245, {"total_turns": 2}),
        ("c4", "started", 300, {}),
        ("c4", "user_message", 301, {"turn": 1}),
        ("c4", "abandoned", 302, {"abandoned_at_turn": 1}),
    ]
    return [
        record(cid, kind, sec, event_id=f"{cid}-{n}" if with_ids else None, **meta)
        for n, (cid, kind, sec, meta) in enumerate(events)
    ]


FLEET_EVENTS = 17
# By hand: 4 conversations; completed c1, c3 -> 50.0; abandoned c2, c4 -> 50.0; handoff c2 -> 25.0;
# messages 1 + 3 + 2 + 1 = 7 over 4 = 1.75 -> 1.8 (half away from zero); durations 20 s and 45 s
# -> 32.5 -> 33; one abandonment at turn 1 and one at turn 3 (ties: lower turn first).
FLEET_REPORT: dict[str, Any] = {
    "total_conversations": 4,
    "completion_rate": 50.0,
    "abandonment_rate": 50.0,
    "handoff_rate": 25.0,
    "avg_turns": 1.8,
    "avg_duration_seconds": 33,
    "drop_off": [{"turn": 1, "count": 1}, {"turn": 3, "count": 1}],
}

BAD_LINES: list[tuple[str, str, str]] = [
    # (case, line, a word the error message must contain)
    ("invalid_json", '{"conversation_id": "c9", "event_type": ', ""),
    (
        "missing_conversation_id",
        json.dumps({"id": "x1", "user_id": "u", "event_type": "started", "timestamp": at(1)}),
        "conversation_id",
    ),
    (
        "unknown_event_type",
        json.dumps({"conversation_id": "c9", "event_type": "exploded", "timestamp": at(1)}),
        "exploded",
    ),
    (
        "bad_timestamp",
        json.dumps({"conversation_id": "c9", "event_type": "started", "timestamp": "yesterday"}),
        "yesterday",
    ),
    (
        "impossible_date",
        json.dumps({"conversation_id": "c9", "event_type": "started", "timestamp": "2024-13-01"}),
        "month",
    ),
    (
        "missing_timestamp",
        json.dumps({"conversation_id": "c9", "event_type": "started"}),
        "timestamp",
    ),
    (
        "metadata_not_object",
        json.dumps(
            {"conversation_id": "c9", "event_type": "started", "timestamp": at(1), "metadata": [1]}
        ),
        "metadata",
    ),
    (
        "id_too_long",
        json.dumps(
            {
                "conversation_id": "x" * (MAX_ID_LENGTH + 1),
                "event_type": "started",
                "timestamp": at(1),
            }
        ),
        str(MAX_ID_LENGTH),
    ),
    ("not_an_object", "[1, 2, 3]", "object"),
]

HOSTILE_IDS = [
    "'; DROP TABLE x; --",
    'it\'s "quoted" `back`ticks',
    "会话-😀-Ünïcödé",
    "{cid:String} %s ? $1",
    "nul\x00 and cr\r",
    "x" * MAX_ID_LENGTH,
    "C:\\new\\table\\",
    "line\nbreak\ttab",
]


@pytest.fixture
def pipeline(store: ConversationStore) -> Iterator[ConversationPipeline]:
    pipe = ConversationPipeline(store)
    yield pipe
    pipe.close()


@pytest.fixture
def pseudonymize() -> UserIdPseudonymizer:
    return UserIdPseudonymizer(USER_KEY)


def report_numbers(store: ConversationStore) -> dict[str, Any]:
    """The SPEC keys of the store's report (what a re-import must leave unchanged)."""
    data = StoreReader(store).report(7).to_dict()
    return {key: data[key] for key in FLEET_REPORT}


def run_import(
    store: ConversationStore, lines: list[str], pseudonymize: UserIdPseudonymizer
) -> ImportResult:
    """Import through a fresh pipeline, as a new ``import`` process would (no shared dedupe)."""
    pipe = ConversationPipeline(store)
    try:
        return import_lines(lines, pipe, pseudonymize)
    finally:
        pipe.close()


def run_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATION_ANALYTICS_")}
    env["CONVERSATION_ANALYTICS_USER_ID_KEY"] = USER_KEY
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=180,
        check=False,
    )


# ---- in-process ---------------------------------------------------------------------------------


def test_import_fleet_gives_hand_computed_report(
    store: ConversationStore, pipeline: ConversationPipeline, pseudonymize: UserIdPseudonymizer
) -> None:
    """Every record is stored and the report gives the section 4 numbers worked out by hand."""
    result = import_lines(jsonl(fleet()), pipeline, pseudonymize)
    assert (result.imported, result.skipped, result.errors) == (FLEET_EVENTS, 0, [])
    assert store.count_events() == FLEET_EVENTS
    assert report_numbers(store) == FLEET_REPORT


@pytest.mark.parametrize(
    ("bad", "word"), [(bad, word) for _, bad, word in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_bad_line_is_skipped_with_its_line_number(
    store: ConversationStore,
    pipeline: ConversationPipeline,
    pseudonymize: UserIdPseudonymizer,
    bad: str,
    word: str,
) -> None:
    """A bad line between good ones is reported with its number; both good lines are kept."""
    good = jsonl([record("g", "started", 0, event_id="g0"), record("g", "completed", 9)])
    result = import_lines([good[0], bad + "\n", good[1]], pipeline, pseudonymize)
    assert result.imported == 2
    assert result.skipped == 1
    assert [number for number, _ in result.errors] == [2]
    assert word in result.errors[0][1]
    assert store.count_events() == 2


def test_mixed_file_keeps_every_good_line(
    store: ConversationStore, pipeline: ConversationPipeline, pseudonymize: UserIdPseudonymizer
) -> None:
    """All bad kinds at once (plus blank lines): each is numbered, blanks are no error."""
    good = jsonl(fleet())
    lines = [good[0], "\n", *(bad + "\n" for _, bad, _ in BAD_LINES), "   \n", *good[1:]]
    bad_numbers = list(range(3, 3 + len(BAD_LINES)))
    result = import_lines(lines, pipeline, pseudonymize)
    assert result.imported == FLEET_EVENTS
    assert result.skipped == len(BAD_LINES)
    assert [number for number, _ in result.errors] == bad_numbers
    assert store.count_events() == FLEET_EVENTS
    assert report_numbers(store) == FLEET_REPORT


@pytest.mark.parametrize("with_ids", [True, False], ids=["with-id", "derived-id"])
def test_reimport_changes_nothing(
    store: ConversationStore, pseudonymize: UserIdPseudonymizer, with_ids: bool
) -> None:
    """Importing the same records again (with or without ``id``) changes no count or number."""
    lines = jsonl(fleet(with_ids))
    run_import(store, lines, pseudonymize)
    first = (store.count_events(), report_numbers(store))
    second_result = run_import(store, lines, pseudonymize)
    assert second_result.skipped == 0
    assert (store.count_events(), report_numbers(store)) == first == (FLEET_EVENTS, FLEET_REPORT)


def test_user_ids_are_pseudonymised(
    store: ConversationStore, pipeline: ConversationPipeline, pseudonymize: UserIdPseudonymizer
) -> None:
    """Stored user ids are the keyed pseudonym: stable per user, distinct per user, never raw."""
    raw = ["alice@example.com", "alice@example.com", "bob@example.com"]
    records = [
        record("pc", kind, n, event_id=f"pc-{n}", user_id=user)
        for n, (kind, user) in enumerate(
            zip(["started", "user_message", "feedback_received"], raw, strict=True)
        )
    ]
    import_lines(jsonl(records), pipeline, pseudonymize)
    stored = [event["user_id"] for event in StoreReader(store).conversation("pc").events]
    assert stored == [pseudonymize(user) for user in raw]
    assert stored[0] == stored[1] != stored[2]
    assert not set(raw) & set(stored)
    dump = json.dumps(StoreReader(store).conversation("pc").to_dict())
    assert "alice" not in dump
    assert "bob" not in dump


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_ids_round_trip(
    store: ConversationStore,
    pipeline: ConversationPipeline,
    pseudonymize: UserIdPseudonymizer,
    hostile: str,
) -> None:
    """Quotes, SQL, unicode and control characters in ids are stored and found back exactly."""
    records = [
        record(hostile, "started", 0, event_id=hostile),
        record(hostile, "completed", 30, event_id=hostile[:-1] + "!", extra=hostile),
    ]
    result = import_lines(jsonl(records), pipeline, pseudonymize)
    assert (result.imported, result.skipped) == (2, 0)
    detail = StoreReader(store).conversation(hostile)
    assert detail.conversation_id == hostile
    assert [e["event_id"] for e in detail.events] == [hostile, hostile[:-1] + "!"]
    assert detail.events[1]["attributes"] == {"extra": hostile}
    report = StoreReader(store).report(7)
    assert (report.total_conversations, report.completion_rate) == (1, 100.0)
    assert report.avg_duration_seconds == 30


@pytest.mark.parametrize(
    "pair",
    [("a\\b", "a\\\\b"), ("a\nb", "a\\nb"), ("a\tb", "a\\tb"), ("a'b", "a''b")],
    ids=["backslash", "newline", "tab", "quote"],
)
def test_ids_differing_only_in_escapes_stay_apart(
    store: ConversationStore,
    pipeline: ConversationPipeline,
    pseudonymize: UserIdPseudonymizer,
    pair: tuple[str, str],
) -> None:
    """Two ids that differ only as escaped text are two conversations, each found on its own."""
    records = [record(cid, "started", n, event_id=f"e{n}") for n, cid in enumerate(pair)]
    import_lines(jsonl(records), pipeline, pseudonymize)
    for n, cid in enumerate(pair):
        assert [e["event_id"] for e in StoreReader(store).conversation(cid).events] == [f"e{n}"]
    assert StoreReader(store).report(7).total_conversations == 2


# Known bug (reported): timestamps Python parses but the store's text format cannot hold (before
# 1970, or from 2286 on) are not rejected per line; the whole batch, good lines included, fails.
OUT_OF_RANGE_TIMESTAMPS = [-1, -5e12, 1e30, "1899-01-01T00:00:00", "2299-12-31T23:59:59"]


@pytest.mark.parametrize("timestamp", OUT_OF_RANGE_TIMESTAMPS)
def test_out_of_range_timestamp_is_a_bad_line(
    store: ConversationStore, pseudonymize: UserIdPseudonymizer, timestamp: object
) -> None:
    """A timestamp the store cannot hold is reported as a bad line; the good lines are kept."""
    pipe = ConversationPipeline(store, max_attempts=1)
    bad = {"id": "b", "conversation_id": "g", "event_type": "user_message", "timestamp": timestamp}
    lines = [*jsonl([record("g", "started", 0, event_id="g0")]), json.dumps(bad) + "\n"]
    try:
        result = import_lines(lines, pipe, pseudonymize)
    finally:
        pipe.close()
    assert [number for number, _ in result.errors] == [2]
    assert store.count_events() == 1


def test_derived_id_ignores_missing_final_newline(
    store: ConversationStore, pseudonymize: UserIdPseudonymizer
) -> None:
    """A last line without a newline, re-imported after the file grew, is not counted twice."""
    lines = jsonl(fleet(with_ids=False))
    first = [*lines[:3], lines[3].rstrip("\n")]  # c1 up to "completed", no final newline
    run_import(store, first, pseudonymize)
    run_import(store, lines, pseudonymize)
    assert store.count_events() == FLEET_EVENTS


# ---- the CLI -------------------------------------------------------------------------------------


@contextmanager
def opened(store_url: str) -> Iterator[ConversationStore]:
    """Open the store in this process only after the CLI processes are done with it."""
    store = open_store(store_url)
    try:
        yield store
    finally:
        store.close()


def cli_report(store_url: str, cwd: Path) -> dict[str, Any]:
    done = run_cli("report", "--format", "json", "--store", store_url, cwd=cwd)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    return {key: data[key] for key in FLEET_REPORT}


@pytest.fixture
def mixed_file(tmp_path: Path) -> tuple[Path, list[int]]:
    """The fleet with every kind of bad line and blank lines mixed in; and the bad line numbers."""
    good = jsonl(fleet())
    lines = [*good[:5], "\n", *(bad + "\n" for _, bad, _ in BAD_LINES), *good[5:], "\n"]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path, list(range(7, 7 + len(BAD_LINES)))


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_cli_import_reports_bad_lines_and_keeps_good_ones(
    store_url: str, tmp_path: Path, mixed_file: tuple[Path, list[int]], source: str
) -> None:
    """``import`` exits 0, names each bad line on stderr and stores every good one."""
    path, bad_numbers = mixed_file
    if source == "file":
        done = run_cli("import", str(path), "--store", store_url, cwd=tmp_path)
        name = str(path)
    else:
        text = path.read_text(encoding="utf-8")
        done = run_cli("import", "-", "--store", store_url, cwd=tmp_path, stdin=text)
        name = "-"
    assert done.returncode == 0, done.stderr
    for number in bad_numbers:
        assert f"{name}:{number}: skipped:" in done.stderr
    assert done.stderr.count(": skipped: ") == len(BAD_LINES)
    assert f"imported {FLEET_EVENTS} events, skipped {len(BAD_LINES)} bad lines" in done.stdout
    assert cli_report(store_url, tmp_path) == FLEET_REPORT


@pytest.mark.parametrize("with_ids", [True, False], ids=["with-id", "derived-id"])
def test_cli_import_twice_is_idempotent(store_url: str, tmp_path: Path, with_ids: bool) -> None:
    """Running ``import`` on the same file in two processes leaves every report number as once."""
    path = tmp_path / "fleet.jsonl"
    path.write_text("".join(jsonl(fleet(with_ids))), encoding="utf-8")
    for _ in range(2):
        done = run_cli("import", str(path), "--store", store_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert cli_report(store_url, tmp_path) == FLEET_REPORT
    with opened(store_url) as store:
        assert store.count_events() == FLEET_EVENTS


def test_cli_import_pseudonymises_with_the_configured_key(store_url: str, tmp_path: Path) -> None:
    """The CLI hashes user ids under $CONVERSATION_ANALYTICS_USER_ID_KEY; raw ids are not stored."""
    raw = "carol+secret@example.com"
    path = tmp_path / "one.jsonl"
    path.write_text("".join(jsonl([record("pk", "started", 0, user_id=raw)])), encoding="utf-8")
    assert run_cli("import", str(path), "--store", store_url, cwd=tmp_path).returncode == 0
    done = run_cli("conversation", "pk", "--format", "json", "--store", store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "carol" not in done.stdout
    events = json.loads(done.stdout)["events"]
    assert [e["user_id"] for e in events] == [UserIdPseudonymizer(USER_KEY)(raw)]


def test_cli_import_missing_file_fails_cleanly(store_url: str, tmp_path: Path) -> None:
    """A file that does not exist is a one-line error and exit 1, not a traceback."""
    done = run_cli("import", str(tmp_path / "nope.jsonl"), "--store", store_url, cwd=tmp_path)
    assert done.returncode == 1
    assert "error" in done.stderr
    assert "Traceback" not in done.stderr


def test_readme_lists_every_accepted_event_type_and_metadata_key() -> None:
    """The README's import section names every event type and metadata keyword the importer
    accepts, so a user can write a file without reading the code."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("Backfill history from JSON lines")
    section = readme[start : readme.index("\n## ", start)]
    keywords = {*semconv.KEYWORD_ATTRIBUTES, semconv.MODEL_KEYWORD, *semconv.CONTENT_KEYWORDS}
    named = [
        f"`{name}`" for name in (*(kind.value for kind in semconv.ConversationEvent), *keywords)
    ]
    assert [name for name in named if name not in section] == []
