"""Section 4 metrics on the real engine, over conversations worked out by hand."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest

from opentelemetry.exporter.conversation_analytics.analytics import (
    DropOff,
    satisfaction,
)
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import ConversationStore

NOW = datetime(2026, 11, 20, 12, 34, 56, 789_000, tzinfo=timezone.utc)


class Builder:
    """Builds rows for hand-made conversations with unique event ids."""

    def __init__(self) -> None:
        self.rows: list[EventRow] = []

    def add(
        self, cid: str, kind: str, at: timedelta, agent: str = "bot", **fields: object
    ) -> EventRow:
        moment = NOW - at
        micros = (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
        row = EventRow(
            f"{cid}/{len(self.rows)}", kind, cid, micros * 1000, agent_name=agent, **fields
        )  # type: ignore[arg-type]
        self.rows.append(row)
        return row

    def conversation(
        self,
        cid: str,
        *,
        messages: int = 1,
        outcome: str | None = "completed",
        handoff: bool = False,
        feedback: tuple[str, ...] = (),
        start: timedelta = timedelta(hours=5),
        length: timedelta = timedelta(seconds=100),
        started: bool = True,
        agent: str = "bot",
        abandoned_at: int | None = None,
    ) -> None:
        if started:
            self.add(cid, "started", start, agent)
        for turn in range(1, messages + 1):
            self.add(cid, "user_message", start - timedelta(seconds=turn), agent, turn=turn)
        if handoff:
            self.add(cid, "handoff_requested", start - timedelta(seconds=50), agent)
        for rating in feedback:
            self.add(
                cid,
                "feedback_received",
                start - timedelta(seconds=60),
                agent,
                feedback_rating=rating,
            )
        if outcome == "completed":
            self.add(cid, "completed", start - length, agent, total_turns=messages)
        elif outcome == "abandoned":
            self.add(
                cid,
                "abandoned",
                start - length,
                agent,
                abandoned_at_turn=abandoned_at if abandoned_at is not None else messages,
            )


@pytest.fixture
def build() -> Builder:
    return Builder()


# ---- satisfaction: every branch of the formula ---------------------------------------------

SATISFACTION_CASES = [
    # (messages, outcome, handoff, feedback, expected) worked out by hand from SPEC section 4
    (0, None, False, (), 0.1),  # only "not completed" 0.1
    (2, "completed", False, (), 0.9),  # resolved quickly
    (3, "completed", False, (), (0.9 + 0.8) / 2),  # quick + rephrase signal (n=3: 0.8)
    (4, "completed", False, (), 0.7),  # >3 messages, no handoff: only rephrase 0.8-0.1
    (5, "completed", True, (), (0.3 + (0.8 - 0.2)) / 2),  # handoff 0.3 + 0.6
    (1, "abandoned", False, (), 0.1),  # not completed
    (2, None, True, (), 0.3),  # handoff, not completed
    (2, "completed", False, ("positive",), (1.0 + 0.9) / 2),
    (2, "abandoned", False, ("negative", "negative"), (0.0 + 0.0 + 0.1) / 3),
    (12, "completed", False, (), 0.0),  # penalty floors at 0: 0.8 - 0.9 -> 0
    (11, "completed", False, (), max(0.0, 0.8 - (11 - 3) * 0.1)),  # float, as the article
    (4, "completed", False, ("positive", "negative"), (1.0 + 0.0 + 0.7) / 3),
]


class TestSatisfaction:
    @pytest.mark.parametrize(
        ("messages", "outcome", "handoff", "feedback", "expected"), SATISFACTION_CASES
    )
    def test_formula_matches_hand_computation(
        self,
        store: ConversationStore,
        build: Builder,
        messages: int,
        outcome: str | None,
        handoff: bool,
        feedback: tuple[str, ...],
        expected: float,
    ) -> None:
        """Python (per conversation) and SQL (report average) both give the hand-computed score."""
        build.conversation(
            "c", messages=messages, outcome=outcome, handoff=handoff, feedback=feedback
        )
        store.insert(build.rows)
        assert StoreReader(store).conversation("c").satisfaction == pytest.approx(
            expected, abs=1e-12
        )
        assert StoreReader(store).report(7, now=NOW).avg_satisfaction == round(expected, 3)

    def test_no_events_is_an_unfinished_conversation(self) -> None:
        """No events at all: the only signal is 'not completed' (0.1), as in the article.

        The formula's 0.5 fallback cannot be reached: a conversation lacking the outcome signal
        (completed, > 3 messages, no handoff) always has the rephrase signal (> 2 messages).
        """
        assert satisfaction([]) == 0.1

    def test_duplicate_feedback_events_count_once_in_sql(
        self, store: ConversationStore, build: Builder
    ) -> None:
        """The same feedback event written twice is one signal."""
        build.conversation("c", messages=2, feedback=("negative",))
        store.insert(build.rows)
        store.insert(build.rows)
        expected = (0.0 + 0.9) / 2
        assert StoreReader(store).report(7, now=NOW).avg_satisfaction == round(expected, 3)
        assert StoreReader(store).conversation("c").satisfaction == expected


# ---- the report ----------------------------------------------------------------------------


class TestReport:
    def test_mixed_fleet(self, store: ConversationStore, build: Builder) -> None:
        """Rates, turns, duration and drop-off over a small fleet, computed by hand."""
        build.conversation("a", messages=2, length=timedelta(seconds=100))
        build.conversation("b", messages=4, length=timedelta(seconds=201))
        build.conversation("c", messages=3, outcome="abandoned", abandoned_at=3)
        build.conversation("d", messages=1, outcome="abandoned", abandoned_at=1)
        build.conversation("e", messages=1, outcome="abandoned", abandoned_at=1, handoff=True)
        build.conversation("f", messages=2, outcome=None, handoff=True)
        store.insert(build.rows)
        report = StoreReader(store).report(7, now=NOW)
        assert report.total_conversations == 6
        assert report.completion_rate == 33.3  # 2/6
        assert report.abandonment_rate == 50.0  # 3/6
        assert report.handoff_rate == 33.3  # 2/6
        assert report.avg_turns == 2.2  # 13/6 = 2.1666 -> 2.2
        assert report.avg_duration_seconds == 151  # (100 + 201) / 2 = 150.5 -> 151 (half up)
        assert report.drop_off == [DropOff(1, 2), DropOff(3, 1)]

    def test_rounding_is_half_away_from_zero(
        self, store: ConversationStore, build: Builder
    ) -> None:
        """Rates round like PostgreSQL numeric: 1/16 = 6.25% -> 6.3 (banker's would give 6.2)."""
        for i in range(16):
            build.conversation(
                f"c{i}", messages=0 if i else 4, outcome="completed" if i == 0 else None
            )
        store.insert(build.rows)
        report = StoreReader(store).report(7, now=NOW)
        assert report.completion_rate == 6.3
        assert report.avg_turns == 0.3  # 4/16 = 0.25 -> 0.3

    @pytest.mark.parametrize("order", [0, 1, 2])
    def test_avg_satisfaction_is_exact_whatever_the_order(
        self, store: ConversationStore, build: Builder, order: int
    ) -> None:
        """A mean exactly on a tie (29/80 = 0.3625) reads 0.363 every time, in any insert order.

        Float sums of the same scores give 0.362 or 0.363 depending on their order."""
        kinds = [(1, None, False)] * 35 + [(1, "completed", False)] * 20 + [(1, None, True)] * 25
        random.Random(order).shuffle(kinds)
        for i, (messages, outcome, handoff) in enumerate(kinds):
            build.conversation(f"c{i}", messages=messages, outcome=outcome, handoff=handoff)
        for i in range(0, len(build.rows), 7):  # several parts, merged in no set order
            store.insert(build.rows[i : i + 7])
        scores = [
            Fraction(StoreReader(store).conversation(f"c{i}").satisfaction).limit_denominator(100)
            for i in range(80)
        ]
        exact = sum(scores, Fraction()) / len(scores)
        assert exact == Fraction(29, 80)  # the data is on a tie, or the test proves nothing
        half_up = (Decimal(exact.numerator) / exact.denominator).quantize(
            Decimal("0.001"), ROUND_HALF_UP
        )
        assert {StoreReader(store).report(7, now=NOW).avg_satisfaction for _ in range(3)} == {
            float(half_up)
        }

    def test_duplicate_terminal_events(self, store: ConversationStore, build: Builder) -> None:
        """Two completed events count one completed conversation; duration uses the last."""
        build.conversation("c", messages=1, length=timedelta(seconds=10))
        build.add("c", "completed", timedelta(hours=5) - timedelta(seconds=30), total_turns=1)
        build.add("d", "abandoned", timedelta(hours=3), abandoned_at_turn=2)
        build.add("d", "abandoned", timedelta(hours=2), abandoned_at_turn=2)
        store.insert(build.rows)
        report = StoreReader(store).report(7, now=NOW)
        assert report.total_conversations == 2
        assert report.completion_rate == 50.0
        assert report.avg_duration_seconds == 30
        assert report.drop_off == [DropOff(2, 2)]  # the article counts abandoned events

    def test_conversations_without_start_or_end(
        self, store: ConversationStore, build: Builder
    ) -> None:
        """No start: no duration. No end: counted, neither completed nor abandoned."""
        build.conversation("no-start", messages=2, started=False)
        build.conversation("no-end", messages=3, outcome=None)
        store.insert(build.rows)
        report = StoreReader(store).report(7, now=NOW)
        assert report.total_conversations == 2
        assert report.completion_rate == 50.0
        assert report.abandonment_rate == 0.0
        assert report.avg_duration_seconds is None
        assert report.avg_turns == 2.5

    def test_window_is_exact_at_its_start(self, store: ConversationStore, build: Builder) -> None:
        """Events a microsecond either side of now - days are in or out, mid-hour and all."""
        edge = timedelta(days=7)
        build.add("inside", "started", edge - timedelta(microseconds=1))
        build.add("inside", "completed", edge - timedelta(minutes=20))
        build.add("outside", "started", edge + timedelta(microseconds=1))
        build.add("straddle", "started", edge + timedelta(minutes=5))
        build.add("straddle", "user_message", edge - timedelta(minutes=5))
        build.add("straddle", "completed", edge - timedelta(hours=2))
        store.insert(build.rows)
        report = StoreReader(store).report(7, now=NOW)
        # "straddle" counts, but its start is outside the window: no duration for it.
        assert report.total_conversations == 2
        assert report.completion_rate == 100.0
        assert report.avg_turns == 0.5
        assert report.avg_duration_seconds == 20 * 60 - 0  # only "inside" is timed
        assert StoreReader(store).report(8, now=NOW).total_conversations == 3

    def test_empty_window(self, store: ConversationStore) -> None:
        """No data: zero conversations and NULL-like rates, as the article's SQL."""
        report = StoreReader(store).report(7, now=NOW)
        assert report.total_conversations == 0
        assert report.completion_rate is None
        assert report.avg_duration_seconds is None
        assert report.drop_off == []

    @pytest.mark.parametrize(
        "cid",
        [
            "it's",
            'say "hi"',
            "'; DROP TABLE conversation_events; --",
            "{cid:String}",
            "ünïcødé 会话 🚀",
            "back\\slash\nnewline\ttab",
            "x" * 512,
        ],
    )
    def test_hostile_ids_round_trip(
        self, store: ConversationStore, build: Builder, cid: str
    ) -> None:
        """Ids full of quotes, unicode and SQL are data: stored and found exactly."""
        build.conversation(cid, messages=2)
        build.conversation("other", messages=1)
        store.insert(build.rows)
        detail = StoreReader(store).conversation(cid)
        assert [e["event_type"] for e in detail.events] == [
            "started",
            "user_message",
            "user_message",
            "completed",
        ]
        assert StoreReader(store).report(7, now=NOW).total_conversations == 2
        assert store.count_events() == len(build.rows)

    def test_per_agent_breakdown(self, store: ConversationStore, build: Builder) -> None:
        """Each agent's numbers cover only its conversations; ``agent=`` filters the report."""
        build.conversation("a1", messages=2, agent="alpha")
        build.conversation("a2", messages=2, agent="alpha", outcome="abandoned")
        build.conversation("b1", messages=4, agent="beta")
        store.insert(build.rows)
        report = StoreReader(store).report(7, now=NOW)
        by_agent = {a.agent: a for a in report.agents}
        assert by_agent["alpha"].total_conversations == 2
        assert by_agent["alpha"].completion_rate == 50.0
        assert by_agent["beta"].avg_turns == 4.0
        only_beta = StoreReader(store).report(7, now=NOW, agent="beta")
        assert only_beta.total_conversations == 1
        assert only_beta.completion_rate == 100.0

    def test_rephrase_rate(self, store: ConversationStore, build: Builder) -> None:
        """Share of user messages flagged as rephrases."""
        build.add("c", "user_message", timedelta(hours=1), rephrase=False)
        build.add("c", "user_message", timedelta(hours=1) - timedelta(seconds=5), rephrase=True)
        build.add("c", "user_message", timedelta(hours=1) - timedelta(seconds=9), rephrase=False)
        store.insert(build.rows)
        assert StoreReader(store).report(7, now=NOW).rephrase_rate == 33.3
