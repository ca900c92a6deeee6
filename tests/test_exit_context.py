"""``exit_context`` and ``tool_lift`` in the report: hand-built abandoned conversations whose
last step, last tool and recent rephrases are known, on the real engine, through the CLI and a
real collector's API; tool lift against statsmodels on the same counts."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from collector_process import run_cli
from handbuilt import BASE, E, Events, collector_api, get_json
from opentelemetry.exporter.conversation_analytics.analytics import (
    MIN_COMPARE_SAMPLE,
    TOO_FEW_NOTE,
    ExitContext,
    ExitKind,
    Report,
)
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, open_store, sql

K = ExitKind
PERCENT_PLACE = 0.05 + 1e-9


def _abandon(events: Events, cid: str, seconds: float, agent: str = "bot", **fields: Any) -> None:
    events.add(cid, E.ABANDONED, seconds, agent, abandoned_at_turn=1, **fields)


def exits() -> Events:
    """Eight abandonments that stand (six of agent ``bot``, two of ``other``), one revoked,
    one completed and one open conversation; the comment on each says what came last."""
    ev = Events()
    # a1: the agent answered, the user left -> agent_response, no tool.
    ev.add("a1", E.STARTED, 0)
    ev.add("a1", E.USER_MESSAGE, 1, turn=1)
    ev.add("a1", E.AGENT_RESPONSE, 2, turn=1)
    _abandon(ev, "a1", 3)
    # a2: a tool failed and nothing followed -> tool_error, search failed.
    ev.add("a2", E.STARTED, 10)
    ev.add("a2", E.USER_MESSAGE, 11, turn=1)
    ev.add("a2", E.TOOL_CALLED, 12, turn=1, tool_name="search", error_type="Timeout")
    _abandon(ev, "a2", 13)
    # a3: a rephrase after a working tool and a reply -> rephrase; last tool search, ok.
    ev.add("a3", E.USER_MESSAGE, 20, turn=1)
    ev.add("a3", E.TOOL_CALLED, 21, turn=1, tool_name="search")
    ev.add("a3", E.AGENT_RESPONSE, 22, turn=1)
    ev.add("a3", E.USER_MESSAGE, 23, turn=2, rephrase=True)
    _abandon(ev, "a3", 24)
    # a4: the user left while waiting for a human -> handoff_request.
    ev.add("a4", E.USER_MESSAGE, 30, turn=1)
    ev.add("a4", E.HANDOFF_REQUESTED, 31, turn=1)
    _abandon(ev, "a4", 32)
    # a5: a rephrase three messages back is outside the last two turns -> tool_call, lookup ok.
    ev.add("a5", E.USER_MESSAGE, 40, turn=1, rephrase=True)
    ev.add("a5", E.USER_MESSAGE, 41, turn=2)
    ev.add("a5", E.USER_MESSAGE, 42, turn=3)
    ev.add("a5", E.TOOL_CALLED, 43, turn=3, tool_name="lookup")
    _abandon(ev, "a5", 44)
    # s1: an inferred abandonment nobody came back from stands -> tool_error, search failed.
    ev.add("s1", E.USER_MESSAGE, 50, turn=1)
    ev.add("s1", E.TOOL_CALLED, 51, turn=1, tool_name="search", error_type="500")
    _abandon(ev, "s1", 900, abandon_inferred=True)
    # a6 (agent other): feedback after the reply is not a step -> agent_response.
    ev.add("a6", E.USER_MESSAGE, 60, "other", turn=1)
    ev.add("a6", E.AGENT_RESPONSE, 61, "other", turn=1)
    ev.add("a6", E.FEEDBACK_RECEIVED, 62, "other", feedback_rating="negative")
    _abandon(ev, "a6", 63, "other")
    # a7 (agent other): a rephrase and a failing tool at the same instant: the tool call comes
    # later in a turn, so it wins -> tool_error, lookup failed; rephrased in the last two.
    ev.add("a7", E.USER_MESSAGE, 70, "other", turn=1, rephrase=True)
    ev.add("a7", E.TOOL_CALLED, 70, "other", turn=1, tool_name="lookup", error_type="KeyError")
    _abandon(ev, "a7", 71, "other")
    # r1: inferred abandonment revoked by the user coming back: not abandoned, not counted.
    ev.add("r1", E.USER_MESSAGE, 80, turn=1)
    ev.add("r1", E.TOOL_CALLED, 81, turn=1, tool_name="search", error_type="Timeout")
    _abandon(ev, "r1", 82, abandon_inferred=True)
    ev.add("r1", E.USER_MESSAGE, 83, turn=2)
    # c1 completed and o1 open: not abandoned.
    ev.add("c1", E.USER_MESSAGE, 90, turn=1)
    ev.add("c1", E.TOOL_CALLED, 91, turn=1, tool_name="search")
    ev.add("c1", E.COMPLETED, 92, total_turns=1)
    ev.add("o1", E.USER_MESSAGE, 95, turn=1)
    return ev


EXPECTED: dict[str, Any] = {
    "abandoned": 8,
    "last_event": [
        {"kind": K.TOOL_ERROR.value, "conversations": 3, "share": 37.5},
        {"kind": K.AGENT_RESPONSE.value, "conversations": 2, "share": 25.0},
        {"kind": K.HANDOFF_REQUEST.value, "conversations": 1, "share": 12.5},
        {"kind": K.REPHRASE.value, "conversations": 1, "share": 12.5},
        {"kind": K.TOOL_CALL.value, "conversations": 1, "share": 12.5},
    ],
    "last_tool": [
        {"tool": None, "failed": False, "conversations": 3, "share": 37.5},
        {"tool": "search", "failed": True, "conversations": 2, "share": 25.0},
        {"tool": "lookup", "failed": False, "conversations": 1, "share": 12.5},
        {"tool": "lookup", "failed": True, "conversations": 1, "share": 12.5},
        {"tool": "search", "failed": False, "conversations": 1, "share": 12.5},
    ],
    "rephrased_in_last_two_turns": {"conversations": 2, "share": 25.0},
}
#: Agent ``bot``: a1, a2, a3, a4, a5, s1 (shares of six: 1/6 reads 16.7, half up).
EXPECTED_BOT: dict[str, Any] = {
    "abandoned": 6,
    "last_event": [
        {"kind": K.TOOL_ERROR.value, "conversations": 2, "share": 33.3},
        {"kind": K.AGENT_RESPONSE.value, "conversations": 1, "share": 16.7},
        {"kind": K.HANDOFF_REQUEST.value, "conversations": 1, "share": 16.7},
        {"kind": K.REPHRASE.value, "conversations": 1, "share": 16.7},
        {"kind": K.TOOL_CALL.value, "conversations": 1, "share": 16.7},
    ],
    "last_tool": [  # at equal counts a named tool before "no tool"
        {"tool": "search", "failed": True, "conversations": 2, "share": 33.3},
        {"tool": None, "failed": False, "conversations": 2, "share": 33.3},
        {"tool": "lookup", "failed": False, "conversations": 1, "share": 16.7},
        {"tool": "search", "failed": False, "conversations": 1, "share": 16.7},
    ],
    "rephrased_in_last_two_turns": {"conversations": 1, "share": 16.7},
}
EXPECTED_OTHER: dict[str, Any] = {
    "abandoned": 2,
    "last_event": [
        {"kind": K.AGENT_RESPONSE.value, "conversations": 1, "share": 50.0},
        {"kind": K.TOOL_ERROR.value, "conversations": 1, "share": 50.0},
    ],
    "last_tool": [
        {"tool": "lookup", "failed": True, "conversations": 1, "share": 50.0},
        {"tool": None, "failed": False, "conversations": 1, "share": 50.0},
    ],
    "rephrased_in_last_two_turns": {"conversations": 1, "share": 50.0},
}


def _agents(document: dict[str, Any]) -> dict[str, Any]:
    return {entry["agent"]: entry["exit_context"] for entry in document["agents"]}


class TestExitContextOnTheStore:
    @pytest.fixture
    def filled(self, store: ConversationStore) -> ConversationStore:
        store.insert(exits().rows)
        return store

    def test_each_exit_counted_as_built(self, filled: ConversationStore) -> None:
        """Last step, last tool (and failure) and recent rephrases equal the hand count, with
        shares in percent of the abandoned conversations."""
        assert StoreReader(filled).report().to_dict()["exit_context"] == EXPECTED

    def test_per_agent(self, filled: ConversationStore) -> None:
        """Each agent's breakdown carries its own exit context, shares of its own abandoned."""
        assert _agents(StoreReader(filled).report().to_dict()) == {
            "bot": EXPECTED_BOT,
            "other": EXPECTED_OTHER,
        }

    def test_window_edge_read_from_raw_events(self, filled: ConversationStore) -> None:
        """A window starting a second before the first event: its partial first hour is read
        from raw events, the rest from the rollup, and the answer is the same."""
        now = BASE + timedelta(days=1) - timedelta(seconds=1)
        assert StoreReader(filled).report(1, now=now).to_dict()["exit_context"] == EXPECTED
        assert (
            StoreReader(filled).report(1, now=now).tool_lift
            == StoreReader(filled).report().tool_lift
        )

    def test_agent_filter(self, filled: ConversationStore) -> None:
        """``report --agent`` narrows the exit context like every other number."""
        assert StoreReader(filled).report(agent="other").to_dict()["exit_context"] == EXPECTED_OTHER

    def test_counts_what_the_abandonment_rate_counts(self, filled: ConversationStore) -> None:
        """The abandoned conversations are exactly those of ``abandonment_rate``: 8 of 11 (the
        revoked inference of r1 counts in neither)."""
        report = StoreReader(filled).report()
        assert report.total_conversations == 11
        assert report.abandonment_rate == pytest.approx(100 * 8 / 11, abs=PERCENT_PLACE)
        assert report.exit_context.abandoned == 8

    def test_revoked_inference_is_left_out_and_comes_back_when_it_stands(
        self, store: ConversationStore
    ) -> None:
        """r1 alone: revoked, no exit context; a new inferred abandonment after the user's
        return stands, and r1's last step is then the user's message."""
        ev = Events()
        ev.rows = [row for row in exits().rows if row.conversation_id == "r1"]
        store.insert(ev.rows)
        assert StoreReader(store).report().exit_context == ExitContext()
        _abandon(ev, "r1", 2000, abandon_inferred=True)
        store.insert(ev.rows[-1:])
        context = StoreReader(store).report().to_dict()["exit_context"]
        assert context["abandoned"] == 1
        assert context["last_event"] == [
            {"kind": K.USER_MESSAGE.value, "conversations": 1, "share": 100.0}
        ]
        assert context["last_tool"] == [
            {"tool": "search", "failed": True, "conversations": 1, "share": 100.0}
        ]

    def test_duplicates_and_evaluations_change_nothing(self, filled: ConversationStore) -> None:
        """The same batch again (a retry) counts once, and an evaluator's verdict after the
        last step is not a step (nor does it revoke s1's inference)."""
        filled.insert(exits().rows)
        filled.insert(
            [
                Events().add("a1", "evaluation", 5, evaluation_name="relevance"),
                Events().add("s1", "evaluation", 950, evaluation_name="relevance"),
            ]
        )
        assert StoreReader(filled).report().to_dict()["exit_context"] == EXPECTED

    def test_no_step_before_leaving_reads_none(self, store: ConversationStore) -> None:
        """An abandonment alone (feedback aside) has last step ``none`` and no tool."""
        ev = Events()
        ev.add("x", E.FEEDBACK_RECEIVED, 0, feedback_rating="negative")
        _abandon(ev, "x", 1)
        store.insert(ev.rows)
        context = StoreReader(store).report().to_dict()["exit_context"]
        assert context["last_event"] == [{"kind": K.NONE.value, "conversations": 1, "share": 100.0}]
        assert context["rephrased_in_last_two_turns"] == {"conversations": 0, "share": 0.0}

    def test_last_two_turns_by_turn_number(self, store: ConversationStore) -> None:
        """An instrumented agent that also records explicitly has each user message twice
        (one derived from its GenAI span) under the same turn number: a rephrase in turn 1 of
        2 counts even when derived copies of turns 1 and 2 come later; a conversation with
        only derived messages reads those."""
        ev = Events()
        ev.add("both", E.USER_MESSAGE, 0, turn=1, rephrase=True)
        ev.add("both", E.USER_MESSAGE, 1, turn=2)
        ev.add("both", E.USER_MESSAGE, 2, turn=1, derived=True)
        ev.add("both", E.USER_MESSAGE, 3, turn=2, derived=True)
        _abandon(ev, "both", 4)
        ev.add("genai", E.USER_MESSAGE, 10, turn=1, derived=True, rephrase=True)
        ev.add("genai", E.AGENT_RESPONSE, 11, turn=1, derived=True)
        _abandon(ev, "genai", 12)
        store.insert(ev.rows)
        context = StoreReader(store).report().to_dict()["exit_context"]
        assert context["rephrased_in_last_two_turns"] == {"conversations": 2, "share": 100.0}
        assert context["last_event"] == [
            {"kind": K.AGENT_RESPONSE.value, "conversations": 1, "share": 50.0},
            {"kind": K.USER_MESSAGE.value, "conversations": 1, "share": 50.0},
        ]

    def test_empty_window(self, store: ConversationStore) -> None:
        """No conversations: zero abandoned, empty lists, no share (not a division by 0)."""
        assert StoreReader(store).report().to_dict()["exit_context"] == {
            "abandoned": 0,
            "last_event": [],
            "last_tool": [],
            "rephrased_in_last_two_turns": {"conversations": 0, "share": None},
        }

    def test_round_trips_through_json(self, filled: ConversationStore) -> None:
        """``Report.from_dict`` inverts ``to_dict`` with the new keys (the collector client)."""
        report = StoreReader(filled).report()
        assert Report.from_dict(json.loads(json.dumps(report.to_dict()))) == report


# ---- tool lift --------------------------------------------------------------------------------

#: (tool calls of the conversation, completed?) repeated: search in 60 conversations (45
#: completed), lookup in 40 (16 completed; 20 of them also call search), rare in 5, and 45
#: conversations calling nothing (20 completed). 130 conversations in all.
LIFT_PLAN: list[tuple[tuple[str, ...], bool, int]] = [
    (("search",), True, 30),
    (("search",), False, 10),
    (("search", "lookup"), True, 15),
    (("search", "lookup", "search"), False, 5),  # search twice: one conversation with it
    (("lookup",), True, 1),
    (("lookup",), False, 19),
    (("rare",), True, 3),
    (("rare",), False, 2),
    ((), True, 20),
    ((), False, 25),
]


def lift_events() -> Events:
    ev = Events()
    index = 0
    for tools, completed, count in LIFT_PLAN:
        for _ in range(count):
            cid = f"t{index}"
            ev.add(cid, E.USER_MESSAGE, index, turn=1)
            for tool in tools:
                ev.add(cid, E.TOOL_CALLED, index + 0.1, turn=1, tool_name=tool)
            if completed:
                ev.add(cid, E.COMPLETED, index + 0.5, total_turns=1)
            index += 1
    return ev


def _lift_counts(tool: str) -> tuple[int, int, int, int]:
    """(completed with, with, completed without, without) worked out from the plan."""
    with_n = sum(n for tools, _, n in LIFT_PLAN if tool in tools)
    with_k = sum(n for tools, done, n in LIFT_PLAN if tool in tools and done)
    total = sum(n for _, _, n in LIFT_PLAN)
    done = sum(n for _, ok, n in LIFT_PLAN if ok)
    return with_k, with_n, done - with_k, total - with_n


def assert_lift_matches_statsmodels(lifts: list[dict[str, Any]]) -> None:
    """Every tool's numbers equal statsmodels' Wilson intervals and pooled z-test on the
    plan's counts, and significance follows compare's rule."""
    assert [entry["tool"] for entry in lifts] == ["search", "lookup", "rare"]  # most used first
    for entry in lifts:
        k1, n1, k2, n2 = _lift_counts(entry["tool"])
        for side, k, n in (("with", k1, n1), ("without", k2, n2)):
            group = entry[side]
            assert (group["conversations"], group["completed"]) == (n, k)
            assert group["completion_rate"] == pytest.approx(100 * k / n, abs=PERCENT_PLACE)
            low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
            assert group["completion_ci"] == pytest.approx(
                [100 * low, 100 * high], abs=PERCENT_PLACE
            )
        _, p_value = proportions_ztest([k1, k2], [n1, n2])
        assert entry["p_value"] == pytest.approx(float(p_value), rel=1e-9)
        assert entry["lift"] == pytest.approx(100 * (k1 / n1 - k2 / n2), abs=PERCENT_PLACE)
        enough = min(n1, n2) >= MIN_COMPARE_SAMPLE
        assert entry["significant"] is bool(enough and p_value < 0.05)
        assert entry["note"] == (None if enough else TOO_FEW_NOTE)


class TestToolLift:
    @pytest.fixture
    def filled(self, store: ConversationStore) -> ConversationStore:
        store.insert(lift_events().rows)
        return store

    def test_matches_statsmodels(self, filled: ConversationStore) -> None:
        """search: 45/60 vs 24/70; lookup: 16/40 vs 53/90; rare: 3/5 vs 66/125 (too few)."""
        lifts = StoreReader(filled).report().to_dict()["tool_lift"]
        assert_lift_matches_statsmodels(lifts)
        by_tool = {entry["tool"]: entry for entry in lifts}
        # The figures the README quotes, pinned.
        search, lookup = by_tool["search"], by_tool["lookup"]
        assert (search["with"]["completion_rate"], search["with"]["completion_ci"]) == (
            75.0,
            [62.8, 84.2],
        )
        assert (search["without"]["completion_rate"], search["without"]["completion_ci"]) == (
            34.3,
            [24.2, 46.0],
        )
        assert (search["lift"], search["significant"]) == (40.7, True)
        assert search["p_value"] == pytest.approx(3.531998425062313e-06, rel=1e-9)
        assert (lookup["lift"], lookup["significant"]) == (-18.9, True)
        assert lookup["p_value"] == pytest.approx(0.04639595248378352, rel=1e-9)
        assert (by_tool["rare"]["significant"], by_tool["rare"]["note"]) == (False, TOO_FEW_NOTE)

    def test_minimum_sample_on_the_without_side(self, store: ConversationStore) -> None:
        """A tool nearly every conversation calls leaves too few without it to call any
        difference significant, however large."""
        ev = Events()
        for index in range(100):
            ev.add(f"u{index}", E.TOOL_CALLED, index, tool_name="always")
            ev.add(f"u{index}", E.COMPLETED, index + 0.5)
        for index in range(MIN_COMPARE_SAMPLE - 1):
            ev.add(f"n{index}", E.USER_MESSAGE, 200 + index, turn=1)
        store.insert(ev.rows)
        (lift,) = StoreReader(store).report().to_dict()["tool_lift"]
        assert lift["p_value"] < 1e-10
        assert (lift["significant"], lift["note"]) == (False, TOO_FEW_NOTE)

    def test_no_tools_no_lift(self, store: ConversationStore) -> None:
        store.insert([row for row in lift_events().rows if not row.tool_name])
        assert StoreReader(store).report().tool_lift == []


# ---- through the CLI and a collector -----------------------------------------------------------


@pytest.fixture
def written(store_url: str) -> str:
    store = open_store(store_url)
    try:
        store.insert(exits().rows + lift_events().rows)
    finally:
        store.close()
    return store_url


class TestThroughTheCommandAndTheApi:
    def test_report_json_and_table(self, written: str) -> None:
        """``report --format json`` carries both keys; the table shows both sections."""
        document = json.loads(run_cli("report", "--format", "json", "--store", written).stdout)
        assert document["exit_context"] == EXPECTED  # lift_events adds no abandonment
        assert [entry["tool"] for entry in document["tool_lift"]][:2] == ["search", "lookup"]
        table = run_cli("report", "--store", written).stdout
        assert "Just before leaving" in table
        cells = [line.split() for line in table.splitlines()]
        assert ["tool_error", "3", "37.5%"] in cells
        assert ["(no", "tool)", "no", "3", "37.5%"] in cells
        assert "Rephrase in last two turns  2 (25.0%)" in table
        agents = {row[0]: row for row in cells if row[:1] in (["bot"], ["other"])}
        assert agents["bot"][-2:] == ["tool_error", "33.3%"]  # per agent: the top last step
        assert agents["other"][-2:] == ["agent_response", "50.0%"]
        search = next(row for row in cells if row[:1] == ["search"] and "significant" in row)
        lift = next(e for e in document["tool_lift"] if e["tool"] == "search")
        assert search[1:3] == [
            str(lift["with"]["conversations"]),
            str(lift["with"]["completion_rate"]),
        ]

    def test_collector_api_and_cli_through_it(
        self, store: ConversationStore, store_url: str, tmp_path: Path
    ) -> None:
        """``/api/v1/report`` returns the same Report, and ``report --collector`` prints it."""
        store.insert(exits().rows)
        store.insert(lift_events().rows)
        expected = StoreReader(store).report().to_dict()
        with collector_api(store, store_url, tmp_path) as api:
            status, document = get_json(api, "/api/v1/report")
            assert status == 200, document
            assert document["exit_context"] == EXPECTED
            assert _agents(document) == _agents(expected)
            assert document["tool_lift"] == expected["tool_lift"]
            done = run_cli("report", "--format", "json", "--collector", api)
            assert json.loads(done.stdout)["exit_context"] == EXPECTED


class TestUpgradedStore:
    """A store whose rollup predates the exit columns gets them when opened."""

    def test_old_conversations_read_none_new_ones_their_exit(self, store_url: str) -> None:
        """Conversations rolled up before the upgrade read ``none`` with no tool (the
        documented fallback); those written after it read their real exit, and nothing breaks."""
        new_columns = {"last_step_key", "last_tool_key", "last_rephrase_turn", "tool_names"}
        ev = exits()
        old_rows = [row for row in ev.rows if row.conversation_id == "a2"]
        new_rows = [row for row in ev.rows if row.conversation_id == "a1"]
        with pytest.MonkeyPatch.context() as patch:
            previous = tuple(c for c in sql.ROLLUP_COLUMNS if c.name not in new_columns)
            patch.setattr(sql, "ROLLUP_COLUMNS", previous)
            old = open_store(store_url)
            try:
                old.insert(old_rows)
            finally:
                old.close()
        store = open_store(store_url)
        try:
            store.insert(new_rows)
            report = StoreReader(store).report().to_dict()
        finally:
            store.close()
        assert report["exit_context"]["last_event"] == [
            {"kind": K.AGENT_RESPONSE.value, "conversations": 1, "share": 50.0},
            {"kind": K.NONE.value, "conversations": 1, "share": 50.0},
        ]
        assert report["exit_context"]["last_tool"] == [
            {"tool": None, "failed": False, "conversations": 2, "share": 100.0}
        ]
        assert report["tool_lift"] == []

    def test_exits_rolled_up_by_the_previous_encoding_still_read(self, store_url: str) -> None:
        """A rollup written when the exit columns were tuples (``last_step``,
        ``last_tool_call``) gets the encoded columns with those as their default: every
        conversation rolled up before the upgrade keeps its exit context, and later ones add."""
        ev = exits()
        earlier = {"a1", "a2", "a3", "a4", "a5"}
        kind = (
            "multiIf("
            + "".join(
                f"{condition}, '{exit_kind.value}', " for condition, exit_kind in sql._EXIT_KINDS
            )
            + f"'{K.OTHER.value}')"
        )
        ts = sql.TS_TYPE
        legacy = (
            sql.RollupColumn(
                "last_step",
                f"SimpleAggregateFunction(max, Tuple({ts}, UInt8, String, String))",
                f"maxIf((timestamp, toUInt8({sql._EXIT_RANK}), {kind}, event_id), "
                f"NOT ({sql._NOT_A_STEP}))",
                "max(last_step)",
            ),
            sql.RollupColumn(
                "last_tool_call",
                f"SimpleAggregateFunction(max, Tuple({ts}, String, String, UInt8))",
                "maxIf((timestamp, event_id, toString(tool_name), toUInt8(error_type != '')), "
                f"event_type = '{E.TOOL_CALLED.value}')",
                "max(last_tool_call)",
            ),
        )
        encoded = {"last_step_key", "last_tool_key"}
        with pytest.MonkeyPatch.context() as patch:
            previous = tuple(c for c in sql.ROLLUP_COLUMNS if c.name not in encoded) + legacy
            patch.setattr(sql, "ROLLUP_COLUMNS", previous)
            old = open_store(store_url)
            try:
                old.insert([row for row in ev.rows if row.conversation_id in earlier])
            finally:
                old.close()
        store = open_store(store_url)
        try:
            store.insert([row for row in ev.rows if row.conversation_id not in earlier])
            report = StoreReader(store).report().to_dict()
        finally:
            store.close()
        assert report["exit_context"] == EXPECTED


class TestEncodedExitKeys:
    """The rollup's exit keys order steps and tool calls exactly as the tuples they encode."""

    #: 5,000 random (time, id, tool, failed, rank) rows in 500 groups: times drawn from few
    #: values (ties) over negative and positive epochs, ids of random length (prefixes of
    #: each other); a call's tool name (any length, empty included) and failure follow from
    #: its (time, id), as one event's do.
    ROWS = """
SELECT g, at, id, substring('search_kb_tool', 1, cityHash64(at, id) % 15) AS tool,
    cityHash64(id, at) % 2 = 1 AS failed, rank
FROM (
    SELECT number % 500 AS g,
        toDateTime64(fromUnixTimestamp64Micro(
            toInt64((rand64(1) % 5 - 2) * 1000000007 + rand(2) % 3), 'UTC'), 6, 'UTC') AS at,
        substring('abcabcab', 1, rand(3) % 6) AS id,
        toUInt8(rand(6) % 8) AS rank
    FROM numbers(5000)
)"""

    def test_tool_key_decodes_to_the_latest_call_by_time_then_id(
        self, store: ConversationStore
    ) -> None:
        """Decoding the max of the tool keys gives the tool and failure of the call that is
        latest by (time, event id), in every group."""
        key = sql._tool_key("at", "id", "tool", "failed")
        rows = store.select(
            f"""SELECT g, tool, tool_failed, expected FROM (
    SELECT *, NULL AS last_step_key, 0 AS last_rephrase_turn, 0 AS last_user_turn,
        {sql._EXIT_COLUMNS}
    FROM (
        SELECT g, max({key}) AS last_tool_key, argMax((tool, failed), (at, id)) AS expected
        FROM ({self.ROWS}) GROUP BY g
    )
)"""
        )
        assert len(rows) == 500
        assert [[r["tool"], bool(r["tool_failed"])] for r in rows] == [
            [r["expected"][0], bool(r["expected"][1])] for r in rows
        ]

    def test_step_key_orders_by_time_then_rank(self, store: ConversationStore) -> None:
        """The max step key's rank is the rank of the latest (time, rank) pair."""
        key = sql._step_key("at", "rank")
        rows = store.select(
            f"""SELECT g, toUInt8(bitAnd(max({key}), 7)) AS rank_got,
    tupleElement(max((at, rank)), 2) AS rank_expected
FROM ({self.ROWS}) GROUP BY g"""
        )
        assert len(rows) == 500
        assert [row["rank_got"] for row in rows] == [row["rank_expected"] for row in rows]
