"""ConversationTracker: span events on the agent's own traces, safe inside the agent."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry import trace
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    UserIdPseudonymizer,
    semconv,
)
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation.tracker import EVENT_SPAN_NAME

KEY = b"tracker-test-key"


@pytest.fixture
def tracker_mem(sdk_provider: TracerProvider) -> ConversationTracker:
    return ConversationTracker(
        sdk_provider, agent_name="support-bot", prompt_version="v2", user_id_key=KEY
    )


def _only_event(spans: InMemorySpanExporter) -> tuple[ReadableSpan, dict[str, object]]:
    spans = [span for span in spans.get_finished_spans() if span.events]
    assert len(spans) == 1
    (event,) = spans[0].events
    return spans[0], {"name": event.name, **dict(event.attributes or {})}


class TestSpanEvents:
    def test_event_lands_on_active_span(
        self,
        sdk_provider: TracerProvider,
        tracker_mem: ConversationTracker,
        spans: InMemorySpanExporter,
    ) -> None:
        """An event recorded inside a span becomes an event of that very span."""
        with sdk_provider.get_tracer("agent").start_as_current_span("invoke_agent") as span:
            result = tracker_mem.record("c1", "u1", ConversationEvent.STARTED, channel="web")
        finished, event = _only_event(spans)
        assert finished.context.span_id == span.get_span_context().span_id
        assert finished.name == "invoke_agent"
        assert event["name"] == "conversation.started"
        assert event[semconv.CONVERSATION_ID] == "c1"
        assert event[semconv.CHANNEL] == "web"
        assert event[semconv.AGENT_NAME] == "support-bot"
        assert event[semconv.PROMPT_VERSION] == "v2"
        assert event[semconv.EVENT_ID] == result.event_id
        assert result.recorded and result.event_type is ConversationEvent.STARTED

    @pytest.mark.parametrize(
        ("kind", "keyword", "value", "attribute", "expected"),
        [
            (ConversationEvent.USER_MESSAGE, "turn", 3, semconv.TURN, 3),
            (ConversationEvent.USER_MESSAGE, "message_length", 42, semconv.MESSAGE_LENGTH, 42),
            (ConversationEvent.AGENT_RESPONSE, "response_length", 7, semconv.RESPONSE_LENGTH, 7),
            (ConversationEvent.AGENT_RESPONSE, "model", "gpt-4o", semconv.RESPONSE_MODEL, "gpt-4o"),
            (ConversationEvent.USER_MESSAGE, "model", "gpt-4o", semconv.REQUEST_MODEL, "gpt-4o"),
            (ConversationEvent.TOOL_CALLED, "tool_name", "search", semconv.TOOL_NAME, "search"),
            (ConversationEvent.COMPLETED, "total_turns", "4", semconv.TOTAL_TURNS, 4),
            (ConversationEvent.ABANDONED, "abandoned_at_turn", 2, semconv.ABANDONED_AT_TURN, 2),
            (
                ConversationEvent.FEEDBACK_RECEIVED,
                "rating",
                "positive",
                semconv.FEEDBACK_RATING,
                "positive",
            ),
            (ConversationEvent.STARTED, "channel", "voice", semconv.CHANNEL, "voice"),
            (
                ConversationEvent.HANDOFF_REQUESTED,
                "reason",
                "angry",
                semconv.HANDOFF_REASON,
                "angry",
            ),
            (ConversationEvent.USER_MESSAGE, "similarity", 0.9, semconv.REPHRASE_SIMILARITY, 0.9),
            (ConversationEvent.ABANDONED, "inferred", True, semconv.ABANDON_INFERRED, True),
            (
                ConversationEvent.USER_MESSAGE,
                "locale",
                "de-DE",
                "conversation.metadata.locale",
                "de-DE",
            ),
            (ConversationEvent.USER_MESSAGE, "priority", 5, "conversation.metadata.priority", "5"),
        ],
    )
    def test_article_keywords_map_to_contract_attributes(
        self,
        sdk_provider: TracerProvider,
        tracker_mem: ConversationTracker,
        spans: InMemorySpanExporter,
        kind: ConversationEvent,
        keyword: str,
        value: object,
        attribute: str,
        expected: object,
    ) -> None:
        """Each article keyword travels as its contract attribute with the contract's type."""
        with sdk_provider.get_tracer("agent").start_as_current_span("turn"):
            tracker_mem.record("c1", "u1", kind, **{keyword: value})
        _, event = _only_event(spans)
        assert event[attribute] == expected
        assert type(event[attribute]) is type(expected)

    @pytest.mark.parametrize("event_type", ["completed", "conversation.completed"])
    def test_event_type_accepts_strings(
        self,
        sdk_provider: TracerProvider,
        tracker_mem: ConversationTracker,
        spans: InMemorySpanExporter,
        event_type: str,
    ) -> None:
        """The article's string values and the wire names are accepted as event types."""
        with sdk_provider.get_tracer("agent").start_as_current_span("turn"):
            assert tracker_mem.record("c1", "u1", event_type).recorded
        assert _only_event(spans)[1]["name"] == "conversation.completed"

    def test_no_recording_span_opens_a_short_span(
        self, tracker_mem: ConversationTracker, spans: InMemorySpanExporter
    ) -> None:
        """Without a recording span, the event gets a finished span of its own."""
        tracker_mem.record("c1", "u1", ConversationEvent.FEEDBACK_RECEIVED, rating="negative")
        span, event = _only_event(spans)
        assert span.name == EVENT_SPAN_NAME
        assert span.end_time is not None
        assert event[semconv.FEEDBACK_RATING] == "negative"

    def test_timestamp_backdates_the_event(
        self, tracker_mem: ConversationTracker, spans: InMemorySpanExporter
    ) -> None:
        """``timestamp=`` sets the event time (naive datetimes are UTC)."""
        when = datetime(2025, 3, 1, 12, 0, 0, 250_000)
        tracker_mem.record("c1", "u1", ConversationEvent.STARTED, timestamp=when)
        span, _ = _only_event(spans)
        expected = int(when.replace(tzinfo=timezone.utc).timestamp()) * 10**9 + 250_000_000
        assert span.events[0].timestamp == expected
        assert span.start_time == expected

    def test_event_ids_are_unique(
        self, sdk_provider: TracerProvider, tracker_mem: ConversationTracker
    ) -> None:
        """Every event gets its own id, the key of idempotent writes."""
        ids = {tracker_mem.record("c", "u", "user_message").event_id for _ in range(2000)}
        assert len(ids) == 2000

    def test_full_span_overflows_into_child_spans(
        self,
        sdk_provider: TracerProvider,
        tracker_mem: ConversationTracker,
        spans: InMemorySpanExporter,
    ) -> None:
        """Past the SDK's 128-event limit, events go to child spans instead of evicting others."""
        with sdk_provider.get_tracer("agent").start_as_current_span("voice-call") as call:
            for turn in range(300):
                tracker_mem.record("c1", "u1", ConversationEvent.USER_MESSAGE, turn=turn)
        spans = spans.get_finished_spans()
        turns = sorted(
            event.attributes[semconv.TURN]  # type: ignore[index]
            for span in spans
            for event in span.events
        )
        assert turns == list(range(300))
        assert all(span.dropped_events == 0 for span in spans)
        children = [span for span in spans if span.name == EVENT_SPAN_NAME]
        assert children and all(
            child.parent is not None and child.parent.span_id == call.get_span_context().span_id
            for child in children
        )

    def test_hundreds_of_events_in_one_span_reach_the_store(
        self, provider: TracerProvider, tracker: ConversationTracker, store: ConversationStore
    ) -> None:
        """A long conversation inside one span loses no event on the way to the store."""
        with provider.get_tracer("agent").start_as_current_span("voice-call"):
            tracker.record("long", "u1", ConversationEvent.STARTED)
            for turn in range(1, 400):
                tracker.record("long", "u1", ConversationEvent.USER_MESSAGE, turn=turn)
            tracker.record("long", "u1", ConversationEvent.COMPLETED, total_turns=399)
        detail = StoreReader(store).conversation("long")
        assert len(detail.events) == 401
        assert StoreReader(store).report(7).avg_turns == 399.0


class TestContent:
    def test_message_text_never_leaves_by_default(
        self, tracker_mem: ConversationTracker, spans: InMemorySpanExporter
    ) -> None:
        """Text is dropped; only its length travels."""
        tracker_mem.record("c1", "u1", "user_message", message="my card number is 1234")
        _, event = _only_event(spans)
        assert event[semconv.MESSAGE_LENGTH] == len("my card number is 1234")
        assert not any("1234" in str(value) for value in event.values())

    def test_content_capture_is_opt_in(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """With capture on, the text travels in the content attribute."""
        tracker = ConversationTracker(sdk_provider, user_id_key=KEY, capture_content=True)
        tracker.record("c1", "u1", "agent_response", response="hello there")
        _, event = _only_event(spans)
        assert event[semconv.MESSAGE_CONTENT] == "hello there"
        assert event[semconv.RESPONSE_LENGTH] == len("hello there")


class TestUserIds:
    def test_user_id_is_pseudonymised_by_default(
        self, tracker_mem: ConversationTracker, spans: InMemorySpanExporter
    ) -> None:
        """The raw user id never appears; the keyed hash does."""
        tracker_mem.record("c1", "alice@example.com", "started")
        _, event = _only_event(spans)
        assert event[semconv.USER_ID] == UserIdPseudonymizer(KEY)("alice@example.com")
        assert "alice" not in str(event[semconv.USER_ID])

    def test_hash_depends_on_the_key(self) -> None:
        """Different operator keys give unlinkable pseudonyms; the same key is stable."""
        assert UserIdPseudonymizer(b"a")("bob") == UserIdPseudonymizer(b"a")("bob")
        assert UserIdPseudonymizer(b"a")("bob") != UserIdPseudonymizer(b"b")("bob")

    def test_opt_out_keeps_raw_ids(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """An explicit opt-out keeps raw ids."""
        ConversationTracker(sdk_provider, pseudonymize_user_ids=False).record(
            "c1", "bob", "started"
        )
        assert _only_event(spans)[1][semconv.USER_ID] == "bob"

    @pytest.mark.parametrize(("value", "hashed"), [("false", False), ("true", True), ("", True)])
    def test_env_opt_out(self, monkeypatch: pytest.MonkeyPatch, value: str, hashed: bool) -> None:
        """``CONVERSATION_ANALYTICS_PSEUDONYMIZE_USER_ID=false`` opts out; anything else hashes."""
        monkeypatch.setenv(env.CONVERSATION_ANALYTICS_PSEUDONYMIZE_USER_ID, value)
        monkeypatch.setenv(env.CONVERSATION_ANALYTICS_USER_ID_KEY, "env-key")
        result = UserIdPseudonymizer()("bob")
        assert (result != "bob") is hashed
        if hashed:
            assert result == UserIdPseudonymizer(b"env-key")("bob")


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")


class TestNeverRaises:
    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            ((None, "u", "started"), {}),
            (("", "u", "started"), {}),
            ((object(), "u", "started"), {}),
            (("c", "u", "not-an-event"), {}),
            (("c", "u", 42), {}),
            (("c", "u", "started"), {"timestamp": "yesterday"}),
            (("c", _Unprintable(), "started"), {}),
            (("c", "u", "started"), {"odd": _Unprintable()}),
        ],
    )
    def test_bad_calls_are_counted_not_raised(
        self,
        tracker_mem: ConversationTracker,
        spans: InMemorySpanExporter,
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> None:
        """A bad call returns an unrecorded result, is counted, and raises nothing."""
        result = tracker_mem.record(*args, **kwargs)  # type: ignore[arg-type]
        assert not result.recorded
        assert tracker_mem.errors == 1
        assert not any(span.events for span in spans.get_finished_spans())

    @pytest.mark.parametrize("turn", ["three", [1], 2**40 * 1.5, True])
    def test_bad_attribute_value_keeps_the_event(
        self, tracker_mem: ConversationTracker, spans: InMemorySpanExporter, turn: object
    ) -> None:
        """A value of the wrong type is dropped and counted; the event still records."""
        assert tracker_mem.record("c1", "u1", "user_message", turn=turn, message_length=3).recorded
        _, event = _only_event(spans)
        assert semconv.TURN not in event or isinstance(event[semconv.TURN], int)
        assert event[semconv.MESSAGE_LENGTH] == 3

    def test_hostile_strings_are_truncated(
        self, tracker_mem: ConversationTracker, spans: InMemorySpanExporter
    ) -> None:
        """Huge metadata values are capped, not passed through whole."""
        tracker_mem.record("c1", "u1", "user_message", note="x" * 1_000_000)
        _, event = _only_event(spans)
        assert len(str(event["conversation.metadata.note"])) <= 1024


class TestAsync:
    def test_await_record_works(
        self, tracker_mem: ConversationTracker, spans: InMemorySpanExporter
    ) -> None:
        """``await tracker.record(...)`` works as in the article, and so does ``arecord``."""

        async def agent() -> tuple[str | None, str | None]:
            first = await tracker_mem.record("c1", "u1", ConversationEvent.STARTED)
            second = await tracker_mem.arecord("c1", "u1", ConversationEvent.COMPLETED)
            return first.event_id, second.event_id

        first, second = asyncio.run(agent())
        assert first and second and first != second
        names = sorted(e.name for s in spans.get_finished_spans() for e in s.events)
        assert names == ["conversation.completed", "conversation.started"]


class TestWithoutSdk:
    def test_api_only_is_a_noop(self) -> None:
        """With the SDK absent, record() does nothing, raises nothing, and imports no SDK."""
        script = textwrap.dedent(
            """
            import sys
            sys.modules["opentelemetry.sdk"] = None  # the SDK is not installed
            from opentelemetry.instrumentation.conversation import ConversationTracker
            tracker = ConversationTracker()
            result = tracker.record("c1", "u1", "started", channel="web")
            assert not result.recorded, result
            assert tracker.errors == 0
            assert sys.modules["opentelemetry.sdk"] is None  # nothing replaced the stand-in
            loaded = [n for n in sys.modules if n.startswith("opentelemetry.sdk.")]
            assert not loaded, loaded
            print("ok")
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"

    def test_noop_provider_records_nothing(self) -> None:
        """An explicit no-op provider yields unrecorded results."""
        tracker = ConversationTracker(trace.NoOpTracerProvider())
        assert not tracker.record("c1", "u1", "started").recorded
