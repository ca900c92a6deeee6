"""gunicorn settings for an agent that runs conversation analytics in several workers.

    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) CONVERSATION_ANALYTICS_METRICS_PORT=9464 \
        gunicorn --config examples/gunicorn.conf.py --workers 4 my_agent:app

Each worker exports its own spans (set the tracer provider up in the app module, which gunicorn
imports in every worker, or in ``post_fork``; not before the fork). With
``PROMETHEUS_MULTIPROC_DIR`` set to an empty directory, workers write their series there and the
master serves them, summed, on ``CONVERSATION_ANALYTICS_METRICS_PORT``. The embedded store takes
one process: with several workers send OTLP to the collector service or use a ClickHouse server.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.conversation_analytics import multiprocess
from opentelemetry.instrumentation.conversation import environment_variables as env


def when_ready(server: Any) -> None:
    """In the master: one /metrics for every worker, when multiprocess mode is on."""
    port = env.env_str(env.CONVERSATION_ANALYTICS_METRICS_PORT)
    if multiprocess.enabled() and port:
        host = env.env_str(env.CONVERSATION_ANALYTICS_METRICS_HOST, env.DEFAULT_METRICS_HOST)
        served = multiprocess.start_metrics_server(int(port), host)
        server.log.info("conversation analytics metrics on %s:%d", host, served)


def child_exit(server: Any, worker: Any) -> None:
    """A worker that exits takes its live gauges with it."""
    multiprocess.mark_worker_dead(worker.pid)
