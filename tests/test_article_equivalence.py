"""The product's numbers equal the seed article's PostgreSQL SQL on the same events.

The same seeded, messy event sets go into a real PostgreSQL (table ``conversation_events`` as the
article implies, queried with the article's own SQL and satisfaction function) and, through the
JSON-lines importer, into the chDB store. The article's one bug is fixed: ``INTERVAL ':days days'``
puts a bound parameter inside a string, so the window is ``%(now)s - make_interval(days => ...)``
with a fixed ``now`` instead of ``NOW()``.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb

from article_design import (
    ARTICLE_DROP_OFF_SQL,
    ARTICLE_METRICS_SQL,
    CREATE_TABLE,
    INSERT,
)
from opentelemetry.exporter.conversation_analytics.analytics import Report
from opentelemetry.exporter.conversation_analytics.importer import row_from_record
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent
from postgres_server import find_bin_dir, postgres_server

DAYS = 7
Record = dict[str, Any]
PgConnection = psycopg.Connection[tuple[Any, ...]]

#: The query of the article's ``calculate_satisfaction_score``.
ARTICLE_SATISFACTION_SQL = """
    SELECT event_type, metadata
    FROM conversation_events
    WHERE conversation_id = %(cid)s
    ORDER BY timestamp
"""


def article_satisfaction(db: PgConnection, conversation_id: str) -> float:
    """The article's ``calculate_satisfaction_score``, verbatim but for the synchronous driver."""
    with db.cursor(row_factory=namedtuple_row) as events:
        rows = events.execute(ARTICLE_SATISFACTION_SQL, {"cid": conversation_id}).fetchall()
    signals: list[float] = []
    for row in rows:
        if row.event_type == "feedback_received":
            rating = row.metadata.get("rating")
            if rating == "positive":
                signals.append(1.0)
            elif rating == "negative":
                signals.append(0.0)
    # Implicit signals
    user_messages = [r for r in rows if r.event_type == "user_message"]
    completed = any(r.event_type == "completed" for r in rows)
    handoff = any(r.event_type == "handoff_requested" for r in rows)
    if completed and len(user_messages) <= 3:
        signals.append(0.9)  # Resolved quickly
    elif handoff:
        signals.append(0.3)  # Needed human help
    elif not completed:
        signals.append(0.1)  # Abandoned
    # Detect rephrasing (user sends similar messages multiple times)
    if len(user_messages) > 2:
        rephrase_penalty = max(0, (len(user_messages) - 3) * 0.1)
        signals.append(max(0.0, 0.8 - rephrase_penalty))
    return sum(signals) / len(signals) if signals else 0.5


# ---- seeded, messy, article-shaped event sets ------------------------------------------------

#: Ids that break naive quoting, parameter substitution, escaping or Unicode handling.
NASTY_IDS: tuple[str, ...] = (
    "O'Brien",
    'say "hi"',
    "'; DROP TABLE conversation_events; --",
    "Robert'); DELETE FROM conversation_events WHERE ('1'='1",
    "back\\slash",
    "\\N",
    "\\'",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "\x01control\x1f",
    "{cid:String}",
    "{since:DateTime64(6, 'UTC')}",
    "%(cid)s",
    "%s",
    "$1",
    ":cid",
    "?",
    "`backtick`",
    "NULL",
    "null",
    "会話-セッション",
    "😀🎉",
    "é",  # NFC
    "e\u0301",  # NFD: a different id that looks the same
    "Ω",  # OHM SIGN
    "Ω",  # GREEK CAPITAL OMEGA
    "ﬁ",
    "zero\u200bwidth",
    "مرحبا",
    " padded ",
    "padded",
    "x" * 480,
)
RATINGS: tuple[object, ...] = (
    "positive",
    "negative",
    "positive",
    "negative",
    "positive",
    "neutral",
    "Positive",
    None,
    5,
)
MODELS = ("gpt-4o", "claude-sonnet", "llama-3.1-70b")
TOOLS = ("search", "lookup_order", "refund", "escalate'); --")
_TZ_IST = timezone(timedelta(hours=5, minutes=30))
_TZ_NST = timezone(timedelta(hours=-3, minutes=-30))


@dataclass(frozen=True)
class Scenario:
    """One seeded event set: ``shape`` is where conversations fall relative to the window."""

    seed: int
    now: datetime
    shape: str = "mixed"  # mixed | edge | stale | unstarted
    conversations: int = 300

    @property
    def since(self) -> datetime:
        return self.now - timedelta(days=DAYS)

    @property
    def edge(self) -> datetime:
        """The first full hour at or after the window start (the product's rollup boundary)."""
        floor = self.since.replace(minute=0, second=0, microsecond=0)
        return floor if floor == self.since else floor + timedelta(hours=1)


SCENARIOS = (
    Scenario(11, datetime(2025, 3, 14, 12, 34, 56, 789012, tzinfo=timezone.utc)),
    Scenario(22, datetime(2025, 6, 1, 0, 0, tzinfo=timezone.utc)),
    Scenario(33, datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc), conversations=400),
    Scenario(44, datetime(2025, 10, 26, 1, 59, 59, 999999, tzinfo=timezone.utc), shape="edge"),
    Scenario(55, datetime(2024, 2, 29, 23, 30, tzinfo=timezone.utc), shape="unstarted"),
    Scenario(66, datetime(2025, 3, 14, 12, 34, 56, 789012, tzinfo=timezone.utc), shape="stale"),
)


class EventFactory:
    """Builds conversations shaped like the article's ``run_conversation``, plus its failures."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.records: list[Record] = []
        self._ids: set[str] = set()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def conversation_id(self, index: int) -> str:
        """Every nasty id bare once, then a mix of plain and nasty-prefixed ids, all distinct."""
        rng = self.rng
        if index < len(NASTY_IDS):
            candidate = NASTY_IDS[index]
        elif rng.random() < 0.3:
            candidate = f"{rng.choice(NASTY_IDS)}-{rng.getrandbits(32):08x}"
        else:
            candidate = f"conv-{self._uuid()}"
        while candidate in self._ids:
            candidate += "'"
        self._ids.add(candidate)
        return candidate

    def user_id(self) -> str | None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            return rng.choice(["", None])
        if roll < 0.25:
            return rng.choice(NASTY_IDS)
        return f"user-{rng.randrange(60)}"

    def anchor(self) -> datetime:
        """When a conversation begins, relative to the window of the scenario's shape."""
        s, rng = self.scenario, self.rng
        minutes = timedelta(minutes=1)
        if s.shape == "stale":
            return s.since - timedelta(days=3) * rng.random() - 2 * 60 * minutes
        if s.shape == "edge":
            around = rng.choice([s.since, s.since, s.edge])
            return around + 20 * minutes * rng.uniform(-1, 1)
        roll = rng.random()
        if roll < 0.12:  # straddles the window start
            return s.since + 30 * minutes * rng.uniform(-1, 1)
        if roll < 0.17:  # around the first full hour of the window
            return s.edge + 5 * minutes * rng.uniform(-1, 1)
        if roll < 0.25:  # older than the window
            return s.since - timedelta(days=2) * rng.random() - 60 * minutes
        if roll < 0.28:  # still running: some events land after now (clock skew)
            return s.now - 10 * minutes * rng.random()
        return s.since + (s.now - s.since - 60 * minutes) * rng.random()

    def add(
        self, cid: str, user: str | None, kind: ConversationEvent, at: datetime, **metadata: object
    ) -> Record:
        record: Record = {
            "id": self._uuid(),
            "conversation_id": cid,
            "user_id": user,
            "event_type": kind.value,
            "timestamp": at,
            "metadata": metadata,
        }
        self.records.append(record)
        return record

    def conversation(self, cid: str) -> None:
        rng, s = self.rng, self.scenario
        user = self.user_id()
        clock = [self.anchor()]

        def tick() -> datetime:
            roll = rng.random()
            if roll < 0.04:
                step = timedelta(0)  # same microsecond as the previous event
            elif roll < 0.06 and s.shape != "stale":
                step = timedelta(hours=rng.uniform(1, 30))  # user came back much later
            else:
                step = timedelta(microseconds=rng.randrange(200_000, 90_000_000))
            clock[0] += step
            return clock[0]

        E = ConversationEvent
        started = None
        if s.shape != "unstarted" and rng.random() >= 0.1:
            started = self.add(cid, user, E.STARTED, clock[0], channel=rng.choice(["web", "sms"]))
        turns = rng.choices(range(13), weights=[4, 14, 14, 12, 10, 8, 7, 6, 5, 4, 3, 3, 2])[0]
        handoff_turn = rng.randrange(1, turns + 1) if turns and rng.random() < 0.15 else None
        for turn in range(1, turns + 1):
            self.add(
                cid, user, E.USER_MESSAGE, tick(), message_length=rng.randrange(1, 900), turn=turn
            )
            for _ in range(rng.choice([0, 0, 1, 2])):
                self.add(cid, user, E.TOOL_CALLED, tick(), tool_name=rng.choice(TOOLS), turn=turn)
            self.add(
                cid,
                user,
                E.AGENT_RESPONSE,
                tick(),
                response_length=rng.randrange(1, 4000),
                turn=turn,
                model=rng.choice(MODELS),
            )
            if turn == handoff_turn:
                self.add(cid, user, E.HANDOFF_REQUESTED, tick(), reason="user asked for a human")
        outcome = rng.choices(["completed", "abandoned", "open", "both"], [55, 25, 17, 3])[0]
        if outcome in ("completed", "both"):
            done = self.add(cid, user, E.COMPLETED, tick(), total_turns=turns)
            if rng.random() < 0.08:  # a duplicate completion, a little later or earlier
                again = done["timestamp"] + timedelta(seconds=rng.uniform(-30, 30))
                self.add(cid, user, E.COMPLETED, again, total_turns=turns)
        if outcome in ("abandoned", "both"):
            turn_value: object = rng.choice([turns, turns, rng.randrange(0, 15)])
            variant = rng.random()
            if variant < 0.06:
                self.add(cid, user, E.ABANDONED, tick())  # no abandoned_at_turn at all
            elif variant < 0.12:
                self.add(cid, user, E.ABANDONED, tick(), abandoned_at_turn=None)
            else:
                if variant < 0.2:
                    turn_value = str(turn_value)  # a JSON string holding the number
                self.add(cid, user, E.ABANDONED, tick(), abandoned_at_turn=turn_value)
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
            rating = rng.choice(RATINGS)
            if rating == "positive" and rng.random() < 0.1:
                self.add(cid, user, E.FEEDBACK_RECEIVED, tick())  # no rating at all
            else:
                self.add(cid, user, E.FEEDBACK_RECEIVED, tick(), rating=rating)
        if started is not None and rng.random() < 0.03:  # skewed clock: started after the end
            started["timestamp"] = clock[0] + timedelta(seconds=rng.uniform(0, 120))

    def boundary_probes(self) -> None:
        """Single events exactly on, and one microsecond either side of, every boundary."""
        s, one = self.scenario, timedelta(microseconds=1)
        moments = [s.since - one, s.since, s.since + one, s.edge - one, s.edge, s.edge + one]
        moments += [s.now, s.now + timedelta(hours=1)]
        kinds = [
            ConversationEvent.ABANDONED,
            ConversationEvent.COMPLETED,
            ConversationEvent.USER_MESSAGE,
            ConversationEvent.HANDOFF_REQUESTED,
        ]
        for number, moment in enumerate(moments):
            cid = self.conversation_id(10_000 + number)
            kind = kinds[number % len(kinds)]
            self.add(cid, "probe", ConversationEvent.STARTED, moment - 3 * one)
            metadata = (
                {"abandoned_at_turn": 100 + number} if kind is ConversationEvent.ABANDONED else {}
            )
            self.add(cid, "probe", kind, moment, **metadata)

    def build(self) -> list[Record]:
        for index in range(self.scenario.conversations):
            self.conversation(self.conversation_id(index))
        if self.scenario.shape in ("mixed", "edge"):
            self.boundary_probes()
        self.rng.shuffle(self.records)
        return self.records


def import_line(record: Record, rng: random.Random) -> Record:
    """The record as a JSON line would bring it: ISO text in UTC, another offset, naive or Z."""
    moment: datetime = record["timestamp"]
    text = rng.choice(
        [
            moment.isoformat(),
            moment.astimezone(_TZ_IST).isoformat(),
            moment.astimezone(_TZ_NST).isoformat(),
            moment.replace(tzinfo=None).isoformat(),  # the article's naive utcnow()
            moment.replace(tzinfo=None).isoformat() + "Z",
        ]
    )
    loaded: Record = json.loads(json.dumps({**record, "timestamp": text}))
    return loaded


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgConnection]:
    """A connection to a private PostgreSQL server holding the article's events table."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("needs the PostgreSQL server (initdb, pg_ctl): apt-get install postgresql")
    with (
        postgres_server(bin_dir) as server,
        psycopg.connect(**server.conninfo(), autocommit=True) as connection,
    ):
        connection.execute(CREATE_TABLE)
        yield connection


@pytest.fixture(params=SCENARIOS, ids=lambda s: f"{s.shape}-seed{s.seed}")
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return request.param


@pytest.fixture
def events(scenario: Scenario) -> list[Record]:
    return EventFactory(scenario).build()


@pytest.fixture
def article_db(postgres: PgConnection, events: list[Record]) -> PgConnection:
    """PostgreSQL holding exactly this scenario's events."""
    postgres.execute("TRUNCATE conversation_events")
    with postgres.cursor() as cursor:
        cursor.executemany(
            INSERT,
            [
                (
                    r["id"],
                    r["conversation_id"],
                    r["user_id"],
                    r["event_type"],
                    r["timestamp"],
                    Jsonb(r["metadata"]),
                )
                for r in events
            ],
        )
    return postgres


@pytest.fixture
def product(
    store: ConversationStore, events: list[Record], scenario: Scenario
) -> ConversationStore:
    """The chDB store holding the same events, each imported as its JSON line would be."""
    rng = random.Random(scenario.seed)
    pseudonymize = UserIdPseudonymizer(b"k")
    store.insert([row_from_record(import_line(r, rng), pseudonymize) for r in events])
    assert store.count_events() == len(events)
    return store


# ---- helpers -------------------------------------------------------------------------------


def _product_numbers(report: Report) -> tuple[object, ...]:
    return (
        report.total_conversations,
        report.completion_rate,
        report.abandonment_rate,
        report.handoff_rate,
        report.avg_turns,
        report.avg_duration_seconds,
    )


def _article_numbers(db: PgConnection, scenario: Scenario) -> tuple[object, ...]:
    """The article's metrics row in the product's types (numeric → float, seconds → int)."""
    params = {"now": scenario.now, "days": DAYS}
    row = db.execute(ARTICLE_METRICS_SQL, params).fetchone()
    assert row is not None
    total, *rates, duration = row
    for value in (*rates, duration):
        assert value is None or isinstance(value, Decimal)
    return (
        int(total),
        *(None if rate is None else float(rate) for rate in rates),
        None if duration is None else int(duration),
    )


def _drop_off_order(pairs: list[tuple[int | None, int]]) -> list[tuple[int | None, int]]:
    return sorted(pairs, key=lambda p: (-p[1], p[0] is None, p[0] or 0))


# ---- tests ---------------------------------------------------------------------------------


def test_generated_events_cover_the_messy_cases() -> None:
    """The generated sets hold every event type, every boundary case and every nasty id."""
    mixed = EventFactory(SCENARIOS[0]).build()
    s = SCENARIOS[0]
    kinds = Counter(r["event_type"] for r in mixed)
    assert set(kinds) == {kind.value for kind in ConversationEvent}
    by_cid: dict[str, list[Record]] = {}
    for record in mixed:
        by_cid.setdefault(record["conversation_id"], []).append(record)
    assert len(by_cid) >= 300
    assert set(NASTY_IDS) <= set(by_cid)

    def has(predicate: Any) -> int:
        return sum(1 for rows in by_cid.values() if predicate(rows))

    def count(rows: list[Record], kind: str) -> int:
        return sum(r["event_type"] == kind for r in rows)

    assert has(lambda rows: count(rows, "started") == 0)
    assert has(lambda rows: count(rows, "completed") + count(rows, "abandoned") == 0)
    assert has(lambda rows: count(rows, "completed") > 1)
    assert has(lambda rows: all(r["timestamp"] < s.since for r in rows))
    assert has(
        lambda rows: (
            min(r["timestamp"] for r in rows) < s.since <= max(r["timestamp"] for r in rows)
        )
    )
    assert has(lambda rows: any(r["timestamp"] > s.now for r in rows))
    turns = {
        r["metadata"].get("abandoned_at_turn", "missing")
        for r in mixed
        if r["event_type"] == "abandoned" and r["timestamp"] >= s.since
    }
    assert len(turns) > 10
    assert {None, "missing"} <= turns


def test_report_equals_article_metrics(
    article_db: PgConnection, product: ConversationStore, scenario: Scenario
) -> None:
    """Every report number equals the article's metrics query, NULLs included."""
    expected = _article_numbers(article_db, scenario)
    got = _product_numbers(StoreReader(product).report(DAYS, now=scenario.now))
    assert got == expected
    if scenario.shape == "stale":
        assert expected == (0, None, None, None, None, None)
    else:
        assert expected[0] > 0


def test_drop_off_equals_article_query(
    article_db: PgConnection, product: ConversationStore, scenario: Scenario
) -> None:
    """Drop-off turns and counts equal the article's top-10 query (ties may order differently)."""
    params = {"now": scenario.now, "days": DAYS}
    expected = [(t, int(c)) for t, c in article_db.execute(ARTICLE_DROP_OFF_SQL, params)]
    every_turn = dict(article_db.execute(ARTICLE_DROP_OFF_SQL.replace("LIMIT 10", ""), params))
    got = [(d.turn, d.count) for d in StoreReader(product).report(DAYS, now=scenario.now).drop_off]
    # The article's LIMIT 10 picks arbitrarily among turns tied at the cut: the counts must agree,
    # and each of ours must be a real turn with its real count.
    assert [c for _, c in _drop_off_order(got)] == [c for _, c in _drop_off_order(expected)]
    assert len({turn for turn, _ in got}) == len(got)
    assert all(every_turn.get(turn) == count for turn, count in got)
    cut = min((c for _, c in expected), default=0)
    tied_at_cut = sum(1 for c in every_turn.values() if c == cut)
    if tied_at_cut == sum(1 for _, c in expected if c == cut):
        assert _drop_off_order(got) == _drop_off_order(expected)


def test_satisfaction_equals_article_function(
    article_db: PgConnection, product: ConversationStore, events: list[Record], scenario: Scenario
) -> None:
    """Per-conversation satisfaction equals the article's function over all of its events."""
    ids = sorted({r["conversation_id"] for r in events})
    sample = random.Random(scenario.seed).sample(ids, 80) + list(NASTY_IDS)
    sample.append("never-seen ' conversation")
    mismatches = {}
    for cid in dict.fromkeys(sample):
        expected = article_satisfaction(article_db, cid)
        detail = StoreReader(product).conversation(cid)
        stored = article_db.execute(
            "SELECT COUNT(*) FROM conversation_events WHERE conversation_id = %s", (cid,)
        ).fetchone()
        if abs(detail.satisfaction - expected) > 1e-12 or (len(detail.events),) != stored:
            mismatches[cid] = (expected, detail.satisfaction, stored, len(detail.events))
    assert mismatches == {}
