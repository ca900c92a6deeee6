"""Every name the dashboards refer to, in one place.

Data source uids and types, the ClickHouse database and tables, the dashboards' own uids, and the
Prometheus series. The metric names come from the exporter's ``metrics`` module (the one module
that spells them) and the collector's; only the exposition suffixes (``_total``, ``_bucket``,
``_sum``, ``_count``) are added here, as ``prometheus_client`` adds them.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.exporter.conversation_analytics import metrics
from opentelemetry.exporter.conversation_analytics.collector.service import REQUESTS_REJECTED
from opentelemetry.exporter.conversation_analytics.store.sql import Schema

# ---- data sources -------------------------------------------------------------------------------

PLUGIN_ID: Final = "grafana-clickhouse-datasource"
#: The plugin version docker-compose installs; the macros used behave the same from 4.5 to 4.20.
PLUGIN_VERSION: Final = "4.5.1"
#: Fixed data source uids of ``provisioning/datasources/datasources.yml``.
CLICKHOUSE: Final[dict[str, str]] = {"type": PLUGIN_ID, "uid": "clickhouse"}
PROMETHEUS: Final[dict[str, str]] = {"type": "prometheus", "uid": "prometheus"}

# ---- ClickHouse ---------------------------------------------------------------------------------

DATABASE: Final = Schema().database
ROLLUP: Final = f"{DATABASE}.conversation_rollup"
EVENTS: Final = f"{DATABASE}.conversation_events"

# ---- dashboards ---------------------------------------------------------------------------------

#: The tag every dashboard carries; the dashboards' link menu lists the dashboards with it.
TAG: Final = "conversation-analytics"
SCHEMA_VERSION: Final = 39
OVERVIEW_UID: Final = "ca-overview"
DROPOFF_UID: Final = "ca-dropoff"
COMPARE_UID: Final = "ca-compare"
CONVERSATIONS_UID: Final = "ca-conversations"
PIPELINE_UID: Final = "ca-pipeline"

# ---- Prometheus series --------------------------------------------------------------------------

#: Labels of the series known from a conversation's start, and of the outcome series (+ model).
START_LABELS: Final = metrics.CONVERSATION_LABELS
OUTCOME_LABELS: Final = metrics.OUTCOME_LABELS


def _total(counter: str) -> str:
    return f"{counter}_total"


STARTED_TOTAL: Final = _total(metrics.STARTED)
COMPLETED_TOTAL: Final = _total(metrics.COMPLETED)
ABANDONED_TOTAL: Final = _total(metrics.ABANDONED)
HANDOFFS_TOTAL: Final = _total(metrics.HANDOFFS)
TOOL_CALLS_TOTAL: Final = _total(metrics.TOOL_CALLS)
TURNS_BUCKET: Final = f"{metrics.TURNS}_bucket"
TURNS_COUNT: Final = f"{metrics.TURNS}_count"
ABANDONED_AT_TURN_BUCKET: Final = f"{metrics.ABANDONED_AT_TURN}_bucket"
SATISFACTION_SUM: Final = f"{metrics.SATISFACTION}_sum"
SATISFACTION_COUNT: Final = f"{metrics.SATISFACTION}_count"

EVENTS_RECEIVED_TOTAL: Final = _total(metrics.EVENTS_RECEIVED)
EVENTS_WRITTEN_TOTAL: Final = _total(metrics.EVENTS_WRITTEN)
EVENTS_DROPPED_TOTAL: Final = _total(metrics.EVENTS_DROPPED)
EVENTS_DUPLICATE_TOTAL: Final = _total(metrics.EVENTS_DUPLICATE)
EVENTS_REJECTED_TOTAL: Final = _total(metrics.EVENTS_REJECTED)
REQUESTS_REJECTED_TOTAL: Final = _total(REQUESTS_REJECTED)
WRITE_ERRORS_TOTAL: Final = _total(metrics.WRITE_ERRORS)
QUEUE_DEPTH: Final = metrics.QUEUE_DEPTH
BATCH_WRITE_BUCKET: Final = f"{metrics.BATCH_WRITE_SECONDS}_bucket"
