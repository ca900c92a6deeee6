"""Deployment samples: what can be checked without running them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from opentelemetry.exporter.conversation_analytics.collector.config import (
    CollectorConfig,
    split_endpoint,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def otelcol() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "otelcol" / "config.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


class TestOpenTelemetryCollectorSample:
    def test_forwards_traces_and_logs_to_the_service(self, otelcol: dict[str, Any]) -> None:
        """Both pipelines end in the exporter pointed at the service's gRPC port."""
        exporter = otelcol["exporters"]["otlp/conversation-analytics"]
        _, port = split_endpoint(exporter["endpoint"])
        assert port == split_endpoint(CollectorConfig().grpc_endpoint)[1]
        pipelines = otelcol["service"]["pipelines"]
        for signal in ("traces", "logs"):
            assert "otlp/conversation-analytics" in pipelines[signal]["exporters"]
            assert set(pipelines[signal]["receivers"]) <= set(otelcol["receivers"])
            assert set(pipelines[signal]["processors"]) <= set(otelcol["processors"])

    def test_retries_and_persists_its_queue(self, otelcol: dict[str, Any]) -> None:
        """The service's retryable errors are retried, from a queue that survives restarts."""
        exporter = otelcol["exporters"]["otlp/conversation-analytics"]
        assert exporter["retry_on_failure"]["enabled"] is True
        assert exporter["sending_queue"]["storage"] in otelcol["extensions"]
        assert set(otelcol["service"]["extensions"]) <= set(otelcol["extensions"])
        assert exporter["headers"]["authorization"].startswith("Bearer ")
