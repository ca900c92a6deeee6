"""Drop-off as a survival curve: Kaplan-Meier against lifelines, on generated durations and on
conversations in a real chDB store, through ``report`` in the CLI and a real collector's API."""

from __future__ import annotations

import json
import random
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lifelines import KaplanMeierFitter

from collector_process import run_cli
from handbuilt import collector_api
from opentelemetry.exporter.conversation_analytics.analytics import (
    MAX_FUNNEL_TURNS,
    Report,
    survival_curve,
)
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.stats import kaplan_meier
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, open_store, sql
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent
from synthetic import EPOCH, Plan, durations, random_plans, rows, write_closed

START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


def _lifelines_steps(times: Sequence[int], observed: Sequence[bool]) -> list[dict[str, Any]]:
    """lifelines' event table and survival at each distinct duration, as report steps."""
    fitter = KaplanMeierFitter().fit(list(times), list(observed))
    table = fitter.event_table.drop(index=0, errors="ignore")
    turns = [int(turn) for turn in table.index]
    survival = fitter.survival_function_at_times(turns).to_numpy()
    return [
        {
            "turn": turn,
            "at_risk": int(table.loc[turn, "at_risk"]),
            "abandoned": int(table.loc[turn, "observed"]),
            "censored": int(table.loc[turn, "censored"]),
            "survival": pytest.approx(float(value), rel=1e-12),
        }
        for turn, value in zip(turns, survival, strict=True)
    ]


def _generated(
    seed: int, count: int, max_turn: int, event_share: float
) -> tuple[list[int], list[bool]]:
    rng = random.Random(seed)
    times = [rng.randint(1, max_turn) for _ in range(count)]
    return times, [rng.random() < event_share for _ in range(count)]


def _counts(times: Sequence[int], observed: Sequence[bool]) -> list[tuple[int, bool, int]]:
    """The (duration, observed, count) triples the store's query returns, from raw durations."""
    tally: dict[tuple[int, bool], int] = {}
    for time, event in zip(times, observed, strict=True):
        tally[(time, event)] = tally.get((time, event), 0) + 1
    return [(time, event, count) for (time, event), count in tally.items()]


class TestKaplanMeier:
    """``stats.kaplan_meier`` against ``lifelines.KaplanMeierFitter`` on the same durations."""

    @pytest.mark.parametrize(
        ("times", "observed"),
        [
            _generated(1, 500, 8, 0.4),  # many ties at each turn, mixed
            _generated(2, 60, 30, 0.7),  # sparse turns
            _generated(3, 200, 3, 0.05),  # mostly censored
            _generated(4, 50, 5, 1.0),  # no censoring: the empirical survivor function
            ([3, 3, 3], [False, False, False]),  # all censored: survival stays 1
            ([1], [True]),  # one conversation, abandoned at once
            ([2, 2, 2, 2, 5], [True, False, True, False, True]),  # event and censoring tie
        ],
        ids=["ties", "sparse", "censored", "uncensored", "all-censored", "one", "tie-both"],
    )
    def test_matches_lifelines(self, times: list[int], observed: list[bool]) -> None:
        """At risk, abandoned, censored and survival at every distinct turn equal lifelines'."""
        steps = [vars(step) for step in kaplan_meier(_counts(times, observed))]
        assert steps == _lifelines_steps(times, observed)

    def test_no_conversations_is_no_curve(self) -> None:
        """No durations, no steps (lifelines refuses to fit nothing)."""
        assert kaplan_meier([]) == []


class TestFunnel:
    """``reached_turn``: conversations whose duration is at least N, for N = 1, 2, ..."""

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_counts_conversations_reaching_each_turn(self, seed: int) -> None:
        """Each step counts the durations >= its turn, for every turn up to the longest."""
        times, observed = _generated(seed, 300, 12, 0.5)
        _, reached = survival_curve(_counts(times, observed))
        expected = [(n, sum(t >= n for t in times)) for n in range(1, max(times) + 1)]
        assert [(step.turn, step.conversations) for step in reached] == expected

    def test_stops_at_the_cap(self) -> None:
        """One very long conversation does not make the funnel thousands of steps long."""
        _, reached = survival_curve([(1, True, 5), (5000, False, 1)])
        assert len(reached) == MAX_FUNNEL_TURNS
        assert reached[0].conversations == 6 and reached[-1].conversations == 1


def _row(cid: str, index: int, kind: ConversationEvent, at: datetime, **fields: Any) -> EventRow:
    nanos = (at - EPOCH) // timedelta(microseconds=1) * 1000
    return EventRow(f"{cid}/{index}", kind.value, cid, nanos, agent_name="edge", **fields)


def _edge_rows() -> list[EventRow]:
    """Conversations whose duration is easy to get wrong, worked out by hand:

    - ``came-back``: inferred abandoned at turn 2, then the user came back and it completed at
      turn 3: not abandoned, censored at 3;
    - ``quit-early``: 4 user messages, explicitly abandoned at turn 2: abandoned at 2;
    - ``silent``: abandoned before any user message: left out;
    - ``open``: 2 user messages, no outcome yet: censored at 2.
    """
    t = START
    s = timedelta(seconds=1)
    user, started = ConversationEvent.USER_MESSAGE, ConversationEvent.STARTED
    abandoned = ConversationEvent.ABANDONED
    return [
        _row("came-back", 0, started, t),
        _row("came-back", 1, user, t + s, turn=1),
        _row("came-back", 2, user, t + 2 * s, turn=2),
        _row("came-back", 3, abandoned, t + 3 * s, abandoned_at_turn=2, abandon_inferred=True),
        _row("came-back", 4, user, t + 4 * s, turn=3),
        _row("came-back", 5, ConversationEvent.COMPLETED, t + 5 * s, total_turns=3),
        *(_row("quit-early", n, user, t + n * s, turn=n) for n in range(1, 5)),
        _row("quit-early", 5, abandoned, t + 5 * s, abandoned_at_turn=2),
        _row("silent", 0, started, t),
        _row("silent", 1, abandoned, t + s, abandoned_at_turn=0),
        *(_row("open", n, user, t + n * s, turn=n) for n in range(1, 3)),
    ]


#: Two agents with different drop-off, and conversations without a user message.
PLANS: list[Plan] = [
    *random_plans(random.Random(5), 150, "s", completion=0.6, agent="support", max_messages=8),
    *random_plans(random.Random(6), 90, "r", completion=0.3, agent="research", max_messages=5),
]


def assert_report_survival(document: dict[str, Any], plans: Sequence[Plan]) -> None:
    """Overall and per-agent survival equal lifelines' on the plans' durations, and the
    funnel counts the plans reaching each turn."""
    assert document["survival"] == _lifelines_steps(*durations(plans))
    times, _ = durations(plans)
    assert [(s["turn"], s["conversations"]) for s in document["reached_turn"]] == [
        (n, sum(t >= n for t in times)) for n in range(1, max(times) + 1)
    ]
    by_agent = {entry["agent"]: entry for entry in document["agents"]}
    assert set(by_agent) == {plan.agent for plan in plans}
    for agent, entry in by_agent.items():
        mine = [plan for plan in plans if plan.agent == agent]
        assert entry["survival"] == _lifelines_steps(*durations(mine)), agent


class TestReportSurvival:
    """``report``'s ``survival`` and ``reached_turn`` from a real chDB store."""

    def test_matches_lifelines_overall_and_per_agent(self, store: ConversationStore) -> None:
        """Overall and per agent, the report's curve is lifelines' on the planned durations."""
        store.insert(rows(PLANS, START))
        assert_report_survival(StoreReader(store).report().to_dict(), PLANS)

    def test_durations_worked_out_by_hand(self, store: ConversationStore) -> None:
        """A revoked inferred abandonment is censored at the last turn, an early explicit one
        ends at its turn, a conversation without a user message is left out."""
        store.insert(_edge_rows())
        report = StoreReader(store).report(agent="edge")
        # Durations: came-back 3 (censored), quit-early 2 (abandoned), open 2 (censored).
        assert [vars(step) for step in report.survival] == _lifelines_steps(
            [3, 2, 2], [False, True, False]
        )
        assert [(s.turn, s.at_risk, s.abandoned, s.censored) for s in report.survival] == [
            (2, 3, 1, 1),
            (3, 1, 0, 1),
        ]

    def test_empty_window_has_no_curve(self, store: ConversationStore) -> None:
        """No conversations: empty lists, not an error."""
        report = StoreReader(store).report()
        assert (report.survival, report.reached_turn) == ([], [])

    def test_round_trips_through_json(self, store: ConversationStore) -> None:
        """``Report.from_dict`` keeps the curves (what the collector client relies on)."""
        store.insert(rows(PLANS, START))
        report = StoreReader(store).report()
        assert Report.from_dict(json.loads(json.dumps(report.to_dict()))) == report


class TestUpgradedStore:
    """A store whose rollup predates ``abandoned_turn`` gets it when opened."""

    def test_new_conversations_use_the_turn_old_ones_their_messages(self, store_url: str) -> None:
        """After the upgrade an abandonment counts at its turn; one rolled up before it counts
        at its number of user messages (the documented fallback), and nothing breaks."""
        quit_early = [Plan("old", 4, "abandoned", abandoned_at=2)]
        with pytest.MonkeyPatch.context() as patch:
            previous = tuple(c for c in sql.ROLLUP_COLUMNS if c.name != "abandoned_turn")
            patch.setattr(sql, "ROLLUP_COLUMNS", previous)
            old = open_store(store_url)
            try:
                old.insert(rows(quit_early, START))
            finally:
                old.close()
        store = open_store(store_url)
        try:
            store.insert(rows([Plan("new", 4, "abandoned", abandoned_at=2)], START))
            report = StoreReader(store).report()
        finally:
            store.close()
        assert [(s.turn, s.at_risk, s.abandoned) for s in report.survival] == [(2, 2, 1), (4, 1, 1)]


@pytest.fixture
def written(store_url: str) -> str:
    """The planned conversations in a closed store, for a CLI subprocess to open."""
    return write_closed(store_url, PLANS, START)


class TestReportCommand:
    """``conversation-analytics report`` with the survival curve, in a subprocess."""

    def test_json_matches_lifelines(self, written: str) -> None:
        """``report --format json`` has lifelines' curve overall and per agent."""
        done = run_cli("report", "--format", "json", "--store", written)
        assert_report_survival(json.loads(done.stdout), PLANS)

    def test_table_has_a_survival_section(self, written: str) -> None:
        """The table lists the first turns' reached / abandoned / censored / survival."""
        table = run_cli("report", "--store", written).stdout
        document = json.loads(run_cli("report", "--format", "json", "--store", written).stdout)
        assert "Survival (Kaplan-Meier" in table
        section = table.split("Survival (Kaplan-Meier", 1)[1].split("\n\n", 1)[0]
        for step in document["survival"]:
            cells = [
                str(step["turn"]),
                str(step["at_risk"]),
                str(step["abandoned"]),
                str(step["censored"]),
            ]
            assert any(line.split()[:4] == cells for line in section.splitlines()), step

    def test_compare_groups_carry_their_curve(self, written: str) -> None:
        """Each ``compare`` group has lifelines' curve on its own conversations."""
        done = run_cli("compare", "--by", "agent", "--format", "json", "--store", written)
        for group in json.loads(done.stdout)["groups"]:
            mine = [plan for plan in PLANS if plan.agent == group["value"]]
            assert group["survival"] == _lifelines_steps(*durations(mine))


class TestReportApi:
    """``GET /api/v1/report`` on a real collector carries the same curve."""

    @pytest.fixture
    def api(self, store: ConversationStore, store_url: str, tmp_path: Path) -> Iterator[str]:
        store.insert(rows(PLANS, START))
        with collector_api(store, store_url, tmp_path) as url:
            yield url

    def test_api_and_cli_through_it_match_lifelines(self, api: str) -> None:
        """The API's report and ``report --collector URL`` both carry lifelines' curves."""
        with urllib.request.urlopen(f"{api}/api/v1/report?days=7", timeout=30) as response:
            document = json.loads(response.read())
        assert_report_survival(document, PLANS)
        done = run_cli("report", "--format", "json", "--collector", api)
        assert json.loads(done.stdout) == document
