"""Zero-code path: ``opentelemetry-instrument`` over the unmodified example agents, in subprocesses,
with ``OTEL_TRACES_EXPORTER=conversation_analytics``; and a conversation id that reaches a second
process only as a W3C baggage header."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from openai_stub import OpenAIStub
from opentelemetry import propagate
from opentelemetry.exporter.conversation_analytics.analytics import Report
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import open_store
from opentelemetry.instrumentation.conversation import conversation

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
TIMEOUT = 120


def _stored(store_url: str, conversation_id: str) -> tuple[Report, list[dict[str, Any]]]:
    """The report and one conversation's events, read after the agent process has exited (the
    embedded store admits one process at a time)."""
    store = open_store(store_url)
    try:
        return StoreReader(store).report(), StoreReader(store).conversation(conversation_id).events
    finally:
        store.close()


@pytest.fixture
def agent_env(stub: OpenAIStub, store_url: str) -> dict[str, str]:
    """What an operator sets: exporters by name, the store, the model endpoint."""
    return {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "conversation_analytics",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "support-agent",
        "CONVERSATION_ANALYTICS_STORE": store_url,
        "CONVERSATION_ANALYTICS_USER_ID_KEY": "zero-code-test",
        "OPENAI_BASE_URL": stub.base_url,
        "OPENAI_API_KEY": "test",
        "PYTHONPATH": str(EXAMPLES),
    }


class TestOpentelemetryInstrument:
    def test_unmodified_agent_gets_conversation_rows(
        self, agent_env: dict[str, str], store_url: str, stub: OpenAIStub
    ) -> None:
        """The agent sets only a conversation id and completes it; auto-instrumentation and the
        exporter entry point give its turns, tool call, model and outcome."""
        done = subprocess.run(
            [
                str(INSTRUMENT),
                sys.executable,
                str(EXAMPLES / "openai_support_agent.py"),
                "c-zero",
                "hi",
                "where is my order?",
            ],
            env=agent_env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["Echo: hi", "Your order ships tomorrow."]
        assert len(stub.requests) == 3
        report, events = _stored(store_url, "c-zero")
        assert (report.total_conversations, report.avg_turns, report.completion_rate) == (
            1,
            2.0,
            100.0,
        )
        kinds = [event["event_type"] for event in events]
        assert kinds.count("tool_called") == 1 and kinds.count("completed") == 1
        assert {e["response_model"] for e in events if e["event_type"] == "agent_response"} == {
            "gpt-4o-mini-2024-08-06"
        }
        assert {e["service_name"] for e in events} == {"support-agent"}


class TestBaggageAcrossProcesses:
    def test_front_end_baggage_names_the_conversation(
        self, agent_env: dict[str, str], store_url: str
    ) -> None:
        """The front end's ``baggage`` header is the only place the agent service learns the
        conversation id; its spans and its one-line completion land in that conversation."""
        service = subprocess.Popen(
            [str(INSTRUMENT), sys.executable, str(EXAMPLES / "agent_service.py")],
            env=agent_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert service.stdout is not None
            line = service.stdout.readline()
            assert line.startswith("listening on "), service.stderr.read() if service.stderr else ""
            port = int(line.split()[-1])
            with conversation("c-front", user_id="u-front"):
                for path, body in (
                    ("/chat", {"message": "hi"}),
                    ("/chat", {"message": "where is my order?"}),
                    ("/complete", {}),
                ):
                    headers = {"Content-Type": "application/json"}
                    propagate.inject(headers)
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{port}{path}",
                        data=json.dumps(body).encode(),
                        headers=headers,
                    )
                    with urllib.request.urlopen(request, timeout=30) as response:
                        assert response.status == 200
            service.send_signal(signal.SIGTERM)
            assert service.wait(timeout=TIMEOUT) == 0
        finally:
            if service.poll() is None:
                service.kill()
                service.wait()
        report, events = _stored(store_url, "c-front")
        assert (report.total_conversations, report.avg_turns, report.completion_rate) == (
            1,
            2.0,
            100.0,
        )
        assert [e["event_type"] for e in events].count("tool_called") == 1
        assert all(e["user_id"] == "" for e in events)  # user ids never travel in baggage
