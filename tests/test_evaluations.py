"""GenAI evaluation results (``gen_ai.evaluation.result``): stored per name through the exporter
and the collector, and counted as feedback when their name says they are the user's verdict."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Span, set_span_in_context
from prometheus_client import CollectorRegistry

from faults import FlakyStore
from opentelemetry.exporter.conversation_analytics import metrics
from opentelemetry.exporter.conversation_analytics.analytics import satisfaction_score
from opentelemetry.exporter.conversation_analytics.collector.config import CollectorConfig
from opentelemetry.exporter.conversation_analytics.collector.decode_pool import (
    DECODE_FALLBACKS,
    FALLBACK_TRACE_CONTEXT,
)
from opentelemetry.exporter.conversation_analytics.collector.run import (
    RunningCollector,
    start_collector,
)
from opentelemetry.exporter.conversation_analytics.evaluations import (
    feedback_evaluations,
    feedback_rating,
)
from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.log_exporter import (
    ConversationAnalyticsLogExporter,
)
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import ConversationEvent, semconv
from opentelemetry.instrumentation.conversation import environment_variables as env

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=1)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def _evaluation(
    name: str | None, *, score: float | None = None, label: str | None = None, **extra: Any
) -> dict[str, Any]:
    attributes: dict[str, Any] = dict(extra)
    if name is not None:
        attributes[semconv.EVALUATION_NAME] = name
    if score is not None:
        attributes[semconv.EVALUATION_SCORE_VALUE] = score
    if label is not None:
        attributes[semconv.EVALUATION_SCORE_LABEL] = label
    return attributes


def _one_turn(provider: TracerProvider, cid: str, evaluations: list[dict[str, Any]]) -> Span:
    """One completed turn recorded on a span that carries the conversation id (as the
    conversation span processor stamps it), the evaluations as span events on that span."""
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span(
        "chat", attributes={semconv.CONVERSATION_ID: cid, semconv.AGENT_NAME: "support"}
    ) as span:
        common = {semconv.CONVERSATION_ID: cid, semconv.AGENT_NAME: "support"}
        for index, (kind, extra) in enumerate(
            [
                (ConversationEvent.STARTED, {}),
                (ConversationEvent.USER_MESSAGE, {semconv.TURN: 1}),
                (ConversationEvent.COMPLETED, {semconv.TOTAL_TURNS: 1}),
            ]
        ):
            span.add_event(
                kind.event_name,
                {**common, **extra, semconv.EVENT_ID: f"{cid}-{index}"},
                timestamp=_ns(T0) + index,
            )
        for index, attributes in enumerate(evaluations):
            span.add_event(semconv.EVALUATION_EVENT, attributes, timestamp=_ns(T0) + 10 + index)
    return span


@pytest.fixture
def exporting(store: ConversationStore, registry: CollectorRegistry) -> Iterator[TracerProvider]:
    exporter = ConversationAnalyticsExporter(store, registry=registry)
    provider = TracerProvider(resource=Resource.create({semconv.SERVICE_NAME: "support-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


class TestFeedbackNames:
    @pytest.mark.parametrize(
        ("argument", "environ", "expected"),
        [
            (None, None, {"user_feedback"}),
            (None, "thumbs, csat ,", {"thumbs", "csat"}),
            (None, "", set()),
            ("a,b", "ignored", {"a", "b"}),
            (["x"], None, {"x"}),
        ],
    )
    def test_argument_then_env_then_default(
        self,
        monkeypatch: pytest.MonkeyPatch,
        argument: Any,
        environ: str | None,
        expected: set[str],
    ) -> None:
        """An argument wins, then the variable (comma-separated, empty means none)."""
        if environ is None:
            monkeypatch.delenv(env.CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS, raising=False)
        else:
            monkeypatch.setenv(env.CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS, environ)
        assert feedback_evaluations(argument) == expected


class TestFeedbackRating:
    @pytest.mark.parametrize(
        ("label", "score", "rating"),
        [
            ("negative", 0.9, "negative"),  # the label comes first
            (" Positive ", 0.1, "positive"),
            ("", 0.5, "positive"),
            ("pass", 0.49, "negative"),  # a label that is not a rating defers to the score
            ("", None, None),
            ("meh", None, None),
        ],
    )
    def test_label_first_else_score(self, label: str, score: float | None, rating: str) -> None:
        """positive/negative labels decide; else a score of at least 0.5 is positive."""
        assert feedback_rating(label, score) == rating


class TestThroughTheExporter:
    def test_stored_and_reported_per_name(
        self, exporting: TracerProvider, store: ConversationStore
    ) -> None:
        """Each evaluation is one stored row under its span's conversation; the report gives
        count, mean score and label shares per name and per agent; no explanation, no user id."""
        _one_turn(
            exporting,
            "c1",
            [
                _evaluation("relevance", score=0.8, label="relevant"),
                _evaluation("relevance", score=0.3, label="not_relevant"),
                _evaluation(
                    "relevance",
                    score=0.9,
                    label="relevant",
                    **{
                        semconv.EVALUATION_EXPLANATION: "the user asked about SECRET-ORDER-77",
                        semconv.USER_ID: "alice@example.com",
                    },
                ),
                _evaluation("toxicity", label="safe"),
            ],
        )
        events = StoreReader(store).conversation("c1").events
        evaluations = [e for e in events if e["event_type"] == semconv.EVALUATION_EVENT_TYPE]
        assert sorted((e["evaluation_name"], e["evaluation_score"]) for e in evaluations) == [
            ("relevance", 0.3),
            ("relevance", 0.8),
            ("relevance", 0.9),
            ("toxicity", None),
        ]
        assert all(e["agent_name"] == "support" and e["user_id"] == "" for e in evaluations)
        assert "SECRET-ORDER-77" not in repr(events) and "alice" not in repr(events)

        report = StoreReader(store).report(7, now=NOW)
        by_name = {entry.name: entry for entry in report.evaluations}
        relevance = by_name["relevance"]
        assert relevance.evaluations == 3
        assert relevance.mean_score == pytest.approx(round((0.8 + 0.3 + 0.9) / 3, 3))
        assert [(s.label, s.count, s.share) for s in relevance.labels] == [
            ("relevant", 2, 66.7),
            ("not_relevant", 1, 33.3),
        ]
        assert [(g.agent, g.evaluations) for g in relevance.by_agent] == [("support", 3)]
        assert by_name["toxicity"].mean_score is None
        # Not feedback: satisfaction is the article's for a one-turn completed conversation.
        assert StoreReader(store).conversation("c1").satisfaction == pytest.approx(0.9)
        assert report.total_conversations == 1

    @pytest.mark.parametrize(
        ("evaluation", "positive", "negative"),
        [
            (_evaluation("user_feedback", label="negative"), 0, 1),
            (_evaluation("user_feedback", score=0.75), 1, 0),
            (_evaluation("user_feedback", score=0.2, label="positive"), 1, 0),
            (_evaluation("user_feedback"), 0, 0),  # neither label nor score: no rating
            (_evaluation("relevance", label="negative"), 0, 0),  # not a feedback name
        ],
    )
    def test_user_feedback_counts_in_satisfaction(
        self,
        exporting: TracerProvider,
        store: ConversationStore,
        registry: CollectorRegistry,
        evaluation: dict[str, Any],
        positive: int,
        negative: int,
    ) -> None:
        """A ``user_feedback`` evaluation is explicit feedback: the conversation's satisfaction,
        the report and the feedback series equal the article's with that rating."""
        _one_turn(exporting, "rated", [evaluation])
        expected = satisfaction_score(
            positive=positive, negative=negative, user_messages=1, completed=True, handoff=False
        )
        assert StoreReader(store).conversation("rated").satisfaction == pytest.approx(expected)
        assert StoreReader(store).report(7, now=NOW).avg_satisfaction == pytest.approx(
            round(expected, 3)
        )
        for rating, count in (("positive", positive), ("negative", negative)):
            value = registry.get_sample_value(
                "agent_conversation_feedback_total", {"agent": "support", "rating": rating}
            )
            assert (value or 0) == count
        name = evaluation[semconv.EVALUATION_NAME]
        label = evaluation.get(semconv.EVALUATION_SCORE_LABEL, "unknown")
        assert (
            registry.get_sample_value(
                "agent_conversation_evaluations_total",
                {"agent": "support", "evaluation": name, "label": label},
            )
            == 1
        )

    def test_reexport_is_stored_once_and_nameless_is_rejected(
        self,
        exporting: TracerProvider,
        store: ConversationStore,
        registry: CollectorRegistry,
    ) -> None:
        """The same span exported twice gives one evaluation row; one without a name is a
        counted rejection, not a crash and not a row."""
        tracer = exporting.get_tracer("agent")
        span = tracer.start_span("judge", attributes={semconv.CONVERSATION_ID: "again"})
        span.add_event(semconv.EVALUATION_EVENT, _evaluation("groundedness", score=1.0))
        span.add_event(semconv.EVALUATION_EVENT, _evaluation(None, score=1.0))
        span.end()
        exporter = ConversationAnalyticsExporter(store, registry=CollectorRegistry())
        exporter.export([span])  # type: ignore[list-item]
        exporter.shutdown()
        rows = StoreReader(store).conversation("again").events
        assert [e["evaluation_name"] for e in rows] == ["groundedness"]
        assert (
            registry.get_sample_value(
                "conversation_analytics_events_dropped_total", {"reason": "missing_evaluation_name"}
            )
            == 1
        )

    def test_an_evaluation_does_not_revoke_an_inferred_abandonment(
        self, store: ConversationStore
    ) -> None:
        """An evaluator's verdict after the user left is not the user coming back."""

        def row(kind: str, at: datetime, **fields: Any) -> EventRow:
            return EventRow(f"q-{kind}", kind, "q", _ns(at), agent_name="bot", **fields)

        store.insert(
            [
                row("user_message", T0, turn=1),
                row("abandoned", T0 + timedelta(minutes=31), abandon_inferred=True),
                row(
                    semconv.EVALUATION_EVENT_TYPE,
                    T0 + timedelta(minutes=40),
                    evaluation_name="relevance",
                ),
            ]
        )
        assert StoreReader(store).report(7, now=NOW).abandonment_rate == 100.0


@pytest.fixture(params=[0, 2], ids=["in-process", "decode-pool"])
def collector(
    store: ConversationStore, store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[RunningCollector]:
    """Decoding in-process, and in a decode pool (the trace map stays in the service)."""
    config = CollectorConfig(
        store=store_url,
        grpc_endpoint="",
        http_endpoint="127.0.0.1:0",
        metrics_endpoint="",
        spool_dir=str(tmp_path / "spool"),
        decode_workers=request.param,
    )
    running = start_collector(config, store=store)
    yield running
    running.stop()


class TestThroughTheLogExporter:
    """In-process, without a collector: log records into the span exporter's pipeline."""

    def test_log_records_land_under_their_conversation(
        self, store: ConversationStore, registry: CollectorRegistry
    ) -> None:
        """A log record naming its conversation, one naming only its trace (resolved from the
        spans this exporter saw), and one for an unseen trace (a counted rejection)."""
        spans = ConversationAnalyticsExporter(store, registry=registry)
        resource = Resource.create({semconv.SERVICE_NAME: "support-svc"})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        span = _one_turn(tracer_provider, "inproc", [])
        unseen = TracerProvider().get_tracer("other").start_span("elsewhere")  # never exported
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(ConversationAnalyticsLogExporter(spans))
        )
        logger = logger_provider.get_logger("evaluator")
        logger.emit(
            event_name=semconv.EVALUATION_EVENT,
            timestamp=_ns(T0) + 20,
            attributes=_evaluation("relevance", score=0.4, **{semconv.CONVERSATION_ID: "inproc"}),
        )
        logger.emit(
            event_name=semconv.EVALUATION_EVENT,
            timestamp=_ns(T0) + 21,
            context=set_span_in_context(span),
            attributes=_evaluation("user_feedback", label="positive"),
        )
        logger.emit(
            event_name=semconv.EVALUATION_EVENT,
            timestamp=_ns(T0) + 22,
            context=set_span_in_context(unseen),
            attributes=_evaluation("relevance", score=1.0),
        )
        logger_provider.shutdown()
        tracer_provider.shutdown()
        events = StoreReader(store).conversation("inproc").events
        evaluations = [e for e in events if e["event_type"] == semconv.EVALUATION_EVENT_TYPE]
        assert sorted(e["evaluation_name"] for e in evaluations) == ["relevance", "user_feedback"]
        assert all(e["service_name"] == "support-svc" for e in evaluations)
        ratings = [e["feedback_rating"] for e in events if e["event_type"] == "feedback_received"]
        assert ratings == ["positive"]
        dropped = registry.get_sample_value(
            metrics.EVENTS_DROPPED + "_total", {"reason": "missing_conversation_id"}
        )
        assert dropped == 1

    def test_a_failing_store_is_a_failure_not_an_exception(
        self, store: ConversationStore, registry: CollectorRegistry
    ) -> None:
        """While the store refuses writes the SDK hears FAILURE; once it is back, the record
        kept in memory is written."""
        flaky = FlakyStore(store)
        exporter = ConversationAnalyticsLogExporter(
            ConversationAnalyticsExporter(flaky, registry=registry)
        )
        record = ReadableLogRecord(
            LogRecord(
                event_name=semconv.EVALUATION_EVENT,
                timestamp=_ns(T0),
                attributes=_evaluation("relevance", score=0.5, **{semconv.CONVERSATION_ID: "c"}),
            ),
            resource=Resource.create({}),
        )
        assert exporter.export([record]) is LogRecordExportResult.FAILURE
        flaky.down = False
        assert exporter.force_flush()
        exporter.shutdown()
        assert [e["evaluation_name"] for e in StoreReader(store).conversation("c").events] == [
            "relevance"
        ]


class TestThroughTheCollector:
    def test_span_events_and_log_records(
        self, collector: RunningCollector, store: ConversationStore
    ) -> None:
        """Over OTLP/HTTP with the official exporters: a span event, a log record naming its
        conversation, and a log record naming only its trace all land under the conversation;
        the user_feedback one counts as a negative rating."""
        endpoint = f"http://127.0.0.1:{collector.ports['http']}"
        resource = Resource.create({semconv.SERVICE_NAME: "support-svc"})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
        )
        span = _one_turn(tracer_provider, "otlp", [_evaluation("relevance", score=0.6)])
        tracer_provider.force_flush()

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"))
        )
        logger = logger_provider.get_logger("evaluator")
        logger.emit(
            event_name=semconv.EVALUATION_EVENT,
            timestamp=_ns(T0) + 20,
            severity_number=SeverityNumber.INFO,
            attributes=_evaluation("relevance", score=0.9, **{semconv.CONVERSATION_ID: "otlp"}),
        )
        # Only the trace: the collector has seen it (the span above) and knows its conversation.
        logger.emit(
            event_name=semconv.EVALUATION_EVENT,
            timestamp=_ns(T0) + 21,
            context=set_span_in_context(span),
            attributes=_evaluation("user_feedback", label="negative"),
        )
        logger_provider.force_flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = StoreReader(store).conversation("otlp").events
            if sum(e["event_type"] == semconv.EVALUATION_EVENT_TYPE for e in events) == 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"evaluations did not arrive: {events}")
        tracer_provider.shutdown()
        logger_provider.shutdown()
        names = sorted(
            e["evaluation_name"] for e in events if e["event_type"] == semconv.EVALUATION_EVENT_TYPE
        )
        assert names == ["relevance", "relevance", "user_feedback"]
        ratings = [e["feedback_rating"] for e in events if e["event_type"] == "feedback_received"]
        assert ratings == ["negative"]
        detail = StoreReader(store).conversation("otlp")
        assert detail.satisfaction == pytest.approx(
            satisfaction_score(
                positive=0, negative=1, user_messages=1, completed=True, handoff=False
            )
        )
        relevance = next(
            e for e in StoreReader(store).report(7, now=NOW).evaluations if e.name == "relevance"
        )
        assert (relevance.evaluations, relevance.mean_score) == (2, 0.75)
        if collector.service.decode_pool is not None:  # the trace-only record came back home
            fallbacks = collector.service.metrics.registry.get_sample_value(
                f"{DECODE_FALLBACKS}_total", {"reason": FALLBACK_TRACE_CONTEXT}
            )
            assert fallbacks == 1

    def test_log_record_for_an_unknown_trace_is_a_counted_rejection(
        self, collector: RunningCollector
    ) -> None:
        """No conversation on the record and a trace never seen: rejected and counted."""
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )
        from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
        from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

        from opentelemetry.exporter.conversation_analytics.collector.otlp import Signal
        from opentelemetry.exporter.conversation_analytics.collector.service import Status

        record = LogRecord(
            event_name=semconv.EVALUATION_EVENT, trace_id=b"\x07" * 16, time_unix_nano=_ns(T0)
        )
        record.attributes.append(
            KeyValue(key=semconv.EVALUATION_NAME, value=AnyValue(string_value="relevance"))
        )
        request = ExportLogsServiceRequest(
            resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
        )
        result = collector.service.export(
            Signal.LOGS, request.SerializeToString(), is_json=False, source="test"
        )
        assert (result.status, result.rejected_items) == (Status.OK, 1)
        assert "missing_conversation_id" in result.message
