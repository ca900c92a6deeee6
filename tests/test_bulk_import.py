"""The engine-side import equals the all-Python import, row for row, on messy files.

``import_file`` lets ClickHouse parse the lines and hands Python only what its SQL cannot read
exactly; ``import_lines`` is the all-Python reference. Both import the same bytes into two
databases of one embedded store; every stored column, the report and the bad-line messages must
be the same.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from opentelemetry.exporter.conversation_analytics.importer import (
    ImportFailed,
    ImportResult,
    import_file,
    import_lines,
)
from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import MAX_ID_LENGTH, MAX_STRING_LENGTH
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.exporter.conversation_analytics.store.chdb_store import ChdbStore
from opentelemetry.exporter.conversation_analytics.store.sql import EVENT_COLUMN_NAMES, Schema
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

NOW = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
KINDS = [member.value for member in ConversationEvent]


# ---- messy records -----------------------------------------------------------------------------


def _timestamp(rng: random.Random) -> object:
    moment = NOW - timedelta(seconds=rng.randrange(0, 5 * 86400), microseconds=rng.randrange(10**6))
    local = moment.replace(tzinfo=None)
    return rng.choice(
        [
            local.isoformat(),  # the article's utcnow().isoformat()
            local.isoformat(timespec="milliseconds"),
            local.isoformat(timespec="seconds"),
            local.isoformat(" "),
            moment.isoformat(),
            moment.isoformat().replace("+00:00", "Z"),
            moment.isoformat().replace("+00:00", "z"),
            moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
            moment.astimezone(timezone(-timedelta(hours=23, minutes=59))).isoformat(),
            local.isoformat(timespec="microseconds")[:-5],  # one fractional digit (3.11+ only)
            local.isoformat() + "7",  # seven fractional digits
            int(moment.timestamp()),
            moment.timestamp(),  # float epoch seconds
            f" {local.isoformat()} ",
            "2025-02-29T10:00:00",
            "2024-02-29T10:00:00",
            "2024-04-31T10:00:00",
            "2024-01-01T23:59:60",
            "2024-01-01T24:00:00",
            "2024-01-01T10:00:00+24:00",
            "1970-01-01T00:30:00+01:00",
            "1970-01-01T01:30:00+01:00",
            "2261-12-31T23:59:59.999999",
            "2262-01-01T00:00:00",
            -5,
            9_214_646_400,
            True,
            None,
            "yesterday",
        ]
    )


def _value(rng: random.Random) -> object:
    return rng.choice(
        [
            3,
            -7,
            0,
            3.0,
            2.5,
            1e5,
            -0.0,
            2**31,
            -(2**31),
            2**40,
            10**25,
            0.9,
            "0.9",
            "4",
            " 5 ",
            "",
            "text",
            "é ü 漢字 😀",
            'line\nbreak\t"quoted" back\\slash',
            "x" * (MAX_STRING_LENGTH + 5),
            True,
            False,
            None,
            [1, 2],
            {"nested": 1},
        ]
    )


_KEYS = [
    *semconv.KEYWORD_ATTRIBUTES,
    semconv.MODEL_KEYWORD,
    *sorted(semconv.CONTENT_KEYWORDS),
    semconv.TURN,
    semconv.REQUEST_MODEL,
    semconv.USER_ID,
    semconv.CONVERSATION_ID,
    semconv.EVENT_ID,
    semconv.METADATA_PREFIX + "plan",
    semconv.DERIVED,
    "plan",
    "tier",
    "k" * (MAX_STRING_LENGTH + 3),
]


def _metadata(rng: random.Random) -> object:
    shape = rng.random()
    if shape < 0.05:
        return rng.choice([None, [], "x", False, 0, [1], "", {}])
    entries = {rng.choice(_KEYS): _value(rng) for _ in range(rng.randrange(0, 6))}
    if rng.random() < 0.3:  # the article's own shapes, readable by the engine
        entries = {"turn": rng.randrange(1, 9), "message_length": rng.randrange(1, 900)}
    if rng.random() < 0.02:
        entries.update({f"extra{i}": "v" for i in range(70)})
    return entries


def messy_record(rng: random.Random, index: int) -> dict[str, Any]:
    """A record with metadata of every kind, and in two of five one messy record-level field."""
    rec: dict[str, Any] = {
        "id": f"ev-{index}",
        "conversation_id": f"c{index % 40}",
        "user_id": rng.choice(["u1", "user-é", "", None, "u2"]),
        "event_type": rng.choice([*KINDS, "conversation.completed"]),
        "timestamp": (NOW - timedelta(seconds=rng.randrange(5 * 86400))).isoformat(),
        "metadata": {rng.choice(_KEYS): _value(rng) for _ in range(rng.randrange(0, 3))},
    }
    if rng.random() < 0.4:
        field = rng.choice(
            ["id", "conversation_id", "user_id", "event_type", "timestamp", "metadata", "drop"]
        )
        if field == "drop":
            del rec[rng.choice(list(rec))]
        else:
            rec[field] = {
                "id": lambda: rng.choice(["", None, index, "i" * (MAX_ID_LENGTH + 1)]),
                "conversation_id": lambda: rng.choice(["", None, 7, "c" * MAX_ID_LENGTH, ["c"]]),
                "user_id": lambda: rng.choice([42, True, {"u": 1}]),
                "event_type": lambda: rng.choice(["nope", 3, None, "Completed"]),
                "timestamp": lambda: _timestamp(rng),
                "metadata": lambda: _metadata(rng),
            }[field]()
    return rec


def messy_lines(seed: int, count: int) -> list[bytes]:
    """Records as JSON lines, with hand-made lines JSON encoders never write mixed in."""
    rng = random.Random(seed)
    lines = [
        json.dumps(messy_record(rng, i), ensure_ascii=rng.random() < 0.3).encode() + b"\n"
        for i in range(count)
    ]
    first = lines[0]
    specials = [
        b"\n",
        b"   \t \n",
        b"\xc2\xa0\n",  # a no-break space: blank to Python's strip()
        b"not json\n",
        b'{"id": "x1", "conversation_id": "c1"\n',
        b'{"id": "x2", "id": "x3", "conversation_id": "c1", "event_type": "started", '
        b'"timestamp": "2024-01-01T00:00:00"}\n',
        b'{"id": "x4", "conversation_id": "c1", "event_type": "started", '
        b'"timestamp": "2024-01-01T00:00:00", "metadata": {"turn": 1, "turn": 2}}\n',
        # A key named twice with a null: Python keeps the last value, whichever it is.
        b'{"id": "x4a", "conversation_id": "c1", "event_type": "user_message", '
        b'"timestamp": "2024-01-01T00:00:00", "metadata": {"turn": 1, "turn": null}}\n',
        b'{"id": "x4b", "conversation_id": "c1", "event_type": "user_message", '
        b'"timestamp": "2024-01-01T00:00:00", "metadata": {"turn": null, "turn": 3}}\n',
        b'{"id": "x5", "conversation_id": "c1", "event_type": "user_message", '
        b'"timestamp": "2024-01-01T00:00:00", "metadata": {"turn": NaN}}\n',
        b'{"id": "x6\xff", "conversation_id": "c1"}\n',  # invalid UTF-8
        b'{"id": "x7", "conversation_id": "c\\ud800", "event_type": "started", '
        b'"timestamp": "2024-01-01T00:00:00"}\n',
        b'{"id": "x8", "conversation_id": "c\\ud83d\\ude00", "event_type": "started", '
        b'"timestamp": "2024-01-01T00:00:00"}\n',
        b'{"id": "x9", "conversation_id": "c1", "event_type": "started", '
        b'"timestamp": "2024-01-01T00:00:00", "metadata": {"turn": 12345678901234567890123}}\n',
        b'{"id": "x10", "conversation_id": "c1", "event_type": "started", '
        b'"timestamp": "2024-01-01T00:00:00"} trailing\n',
        b'{"id": "x11", "conversation_id": "c1", "event_type": "started", '
        b'"timestamp": "2024-01-01T00:00:00"}\r\n',
        b"[1, 2]\n",
        b'"a string"\n',
        first,  # the same event again: stored once
    ]
    for special in specials:
        lines.insert(rng.randrange(len(lines)), special)
    return lines


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[ConversationStore, ConversationStore]]:
    """Two databases of one embedded store: the Python path's and the engine's."""
    stores = [ChdbStore(str(tmp_path / "store"), Schema(database=name)) for name in ("py", "eng")]
    for store in stores:
        store.apply_schema()
    yield stores[0], stores[1]
    for store in stores:
        store.close()


@pytest.fixture
def eng(two_stores: tuple[ConversationStore, ConversationStore]) -> ConversationStore:
    """The engine path's store, where a test needs no Python reference."""
    return two_stores[1]


def python_import(
    store: ConversationStore, lines: list[bytes], pseudonymize: UserIdPseudonymizer
) -> ImportResult:
    """The all-Python import of the same bytes. A text stream cannot hold a line that is not
    UTF-8: that line is left blank here and its expected message added, as the engine path
    reports it."""
    pipe = ConversationPipeline(store)
    text: list[str] = []
    undecodable: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        try:
            text.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            text.append("\n")
            undecodable.append((number, f"not valid UTF-8 ({exc.reason})"))
    try:
        result = import_lines(text, pipe, pseudonymize)
    finally:
        pipe.close()
    result.errors = sorted(result.errors + undecodable)
    result.skipped += len(undecodable)
    return result


def stored(store: ConversationStore) -> list[dict[str, Any]]:
    """Every stored event, all columns, in a fixed order."""
    columns = ", ".join(f"`{name}`" for name in EVENT_COLUMN_NAMES)
    return store.select(
        f"SELECT {columns} FROM {store.schema.events} FINAL ORDER BY event_id, conversation_id"
    )


def started(conversation_id: str, **fields: object) -> bytes:
    """One engine-readable ``started`` record as a line, with ``fields`` added."""
    record = {
        "id": f"e-{conversation_id}",
        "conversation_id": conversation_id,
        "event_type": "started",
        "timestamp": NOW.isoformat(),
        **fields,
    }
    return json.dumps(record).encode() + b"\n"


def write(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"".join(lines))
    return str(path)


# ---- equal to the Python path ------------------------------------------------------------------


class TestSameAsPython:
    """The engine's import stores what the all-Python import stores."""

    @pytest.mark.parametrize("seed", [1, 2, 3])
    @pytest.mark.parametrize("chunk_bytes", [1 << 30, 7_000], ids=["one-chunk", "many-chunks"])
    def test_messy_file_row_for_row(
        self,
        two_stores: tuple[ConversationStore, ConversationStore],
        tmp_path: Path,
        seed: int,
        chunk_bytes: int,
    ) -> None:
        """Every column of every event, the report and the bad lines are the Python path's."""
        py, eng = two_stores
        lines = messy_lines(seed, 600)
        key = UserIdPseudonymizer("bulk-key")
        expected = python_import(py, lines, key)
        result = import_file(write(tmp_path / "in.jsonl", lines), eng, key, chunk_bytes=chunk_bytes)
        assert stored(eng) == stored(py)
        assert StoreReader(eng).report(7).to_dict() == StoreReader(py).report(7).to_dict()
        assert result.imported == expected.imported
        assert result.skipped == expected.skipped
        assert result.errors == expected.errors
        # Both parts of the engine path ran: most lines by SQL, the awkward ones by Python.
        assert 0 < result.read_by_engine < result.imported

    def test_article_lines_are_all_read_by_the_engine(
        self, two_stores: tuple[ConversationStore, ConversationStore], tmp_path: Path
    ) -> None:
        """Records shaped as the article writes them never fall back to Python (the speed)."""
        py, eng = two_stores
        rng = random.Random(9)
        lines = []
        for index in range(500):
            kind = KINDS[index % len(KINDS)]
            moment = NOW - timedelta(seconds=index, microseconds=rng.randrange(10**6))
            rec = {
                "id": f"ev-{index}",
                "conversation_id": f"conv-{index // 10}",
                "user_id": f"user-{index % 7}",
                "event_type": kind,
                "timestamp": moment.replace(tzinfo=None).isoformat(),
                "metadata": {
                    "turn": index % 5,
                    "rating": "positive",
                    "similarity": 0.91,
                    "model": "gpt-4o",
                    "message": "never stored",
                    "plan": "pro",
                },
            }
            lines.append(json.dumps(rec).encode() + b"\n")
        key = UserIdPseudonymizer("k")
        expected = python_import(py, lines, key)
        result = import_file(write(tmp_path / "a.jsonl", lines), eng, key)
        assert result.read_by_engine == result.imported == expected.imported == 500
        assert stored(eng) == stored(py)


class TestIdempotent:
    """A re-import stores and rolls up nothing twice, however the file is cut."""

    def test_reimport_in_other_chunks_changes_nothing(
        self, eng: ConversationStore, tmp_path: Path
    ) -> None:
        path = write(tmp_path / "in.jsonl", messy_lines(4, 400))
        key = UserIdPseudonymizer("k")
        import_file(path, eng, key)
        before = (stored(eng), StoreReader(eng).report(7).to_dict())
        import_file(path, eng, key, chunk_bytes=5_000)
        import_file(path, eng, key, chunk_bytes=11_000)
        assert (stored(eng), StoreReader(eng).report(7).to_dict()) == before
        rolled = eng.select(f"SELECT sum(user_messages) AS n FROM {eng.schema.rollup}")
        events = eng.select(
            f"SELECT countIf(event_type = 'user_message') AS n FROM {eng.schema.events} FINAL"
        )
        assert int(rolled[0]["n"]) == int(events[0]["n"])  # the rollup counted each event once


class TestPseudonymised:
    """User ids are hashed by the engine exactly as the agent's pseudonymiser hashes them."""

    @pytest.mark.parametrize("key", ["short", "k" * 200], ids=["short-key", "key-over-a-block"])
    def test_engine_hash_is_the_pseudonymisers(
        self, eng: ConversationStore, tmp_path: Path, key: str
    ) -> None:
        users = ["u1", "user-é 漢字", "x" * 300]
        lines = [started(f"c{i}", user_id=user) for i, user in enumerate(users)]
        pseudonymize = UserIdPseudonymizer(key)
        result = import_file(write(tmp_path / "u.jsonl", lines), eng, pseudonymize)
        assert result.read_by_engine == 3
        got = {row["conversation_id"]: row["user_id"] for row in stored(eng)}
        assert got == {f"c{i}": pseudonymize(user) for i, user in enumerate(users)}

    def test_disabled_keeps_raw_ids(self, eng: ConversationStore, tmp_path: Path) -> None:
        line = started("c", user_id="raw-7")
        import_file(
            write(tmp_path / "r.jsonl", [line]),
            eng,
            UserIdPseudonymizer("k", enabled=False),
        )
        assert [row["user_id"] for row in stored(eng)] == ["raw-7"]

    def test_metadata_cannot_carry_a_raw_user_id(
        self, two_stores: tuple[ConversationStore, ConversationStore], tmp_path: Path
    ) -> None:
        """A ``user.id`` metadata key is ignored on both paths: never stored unhashed."""
        py, eng = two_stores
        line = started("c", metadata={semconv.USER_ID: "raw"})
        key = UserIdPseudonymizer("k")
        python_import(py, [line], key)
        import_file(write(tmp_path / "m.jsonl", [line]), eng, key)
        for store in (py, eng):
            row = stored(store)[0]
            assert row["user_id"] == "" and "raw" not in json.dumps(row)


class TestFaults:
    """A store that goes away stops the import with a clear error; what was in stays in."""

    def test_closed_store_is_an_import_failure(
        self, eng: ConversationStore, tmp_path: Path
    ) -> None:
        path = write(tmp_path / "in.jsonl", messy_lines(5, 50))
        eng.close()
        with pytest.raises(ImportFailed, match="store is closed"):
            import_file(path, eng, UserIdPseudonymizer("k"))

    def test_stage_is_dropped_after_the_import(
        self, eng: ConversationStore, tmp_path: Path
    ) -> None:
        import_file(write(tmp_path / "in.jsonl", messy_lines(6, 50)), eng, UserIdPseudonymizer("k"))
        tables = eng.select(
            "SELECT name FROM system.tables WHERE database = {d:String}", {"d": "eng"}
        )
        assert not [row for row in tables if row["name"].startswith("import_stage_")]
