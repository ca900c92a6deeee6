"""``conversations``: hand-built conversations whose outcome, turns, rephrases, satisfaction and
last activity are known, listed and filtered on the store, through the CLI (a subprocess) and
through a real collector's API, and bad input refused in the same words everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collector_process import run_cli
from handbuilt import E, Events, at, collector_api, get_json
from opentelemetry.exporter.conversation_analytics.analytics import (
    MAX_CONVERSATIONS_LIMIT,
    ConversationList,
)
from opentelemetry.exporter.conversation_analytics.collector.client import (
    ENV_AUTH_TOKEN,
    CollectorClient,
)
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, open_store
from opentelemetry.exporter.conversation_analytics.store.base import MAX_MIN_TURNS

KEYS = {
    "conversation_id",
    "agent",
    "outcome",
    "turns",
    "satisfaction",
    "rephrases",
    "last_activity",
    "started_at",
    "handed_off",
}


def _messages(ev: Events, cid: str, start: float, count: int, **kw: Any) -> None:
    for turn in range(1, count + 1):
        ev.add(cid, E.USER_MESSAGE, start + turn, turn=turn, **kw)


def built() -> Events:
    """Nine conversations, each in its own minute (later ones later), with its satisfaction
    worked out by hand from the section 4 signals."""
    ev = Events()
    # done: 2 messages, completed -> 0.9.
    ev.add("done", E.STARTED, 0)
    _messages(ev, "done", 0, 2)
    ev.add("done", E.COMPLETED, 5)
    # handoff-done: handed off, then completed (1 message) -> completed; 0.9.
    ev.add("handoff-done", E.STARTED, 60)
    _messages(ev, "handoff-done", 60, 1)
    ev.add("handoff-done", E.HANDOFF_REQUESTED, 62)
    ev.add("handoff-done", E.COMPLETED, 63)
    # handoff: 4 messages, handed off -> (0.3 + 0.7) / 2 = 0.5.
    ev.add("handoff", E.STARTED, 120)
    _messages(ev, "handoff", 120, 4)
    ev.add("handoff", E.HANDOFF_REQUESTED, 125)
    # handoff-left: handed off, then left (1 message) -> abandoned; 0.3.
    ev.add("handoff-left", E.STARTED, 180)
    _messages(ev, "handoff-left", 180, 1)
    ev.add("handoff-left", E.HANDOFF_REQUESTED, 182)
    ev.add("handoff-left", E.ABANDONED, 183, abandoned_at_turn=1)
    # left: 5 messages, 2 rephrases, abandoned -> (0.1 + 0.6) / 2 = 0.35.
    ev.add("left", E.STARTED, 240)
    _messages(ev, "left", 240, 3)
    ev.add("left", E.USER_MESSAGE, 244, turn=4, rephrase=True)
    ev.add("left", E.USER_MESSAGE, 245, turn=5, rephrase=True)
    ev.add("left", E.ABANDONED, 246, abandoned_at_turn=5)
    # open: 1 message, nothing else -> 0.1.
    ev.add("open", E.STARTED, 300)
    _messages(ev, "open", 300, 1)
    # revoked: inferred abandonment, then the user came back -> open; 2 messages; 0.1.
    ev.add("revoked", E.STARTED, 360)
    _messages(ev, "revoked", 360, 1)
    ev.add("revoked", E.ABANDONED, 362, abandoned_at_turn=1, abandon_inferred=True)
    ev.add("revoked", E.USER_MESSAGE, 363, turn=2)
    # tie: 3 messages, open, 2 positive + 4 negative -> (20 + 1 + 8) / 80 = 0.3625 exactly,
    # which reads 0.363 (half up; float round() would say 0.362).
    ev.add("tie", E.STARTED, 420)
    _messages(ev, "tie", 420, 3)
    for index, rating in enumerate(("positive",) * 2 + ("negative",) * 4):
        ev.add("tie", E.FEEDBACK_RECEIVED, 424 + index, feedback_rating=rating)
    # research (agent research): 4 messages, completed, +1 -1 -> (1 + 0 + 0.7) / 3 = 0.567.
    ev.add("research", E.STARTED, 480, "research")
    _messages(ev, "research", 480, 4, agent="research")
    ev.add("research", E.FEEDBACK_RECEIVED, 485, "research", feedback_rating="positive")
    ev.add("research", E.FEEDBACK_RECEIVED, 486, "research", feedback_rating="negative")
    ev.add("research", E.COMPLETED, 487, "research")
    return ev


#: conversation id -> (agent, outcome, turns, satisfaction, rephrases, last activity s,
#: started s, handed off)
FACTS: dict[str, tuple[str, str, int, float, int, float, float, bool]] = {
    "done": ("bot", "completed", 2, 0.9, 0, 5, 0, False),
    "handoff-done": ("bot", "completed", 1, 0.9, 0, 63, 60, True),
    "handoff": ("bot", "handoff", 4, 0.5, 0, 125, 120, True),
    "handoff-left": ("bot", "abandoned", 1, 0.3, 0, 183, 180, True),
    "left": ("bot", "abandoned", 5, 0.35, 2, 246, 240, False),
    "open": ("bot", "open", 1, 0.1, 0, 301, 300, False),
    "revoked": ("bot", "open", 2, 0.1, 0, 363, 360, False),
    "tie": ("bot", "open", 3, 0.363, 0, 429, 420, False),
    "research": ("research", "completed", 4, 0.567, 0, 487, 480, False),
}
#: Worst satisfaction first; ties by more turns, then later activity, then id.
BY_SATISFACTION = [
    "revoked",
    "open",
    "handoff-left",
    "left",
    "tie",
    "handoff",
    "research",
    "done",
    "handoff-done",
]
BY_ACTIVITY = sorted(FACTS, key=lambda cid: -FACTS[cid][5])


def expected_entry(cid: str) -> dict[str, Any]:
    agent, outcome, turns, score, rephrases, last, started, handed = FACTS[cid]
    return {
        "conversation_id": cid,
        "agent": agent,
        "outcome": outcome,
        "turns": turns,
        "satisfaction": score,
        "rephrases": rephrases,
        "last_activity": at(last),
        "started_at": at(started),
        "handed_off": handed,
    }


def ids(listing: ConversationList | dict[str, Any]) -> list[str]:
    document = listing.to_dict() if isinstance(listing, ConversationList) else listing
    return [entry["conversation_id"] for entry in document["conversations"]]


class TestOnTheStore:
    @pytest.fixture
    def filled(self, store: ConversationStore) -> ConversationStore:
        store.insert(built().rows)
        return store

    def test_every_field_as_built(self, filled: ConversationStore) -> None:
        """Default order (worst satisfaction first) and every key of every entry."""
        document = StoreReader(filled).conversations().to_dict()
        assert ids(document) == BY_SATISFACTION
        for entry in document["conversations"]:
            assert set(entry) == KEYS
            assert entry == expected_entry(entry["conversation_id"])
        assert {k: v for k, v in document.items() if k != "conversations"} == {
            "days": 7,
            "agent": "",
            "outcome": None,
            "rephrased": False,
            "min_turns": 0,
            "order": "satisfaction",
            "limit": 20,
        }

    def test_order_by_last_activity(self, filled: ConversationStore) -> None:
        assert ids(StoreReader(filled).conversations(order="last_activity")) == BY_ACTIVITY

    @pytest.mark.parametrize(
        ("outcome", "expected"),
        [
            # A handoff then a completion is completed (the report counts it in completion).
            ("completed", ["research", "done", "handoff-done"]),
            # A handoff then an abandonment is abandoned, as the Grafana Outcome column says.
            ("abandoned", ["handoff-left", "left"]),
            ("handoff", ["handoff"]),
            # A revoked inferred abandonment leaves the conversation open.
            ("open", ["revoked", "open", "tie"]),
        ],
    )
    def test_outcome_filter(
        self, filled: ConversationStore, outcome: str, expected: list[str]
    ) -> None:
        assert ids(StoreReader(filled).conversations(outcome=outcome)) == expected

    def test_outcomes_agree_with_the_report(self, filled: ConversationStore) -> None:
        """Listed as completed / abandoned: the conversations the report's completion and
        abandonment rates count (a conversation counts in one outcome only)."""
        report = StoreReader(filled).report()
        listing = StoreReader(filled).conversations()
        outcomes = [entry.outcome for entry in listing.conversations]
        total = report.total_conversations
        assert len(outcomes) == total == 9
        assert report.completion_rate == round(100 * outcomes.count("completed") / total, 1)
        assert report.abandonment_rate == round(100 * outcomes.count("abandoned") / total, 1)

    def test_rephrased_min_turns_agent_limit(self, filled: ConversationStore) -> None:
        assert ids(StoreReader(filled).conversations(rephrased=True)) == ["left"]
        assert ids(StoreReader(filled).conversations(min_turns=4)) == [
            "left",
            "handoff",
            "research",
        ]
        assert ids(StoreReader(filled).conversations(min_turns=6)) == []
        assert ids(StoreReader(filled).conversations(agent="research")) == ["research"]
        assert ids(StoreReader(filled).conversations(limit=2)) == BY_SATISFACTION[:2]
        assert ids(StoreReader(filled).conversations(outcome="completed", min_turns=2)) == [
            "research",
            "done",
        ]
        assert (
            ids(StoreReader(filled).conversations(order="last_activity", limit=3))
            == BY_ACTIVITY[:3]
        )

    def test_values_are_parameters_not_sql(self, filled: ConversationStore) -> None:
        """A quote in the agent filter is a value that matches nothing, not SQL."""
        assert ids(StoreReader(filled).conversations(agent="bot' OR 1=1 --")) == []

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"outcome": "won"}, "outcome must be one of completed, abandoned, handoff, open"),
            ({"limit": 0}, f"limit must be between 1 and {MAX_CONVERSATIONS_LIMIT}, got 0"),
            ({"min_turns": -1}, f"min_turns must be between 0 and {MAX_MIN_TURNS}, got -1"),
            ({"order": "turns"}, "order must be one of satisfaction, last_activity"),
            ({"days": 0}, "days must be between 1 and"),
        ],
    )
    def test_bad_arguments(
        self, filled: ConversationStore, kwargs: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            StoreReader(filled).conversations(**kwargs)


@pytest.fixture
def written(store_url: str) -> str:
    store = open_store(store_url)
    try:
        store.insert(built().rows)
    finally:
        store.close()
    return store_url


def _cli(*args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        run_cli("conversations", *args, "--format", "json").stdout
    )
    return document


#: (flags, message) for usage errors; the API gives the same message with the parameter's
#: name (``limit`` for ``--limit``, ``min_turns`` for ``--min-turns``).
BAD_FLAGS = [
    (
        ("--outcome", "won"),
        "--outcome must be one of completed, abandoned, handoff, open; got 'won'",
    ),
    (("--limit", "0"), f"--limit must be between 1 and {MAX_CONVERSATIONS_LIMIT}, got 0"),
    (("--limit", "1001"), f"--limit must be between 1 and {MAX_CONVERSATIONS_LIMIT}, got 1001"),
    (("--limit", "ten"), "--limit must be a whole number, got 'ten'"),
    (("--min-turns", "-1"), f"--min-turns must be between 0 and {MAX_MIN_TURNS}, got -1"),
    (("--order", "turns"), "--order must be one of satisfaction, last_activity; got 'turns'"),
    (("--days", "0"), "--days must be between 1 and 36500, got 0"),
]
BAD_IDS = ["outcome", "limit-0", "limit-big", "limit-word", "min-turns", "order", "days"]


class TestCommand:
    def test_json_as_the_store_lists(self, written: str) -> None:
        document = _cli("--store", written)
        assert ids(document) == BY_SATISFACTION
        assert document["conversations"] == [expected_entry(cid) for cid in BY_SATISFACTION]
        filtered = _cli("--outcome", "open", "--min-turns", "2", "--store", written)
        assert ids(filtered) == ["revoked", "tie"]
        assert ids(_cli("--rephrased", "--store", written)) == ["left"]
        recent = _cli("--order", "last_activity", "--limit", "2", "--store", written)
        assert ids(recent) == BY_ACTIVITY[:2]
        assert ids(_cli("--agent", "research", "--store", written)) == ["research"]

    def test_table_lists_ids_to_drill_into(self, written: str) -> None:
        table = run_cli("conversations", "--limit", "3", "--store", written).stdout
        rows = [line.split() for line in table.splitlines()]
        listed = [row[0] for row in rows if row and row[0] in FACTS]
        assert listed == BY_SATISFACTION[:3]
        assert "conversation-analytics conversation ID" in table
        # And the id drills into its events.
        detail = json.loads(
            run_cli("conversation", "left", "--format", "json", "--store", written).stdout
        )
        assert detail["satisfaction"] == pytest.approx(0.35)

    @pytest.mark.parametrize(("args", "message"), BAD_FLAGS, ids=BAD_IDS)
    def test_usage_errors_exit_2(self, store_url: str, args: tuple[str, ...], message: str) -> None:
        done = run_cli("conversations", *args, "--store", store_url, check=False)
        assert done.returncode == 2
        assert (
            done.stderr.splitlines()[-1]
            == f"conversation-analytics conversations: error: {message}"
        )
        assert done.stdout == ""


class TestApi:
    @pytest.fixture
    def api(self, store: ConversationStore, store_url: str, tmp_path: Path) -> Any:
        store.insert(built().rows)
        with collector_api(store, store_url, tmp_path) as url:
            yield url

    def test_api_and_cli_through_it(self, api: str, store: ConversationStore) -> None:
        status, document = get_json(api, "/api/v1/conversations")
        assert status == 200, document
        assert document == StoreReader(store).conversations().to_dict()
        status, document = get_json(
            api, "/api/v1/conversations?outcome=abandoned&order=last_activity&limit=1"
        )
        assert (status, ids(document)) == (200, ["left"])
        status, document = get_json(api, "/api/v1/conversations?rephrased=true&min_turns=5")
        assert (status, ids(document)) == (200, ["left"])
        status, document = get_json(api, "/api/v1/conversations?agent=research&days=2")
        assert (status, ids(document)) == (200, ["research"])
        through = _cli("--outcome", "open", "--collector", api)
        assert through == StoreReader(store).conversations(outcome="open").to_dict()

    @pytest.mark.parametrize(("args", "message"), BAD_FLAGS, ids=BAD_IDS)
    def test_bad_parameters_are_a_400_in_the_clis_words(
        self, api: str, args: tuple[str, ...], message: str
    ) -> None:
        flag, value = args
        name = flag.removeprefix("--").replace("-", "_")
        status, document = get_json(api, f"/api/v1/conversations?{name}={value}")
        assert (status, document) == (400, {"error": message.replace(flag, name, 1)})

    def test_bad_rephrased_value(self, api: str) -> None:
        status, document = get_json(api, "/api/v1/conversations?rephrased=maybe")
        assert (status, document) == (
            400,
            {"error": "rephrased must be true or false, got 'maybe'"},
        )

    def test_client_raises_the_stores_value_error(self, api: str) -> None:
        """The client turns the API's 400 into the store's ValueError, in its words."""
        with pytest.raises(ValueError, match=r"^limit must be between 1 and 1000, got 0$"):
            CollectorClient(api).conversations(7, limit=0)

    def test_guarded_by_the_bearer_token(
        self, store: ConversationStore, store_url: str, tmp_path: Path
    ) -> None:
        store.insert(built().rows)
        with collector_api(store, store_url, tmp_path, auth_token="s3cret") as api:
            status, document = get_json(api, "/api/v1/conversations")
            assert (status, document) == (401, {"error": "missing or wrong bearer token"})
            status, document = get_json(api, "/api/v1/conversations", token="s3cret")
            assert (status, ids(document)) == (200, BY_SATISFACTION)
            done = run_cli(
                "conversations", "--format", "json", "--collector", api,
                env={ENV_AUTH_TOKEN: "s3cret"},
            )  # fmt: skip
            assert ids(json.loads(done.stdout)) == BY_SATISFACTION
