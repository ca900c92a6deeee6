"""The live demo (what docker-compose's demo agent runs): a fleet speaking OTLP to a collector."""

from __future__ import annotations

import threading
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from opentelemetry.exporter.conversation_analytics.collector.config import CollectorConfig
from opentelemetry.exporter.conversation_analytics.collector.run import start_collector
from opentelemetry.exporter.conversation_analytics.demo import run_live
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore


def test_live_fleet_reaches_the_collector(
    store: ConversationStore, store_url: str, tmp_path: Path
) -> None:
    """Conversations simulated in real time arrive over OTLP/gRPC and are reported."""
    config = CollectorConfig(
        store=store_url,
        grpc_endpoint="127.0.0.1:0",
        http_endpoint="",
        metrics_endpoint="",
        spool_dir=str(tmp_path / "spool"),
    )
    running = start_collector(config, store=store)
    try:
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{running.ports['grpc']}", insecure=True)
        stop = threading.Event()
        timer = threading.Timer(1.5, stop.set)
        timer.start()
        simulated = run_live(exporter, rate=20.0, stop=stop, seed=7)
        exporter.shutdown()
    finally:
        running.stop()
    assert simulated > 5
    report = StoreReader(store).report(1)
    assert report.total_conversations == simulated
    assert {agent.agent for agent in report.agents} <= {"support-bot", "research-assistant"}
