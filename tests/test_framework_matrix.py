"""The compatibility matrix: real GenAI frameworks and instrumentations, pinned, unmodified,
against the local OpenAI stub, each with ``ConversationInstrumentor`` on the same provider.

Every set-up of ``framework_agents.SETUPS`` runs in its own process (instrumentors patch
libraries globally) and must give, through the in-process exporter's extraction **and** the
collector's (the same spans encoded as OTLP by the official encoder): exactly three turns per
conversation, the tool call in turn 2, the answering model, the framework's agent name where it
names one, 80% completion, one pseudonym per user (hashed once), and no raw user id anywhere in
the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import framework_agents as fa
from conftest import TEST_USER_ID_KEY
from openai_stub import MODEL_SUFFIX, OpenAIStub
from opentelemetry.exporter.conversation_analytics.collector.otlp import rows_from_traces
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer

AGENTS_SCRIPT = Path(fa.__file__)
RUN_TIMEOUT = 300  # seconds; a set-up takes a few


@dataclasses.dataclass
class Outcome:
    setup: str
    exporter_rows: list[EventRow]
    collector_rows: list[EventRow]
    rejected: dict[str, int]


def _run(setup: str, stub: OpenAIStub, out: Path) -> Outcome:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATION_ANALYTICS_")}
    environ.update(
        {
            env.CONVERSATION_ANALYTICS_USER_ID_KEY: TEST_USER_ID_KEY.decode(),
            "TRACELOOP_TELEMETRY": "false",
            "OPENAI_API_KEY": "",  # the Agents SDK's own trace export stays off
            **dict(fa.SETUPS[setup].env),
        }
    )
    done = subprocess.run(
        [sys.executable, str(AGENTS_SCRIPT), setup, stub.base_url, str(out)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads((out / "rows.json").read_text())
    request = ExportTraceServiceRequest()
    request.ParseFromString((out / "spans.pb").read_bytes())
    return Outcome(
        setup,
        [EventRow(**row) for row in document["rows"]],
        rows_from_traces(request).rows,
        document["rejected"],
    )


@pytest.fixture(scope="module")
def matrix_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


@pytest.fixture(scope="module", params=sorted(fa.SETUPS))
def outcome(
    request: pytest.FixtureRequest,
    matrix_stub: OpenAIStub,
    tmp_path_factory: pytest.TempPathFactory,
) -> Outcome:
    """One set-up's run, shared by the checks below (a process per set-up)."""
    setup = str(request.param)
    return _run(setup, matrix_stub, tmp_path_factory.mktemp(setup.replace("+", "-")))


def _by_conversation(rows: list[EventRow]) -> dict[str, list[EventRow]]:
    grouped: dict[str, list[EventRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.timestamp_ns, r.event_id)):
        grouped[row.conversation_id].append(row)
    return grouped


def _kind(rows: list[EventRow], kind: str) -> list[EventRow]:
    return [row for row in rows if row.event_type == kind]


class TestMatrix:
    def test_exporter_and_collector_give_the_same_rows(self, outcome: Outcome) -> None:
        """One extractor over two encodings: identical rows, nothing rejected."""
        assert outcome.rejected == {}
        assert outcome.exporter_rows
        key = lambda row: row.event_id  # noqa: E731
        assert sorted(outcome.collector_rows, key=key) == sorted(outcome.exporter_rows, key=key)

    def test_turns_tools_models_and_agent(self, outcome: Outcome) -> None:
        """Per conversation: turns 1-3, one started, three answers by the answering model,
        the tool in turn 2, the framework's agent name."""
        setup_name = outcome.setup
        setup = fa.SETUPS[setup_name]
        conversations = _by_conversation(outcome.collector_rows)
        expected_ids = {fa.conversation_id(setup_name, i) for i in range(fa.CONVERSATIONS)}
        assert set(conversations) == expected_ids
        for cid, rows in conversations.items():
            assert [r.turn for r in _kind(rows, "user_message")] == [1, 2, 3], cid
            assert len(_kind(rows, "started")) == 1, cid
            answers = _kind(rows, "agent_response")
            assert [r.turn for r in answers] == [1, 2, 3], cid
            assert {r.response_model for r in answers} == {fa.MODEL + MODEL_SUFFIX}, cid
            assert [(r.tool_name, r.turn) for r in _kind(rows, "tool_called")] == [
                (fa.TOOL_NAME, 2)
            ], cid
            if setup.agent_name is not None:
                assert {r.agent_name for r in rows} == {setup.agent_name}, cid

    def test_user_ids_are_pseudonymised_exactly_once(self, outcome: Outcome) -> None:
        """Whoever set it (scope, OpenInference, association properties, run metadata), a
        user is one pseudonym: the keyed hash of the raw id, applied once."""
        pseudonymize = UserIdPseudonymizer(TEST_USER_ID_KEY)
        setup_name = outcome.setup
        for index in range(fa.CONVERSATIONS):
            rows = _by_conversation(outcome.collector_rows)[fa.conversation_id(setup_name, index)]
            derived = [row for row in rows if row.derived]
            assert {row.user_id for row in derived} == {pseudonymize(fa.raw_user(index))}

    def test_numbers_in_the_store(self, outcome: Outcome, store: ConversationStore) -> None:
        """The report: 5 conversations, 3.0 turns, 80% completion, 5 tool calls; no raw user
        id in any stored column."""
        store.insert(outcome.collector_rows)
        report = StoreReader(store).report()
        assert report.total_conversations == fa.CONVERSATIONS
        assert report.avg_turns == 3.0
        assert report.completion_rate == 80.0
        stored: list[dict[str, Any]] = store.select(f"SELECT * FROM {store.schema.events}")
        assert sum(row["event_type"] == "tool_called" for row in stored) == fa.CONVERSATIONS
        dumped = json.dumps(stored, default=str)
        assert "@example.com" not in dumped
