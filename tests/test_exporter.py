"""ConversationAnalyticsExporter into the real embedded engine, and its Prometheus series."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from faults import FlakyStore
from opentelemetry.exporter.conversation_analytics import metrics as m
from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline, Outcome
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    semconv,
)
from samples import metric_value

E = ConversationEvent


_value = metric_value


def _conversation(tracker: ConversationTracker, cid: str, *, abandon: bool = False) -> None:
    tracker.record(cid, "user-1", E.STARTED, channel="web")
    for turn in (1, 2):
        tracker.record(cid, "user-1", E.USER_MESSAGE, turn=turn, message_length=10)
        tracker.record(cid, "user-1", E.TOOL_CALLED, turn=turn, tool_name="search")
        tracker.record(cid, "user-1", E.AGENT_RESPONSE, turn=turn, model="m1")
    if abandon:
        tracker.record(cid, "user-1", E.ABANDONED, abandoned_at_turn=2, inferred=True)
    else:
        tracker.record(cid, "user-1", E.FEEDBACK_RECEIVED, rating="positive")
        tracker.record(cid, "user-1", E.COMPLETED, total_turns=2)


@pytest.fixture
def recorded_spans() -> Iterator[Sequence[ReadableSpan]]:
    """Finished spans of two conversations, recorded once, for exporting (and re-exporting)."""
    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    tracker = ConversationTracker(tp, agent_name="bot", user_id_key=b"k")
    with tp.get_tracer("t").start_as_current_span("conversation-a"):
        _conversation(tracker, "a")
    with tp.get_tracer("t").start_as_current_span("conversation-b"):
        _conversation(tracker, "b", abandon=True)
    yield memory.get_finished_spans()
    tp.shutdown()


class TestRows:
    def test_rows_match_what_was_recorded(
        self,
        exporter: ConversationAnalyticsExporter,
        store: ConversationStore,
        recorded_spans: Sequence[ReadableSpan],
    ) -> None:
        """Every recorded event is stored with its attributes, trace and span ids, and service."""
        assert exporter.export(recorded_spans) is SpanExportResult.SUCCESS
        events = StoreReader(store).conversation("a").events
        span = next(s for s in recorded_spans if s.name == "conversation-a")
        assert [e["event_type"] for e in events] == [
            "started",
            "user_message",
            "tool_called",
            "agent_response",
            "user_message",
            "tool_called",
            "agent_response",
            "feedback_received",
            "completed",
        ]
        assert {e["trace_id"] for e in events} == {format(span.context.trace_id, "032x")}
        assert {e["span_id"] for e in events} == {format(span.context.span_id, "016x")}
        assert {e["service_name"] for e in events} == {"svc"}
        assert {e["agent_name"] for e in events} == {"bot"}
        assert events[0]["channel"] == "web"
        assert [e["turn"] for e in events if e["event_type"] == "user_message"] == [1, 2]
        assert events[3]["response_model"] == "m1"
        assert events[-1]["total_turns"] == 2
        assert events[-2]["feedback_rating"] == "positive"
        assert "user-1" not in {e["user_id"] for e in events}
        expected_ids = [e.attributes[semconv.EVENT_ID] for e in span.events]  # type: ignore[index]
        assert [e["event_id"] for e in events] == expected_ids

    def test_reexport_changes_nothing(
        self,
        exporter: ConversationAnalyticsExporter,
        store: ConversationStore,
        registry: CollectorRegistry,
        recorded_spans: Sequence[ReadableSpan],
    ) -> None:
        """Exporting the same spans twice leaves every stored number and counter as it was."""
        exporter.export(recorded_spans)
        first = (
            StoreReader(store).report(7),
            StoreReader(store).conversation("a"),
            store.count_events(),
        )
        started = _value(registry, m.STARTED + "_total")
        exporter.export(recorded_spans)
        assert (
            StoreReader(store).report(7),
            StoreReader(store).conversation("a"),
            store.count_events(),
        ) == first
        assert _value(registry, m.STARTED + "_total") == started == 2
        assert _value(registry, m.EVENTS_DUPLICATE + "_total") == 17

    def test_reexport_through_a_new_exporter_changes_no_number(
        self,
        store: ConversationStore,
        recorded_spans: Sequence[ReadableSpan],
    ) -> None:
        """A second process (no shared memory) re-sending the same spans changes no number."""
        ConversationAnalyticsExporter(store).export(recorded_spans)
        first = (
            StoreReader(store).report(7),
            StoreReader(store).conversation("b"),
            store.count_events(),
        )
        ConversationAnalyticsExporter(store).export(recorded_spans)
        assert (
            StoreReader(store).report(7),
            StoreReader(store).conversation("b"),
            store.count_events(),
        ) == first

    def test_event_without_conversation_id_is_counted(
        self, exporter: ConversationAnalyticsExporter, registry: CollectorRegistry
    ) -> None:
        """A conversation event lacking its id is rejected with a reason, the rest stored."""
        memory = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(memory))
        with tp.get_tracer("t").start_as_current_span("s") as span:
            span.add_event("conversation.started", {semconv.CHANNEL: "web"})
            span.add_event("conversation.started", {semconv.CONVERSATION_ID: "ok"})
            span.add_event("unrelated.event", {"x": 1})
        exporter.export(memory.get_finished_spans())
        assert _value(registry, m.EVENTS_DROPPED + "_total", reason="missing_conversation_id") == 1
        assert exporter.store.count_events() == 1

    def test_foreign_events_get_deterministic_ids(
        self, exporter: ConversationAnalyticsExporter, store: ConversationStore
    ) -> None:
        """Events emitted without an event id still deduplicate on re-export."""
        memory = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(memory))
        with tp.get_tracer("t").start_as_current_span("s") as span:
            span.add_event("conversation.user_message", {semconv.CONVERSATION_ID: "x"})
        spans = memory.get_finished_spans()
        exporter.export(spans)
        ConversationAnalyticsExporter(store).export(spans)
        assert store.count_events() == 1


class TestPrometheus:
    def test_series_match_the_events(
        self,
        exporter: ConversationAnalyticsExporter,
        registry: CollectorRegistry,
        recorded_spans: Sequence[ReadableSpan],
    ) -> None:
        """Counters and once-per-conversation histograms agree with what was recorded."""
        exporter.export(recorded_spans)
        assert _value(registry, m.STARTED + "_total", agent="bot", channel="web") == 2
        assert _value(registry, m.COMPLETED + "_total", agent="bot") == 1
        assert _value(registry, m.ABANDONED + "_total", inferred="true") == 1
        assert _value(registry, m.USER_MESSAGES + "_total") == 4
        assert _value(registry, m.TOOL_CALLS + "_total", tool="search", outcome="ok") == 4
        assert _value(registry, m.FEEDBACK + "_total", rating="positive") == 1
        assert _value(registry, m.TURNS + "_count") == 2
        assert _value(registry, m.TURNS + "_sum") == 4
        assert _value(registry, m.DURATION + "_count") == 1
        assert _value(registry, m.ABANDONED_AT_TURN + "_sum") == 2
        # a: positive feedback 1.0 and completed within 3 turns 0.9 -> 0.95; b: abandoned 0.1
        assert _value(registry, m.SATISFACTION + "_sum") == pytest.approx(1.05)
        assert _value(registry, m.EVENTS_RECEIVED + "_total", source="exporter") == 17
        assert _value(registry, m.EVENTS_WRITTEN + "_total") == 17

    def test_labels_fold_into_other(self, store: ConversationStore) -> None:
        """Past the label limit, new agents are counted under ``other``; no id becomes a label."""
        registry = CollectorRegistry()
        exporter = ConversationAnalyticsExporter(store, registry=registry, max_label_values=2)
        rows = [
            EventRow(f"e{i}", "started", f"conv-{i}", 10**18 + i, agent_name=f"agent-{i}")
            for i in range(5)
        ]
        exporter.pipeline.submit(rows, "test")
        agents = {
            sample.labels["agent"]
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == m.STARTED + "_total"
        }
        assert agents == {"agent-0", "agent-1", m.OTHER}
        assert _value(registry, m.STARTED + "_total", agent=m.OTHER) == 3
        labels = {k for metric in registry.collect() for s in metric.samples for k in s.labels}
        assert not labels & {"conversation_id", "user_id", "user"}

    def test_metrics_endpoint_serves_on_loopback(self, store: ConversationStore) -> None:
        """``metrics_port=0`` serves /metrics on 127.0.0.1 at a free port."""
        exporter = ConversationAnalyticsExporter(
            store, registry=CollectorRegistry(), metrics_port=0
        )
        try:
            assert exporter.metrics_port
            url = f"http://127.0.0.1:{exporter.metrics_port}/metrics"
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            assert "conversation_analytics_events_written_total" in body
        finally:
            exporter.shutdown()

    def test_entry_point_is_registered(self) -> None:
        """``OTEL_TRACES_EXPORTER=conversation_analytics`` finds the exporter class."""
        (found,) = entry_points(
            group="opentelemetry_traces_exporter", name="conversation_analytics"
        )
        assert found.load() is ConversationAnalyticsExporter


def _rows(count: int, prefix: str = "e") -> list[EventRow]:
    return [
        EventRow(f"{prefix}{i}", "user_message", f"c{i % 7}", 1_790_000_000 * 10**9 + i)
        for i in range(count)
    ]


class TestFaults:
    def test_store_outage_loses_nothing(
        self, store: ConversationStore, registry: CollectorRegistry
    ) -> None:
        """Writes that fail are retried with backoff, buffered, and land when the store returns."""
        flaky = FlakyStore(store)
        sleeps: list[float] = []
        pipeline = ConversationPipeline(flaky, max_attempts=3, sleep=sleeps.append)
        pipeline.writer.jitter = lambda: 1.0
        exporter = ConversationAnalyticsExporter(pipeline=pipeline)
        assert pipeline.submit(_rows(50), "test") is Outcome.BUFFERED
        assert pipeline.submit(_rows(30, "f"), "test") is Outcome.BUFFERED
        assert pipeline.pending == 80
        # Backoff doubles between attempts; then the breaker skips the store (no more sleeps).
        assert sleeps == [pytest.approx(0.05), pytest.approx(0.1)]
        assert pipeline.metrics.queue_depth._value.get() == 80
        flaky.down = False
        assert exporter.force_flush()
        assert store.count_events() == 80
        assert pipeline.pending == 0
        assert _value(pipeline.metrics.registry, m.WRITE_ERRORS + "_total") == flaky.attempts - 1

    def test_shutdown_cuts_a_backoff_short(self, store: ConversationStore) -> None:
        """A writer backing off (here for up to a minute) stops waiting when the pipeline
        closes: a SIGTERM'd exporter does not sit out its retries."""
        flaky = FlakyStore(store)
        pipeline = ConversationPipeline(
            flaky, max_attempts=2, backoff_seconds=60.0, max_backoff_seconds=60.0
        )
        submitter = threading.Thread(target=pipeline.submit, args=(_rows(3), "test"))
        submitter.start()
        deadline = time.monotonic() + 30
        while flaky.attempts < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flaky.attempts == 1  # the first attempt failed; the writer is backing off
        pipeline.writer.interrupt()
        submitter.join(timeout=30)
        assert not submitter.is_alive()
        assert flaky.attempts == 2 and pipeline.pending == 3  # retried once, kept, not lost

    def test_buffer_overflow_is_counted(self, store: ConversationStore) -> None:
        """A full buffer drops the oldest events and says how many, by reason."""
        flaky = FlakyStore(store)
        pipeline = ConversationPipeline(
            flaky, max_buffered_events=100, max_attempts=1, sleep=lambda _: None
        )
        pipeline.submit(_rows(150), "test")
        assert pipeline.pending == 100
        dropped = _value(
            pipeline.metrics.registry, m.EVENTS_DROPPED + "_total", reason="buffer_full"
        )
        assert dropped == 50
        flaky.down = False
        pipeline.flush()
        assert store.count_events() == 100

    def test_shutdown_with_store_down_counts_the_loss(self, store: ConversationStore) -> None:
        """What cannot be written by shutdown is counted as dropped, not silently lost."""
        pipeline = ConversationPipeline(FlakyStore(store), max_attempts=1, sleep=lambda _: None)
        pipeline.submit(_rows(5), "test")
        pipeline.close()
        dropped = _value(pipeline.metrics.registry, m.EVENTS_DROPPED + "_total", reason="shutdown")
        assert dropped == 5

    def test_unreachable_clickhouse_never_raises_into_the_app(self) -> None:
        """A dead ClickHouse URL fails exports (counted), never the app's start or its spans."""
        exporter = ConversationAnalyticsExporter(
            "clickhouse://127.0.0.1:9/db", registry=CollectorRegistry()
        )
        exporter.pipeline.backoff_seconds = 0.001
        assert exporter.export([]) is SpanExportResult.SUCCESS
        memory = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(memory))
        ConversationTracker(tp, user_id_key=b"k").record("c", "u", "started")
        assert exporter.export(memory.get_finished_spans()) is SpanExportResult.FAILURE
        assert exporter.pipeline.pending == 1
        assert _value(exporter.metrics.registry, m.WRITE_ERRORS + "_total") >= 1
        exporter.shutdown()
        dropped = _value(exporter.metrics.registry, m.EVENTS_DROPPED + "_total", reason="shutdown")
        assert dropped == 1


class TestAbandonmentInference:
    """The exporter's optional inference thread: the collector's decisions without a collector."""

    def _await(self, condition: object, deadline_s: float = 60.0) -> bool:
        import time

        give_up = time.monotonic() + deadline_s
        while time.monotonic() < give_up:
            if condition():  # type: ignore[operator]
                return True
            time.sleep(0.05)
        return False

    def test_idle_conversation_is_abandoned_in_the_background(
        self, store: ConversationStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With CONVERSATION_ANALYTICS_INFER_ABANDONMENT=true an idle conversation gets one
        inferred abandonment at its last user turn; a completed one gets none."""
        from datetime import datetime, timedelta, timezone

        from opentelemetry.exporter.conversation_analytics.exporter import (
            ENV_IDLE_TIMEOUT,
            ENV_INFER_ABANDONMENT,
        )

        monkeypatch.setenv(ENV_INFER_ABANDONMENT, "true")
        monkeypatch.setenv(ENV_IDLE_TIMEOUT, "2")
        exporter = ConversationAnalyticsExporter(store, registry=CollectorRegistry())
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        tracker = ConversationTracker(tp, agent_name="bot", user_id_key=b"k")
        past = datetime.now(timezone.utc) - timedelta(minutes=5)
        for cid in ("idle", "finished"):
            tracker.record(cid, "u", ConversationEvent.STARTED, timestamp=past)
            tracker.record(cid, "u", ConversationEvent.USER_MESSAGE, timestamp=past, turn=1)
        tracker.record("finished", "u", ConversationEvent.COMPLETED, timestamp=past)

        def abandoned(cid: str) -> list[dict[str, object]]:
            events = StoreReader(store).conversation(cid).events
            return [e for e in events if e["event_type"] == "abandoned"]

        try:
            assert self._await(lambda: abandoned("idle"))
            [event] = abandoned("idle")
            assert event["abandon_inferred"] is True and event["abandoned_at_turn"] == 1
            assert abandoned("finished") == []
        finally:
            tp.shutdown()
        assert exporter._sweeper is not None and not exporter._sweeper._thread.is_alive()  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("value", "message"), [("soon", "must be a number of seconds"), ("0", "must be positive")]
    )
    def test_bad_idle_timeout_is_a_clear_error(
        self, store: ConversationStore, monkeypatch: pytest.MonkeyPatch, value: str, message: str
    ) -> None:
        """A bad CONVERSATION_ANALYTICS_IDLE_TIMEOUT says which setting is wrong and why."""
        from opentelemetry.exporter.conversation_analytics.exporter import ENV_IDLE_TIMEOUT

        monkeypatch.setenv(ENV_IDLE_TIMEOUT, value)
        with pytest.raises(ValueError, match=message):
            ConversationAnalyticsExporter(
                store, registry=CollectorRegistry(), infer_abandonment=True
            )

    def test_off_by_default(self, store: ConversationStore) -> None:
        """Without the setting no inference thread runs."""
        exporter = ConversationAnalyticsExporter(store, registry=CollectorRegistry())
        try:
            assert exporter._sweeper is None
        finally:
            exporter.shutdown()
