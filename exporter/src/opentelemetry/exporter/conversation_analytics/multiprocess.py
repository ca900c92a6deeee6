"""Metrics from pre-fork servers (gunicorn, ``uvicorn --workers``) in client_python's way.

Each worker runs its own exporter, so each would serve ``/metrics`` on the same port (they clash)
and show only its own share. With ``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory, before
the server starts), every worker writes its series to files there and never serves; one server
in the master process sums them, and a worker that exits is marked dead so its gauges go. In a
gunicorn config file::

    from opentelemetry.exporter.conversation_analytics import multiprocess

    def when_ready(server):
        multiprocess.start_metrics_server(9464)

    def child_exit(server, worker):
        multiprocess.mark_worker_dead(worker.pid)
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import multiprocess as _client_multiprocess

from opentelemetry.instrumentation.conversation import environment_variables as env

__all__ = ["enabled", "mark_worker_dead", "start_metrics_server"]


def enabled() -> bool:
    """Whether this process writes its series for a multiprocess collector to sum."""
    return bool(os.environ.get(env.PROMETHEUS_MULTIPROC_DIR))


def start_metrics_server(port: int, host: str = env.DEFAULT_METRICS_HOST) -> int:
    """Serve every worker's series, summed, on ``host:port`` (0: a free port); the port."""
    if not enabled():
        raise RuntimeError(
            f"{env.PROMETHEUS_MULTIPROC_DIR} is not set: set it to an empty directory before "
            "the server starts, so that workers write their series there"
        )
    registry = CollectorRegistry()
    _client_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_address[1])


def mark_worker_dead(pid: int) -> None:
    """Drop an exited worker's live gauges (its counters stay in the sums, as they should)."""
    if enabled():
        _client_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
