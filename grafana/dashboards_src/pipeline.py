"""Pipeline health: the exporter's and collector's own series, and what reached the store."""

from __future__ import annotations

from typing import Any

from .board import dashboard
from .names import (
    BATCH_WRITE_BUCKET,
    EVENTS,
    EVENTS_DROPPED_TOTAL,
    EVENTS_DUPLICATE_TOTAL,
    EVENTS_RECEIVED_TOTAL,
    EVENTS_REJECTED_TOTAL,
    EVENTS_WRITTEN_TOTAL,
    PIPELINE_UID,
    QUEUE_DEPTH,
    REQUESTS_REJECTED_TOTAL,
    WRITE_ERRORS_TOTAL,
)
from .panels import prom_target, row, sql_target, stat, thresholds, timeseries
from .queries import quantile, series
from .variables import label_variable

#: Every pipeline series carries the process's ``instance`` label; the variable filters on it.
_INSTANCE = ("instance",)


def _rate(metric: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({series(metric, _INSTANCE)}[$__rate_interval]))"


def _total(metric: str) -> str:
    """The increase over the dashboard's whole time range."""
    return f"sum(increase({series(metric, _INSTANCE)}[$__range]))"


def build() -> dict[str, Any]:
    latency = series(BATCH_WRITE_BUCKET, _INSTANCE)
    queue = series(QUEUE_DEPTH, _INSTANCE)
    panels = [
        row("Over the time range (Prometheus)"),
        stat(
            "Events received",
            prom_target(_total(EVENTS_RECEIVED_TOTAL), instant=True),
            description="Conversation events that reached the pipeline.",
            unit="short",
            width=6,
        ),
        stat(
            "Events written",
            prom_target(_total(EVENTS_WRITTEN_TOTAL), instant=True),
            description="Events durably written to the store.",
            unit="short",
            width=6,
        ),
        stat(
            "Events dropped",
            prom_target(_total(EVENTS_DROPPED_TOTAL), instant=True),
            description="Events not stored (invalid, buffer full, shutdown, refused by the "
            "store): should stay 0.",
            unit="short",
            colors=thresholds((None, "green"), (1, "red")),
            width=6,
        ),
        stat(
            "Queue depth now",
            prom_target(f"sum({queue})", instant=True),
            description="Events waiting to be written (retry buffer and spool).",
            unit="short",
            colors=thresholds((None, "green"), (1000, "orange"), (50000, "red")),
            width=6,
        ),
        row("Flow (Prometheus)"),
        timeseries(
            "Events per second",
            [
                prom_target(
                    _rate(EVENTS_RECEIVED_TOTAL, "source"),
                    "received ({{source}})",
                ),
                prom_target(_rate(EVENTS_WRITTEN_TOTAL), "written", ref="B"),
                prom_target(_rate(EVENTS_DUPLICATE_TOTAL), "duplicate", ref="C"),
            ],
            description="Received by source, written to the store, and seen again (re-exports "
            "and retries, counted once).",
            unit="ops",
        ),
        timeseries(
            "Dropped and rejected per second",
            [
                prom_target(
                    _rate(EVENTS_DROPPED_TOTAL, "reason"),
                    "dropped: {{reason}}",
                ),
                prom_target(
                    _rate(EVENTS_REJECTED_TOTAL),
                    "rejected (retryable)",
                    ref="B",
                ),
                prom_target(
                    _rate(REQUESTS_REJECTED_TOTAL, "reason"),
                    "request rejected: {{reason}}",
                    ref="C",
                ),
                prom_target(_rate(WRITE_ERRORS_TOTAL), "write errors", ref="D"),
            ],
            description="Anything not written: dropped events by reason, events refused with a "
            "retryable error, rejected OTLP requests (collector) and failed batch writes.",
            unit="ops",
        ),
        timeseries(
            "Batch write latency",
            [
                prom_target(quantile(0.5, latency, "$__rate_interval"), "p50"),
                prom_target(quantile(0.95, latency, "$__rate_interval"), "p95", ref="B"),
                prom_target(quantile(0.99, latency, "$__rate_interval"), "p99", ref="C"),
            ],
            description="Latency of one batch write to the store.",
            unit="s",
        ),
        timeseries(
            "Queue depth",
            [
                prom_target(
                    f"max by (instance) ({queue})",
                    "{{instance}}",
                )
            ],
            description="Events waiting to be written, per process.",
            unit="short",
        ),
        row("In the store (ClickHouse)"),
        timeseries(
            "Events stored, by type",
            [
                sql_target(
                    f"""SELECT $__timeInterval(inserted_at) AS time, event_type,
    uniqExact(event_id) AS events
FROM {EVENTS}
WHERE $__timeFilter(inserted_at) AND $__timeFilter(timestamp)
GROUP BY time, event_type
ORDER BY time, event_type"""
                )
            ],
            description="Distinct events by the time they were inserted (events timestamped "
            "within the range).",
            unit="short",
            display_name="${__field.labels.event_type}",
            bars=True,
            stack=True,
        ),
        timeseries(
            "Ingest delay (event time to stored)",
            [
                sql_target(
                    f"""SELECT $__timeInterval(inserted_at) AS time,
    quantile(0.5)(dateDiff('millisecond', timestamp, inserted_at) / 1000) AS p50,
    quantile(0.99)(dateDiff('millisecond', timestamp, inserted_at) / 1000) AS p99
FROM {EVENTS}
WHERE $__timeFilter(inserted_at) AND $__timeFilter(timestamp)
GROUP BY time
ORDER BY time"""
                )
            ],
            description="How long events took from being recorded to being stored (imports and "
            "backfills show as large delays).",
            unit="s",
        ),
    ]
    instance = label_variable(
        "instance",
        "Instance",
        f"label_values({EVENTS_RECEIVED_TOTAL}, instance)",
        "Processes exporting the pipeline's series",
    )
    return dashboard(
        PIPELINE_UID,
        "Conversation analytics / Pipeline health",
        "The exporter's and collector's own health: events received, written and dropped, "
        "write latency and queue depth.",
        panels,
        [instance],
        time_from="now-6h",
    )
