"""Run the collector: receivers, admin server, and a clean drain on SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from opentelemetry.exporter.conversation_analytics.collector.config import (
    CollectorConfig,
    split_endpoint,
)
from opentelemetry.exporter.conversation_analytics.collector.grpc_receiver import (
    start_grpc_receiver,
)
from opentelemetry.exporter.conversation_analytics.collector.http_receiver import (
    AdminHandler,
    OtlpHandler,
    start_http_server,
)
from opentelemetry.exporter.conversation_analytics.collector.inference import Clock, _utcnow
from opentelemetry.exporter.conversation_analytics.collector.service import CollectorService
from opentelemetry.exporter.conversation_analytics.store import ConversationStore

_logger = logging.getLogger(__name__)


@dataclass
class RunningCollector:
    """A started collector: its service, bound ports, and how to stop it."""

    service: CollectorService
    ports: dict[str, int] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Stop accepting, let in-flight exports finish, flush, release the store."""
        if self.stopped.is_set():
            return
        for close in self._closers:
            try:
                close()
            except Exception:
                _logger.exception("error while stopping a receiver")
        self.service.close()
        self.stopped.set()


def start_collector(
    config: CollectorConfig, *, clock: Clock = _utcnow, store: ConversationStore | None = None
) -> RunningCollector:
    """Start everything the config enables; the caller stops it with ``stop()``.

    ``store`` (tests, embedding) replaces the one the config's URL names; it stays the caller's.
    """
    service = CollectorService(config, clock=clock, store=store)
    running = RunningCollector(service)
    scheme = "https" if config.tls_cert_file else "http"
    try:
        api_url = None
        if config.metrics_endpoint:
            host, port = split_endpoint(config.metrics_endpoint)
            admin, bound = start_http_server(service, host, port, AdminHandler)
            running.ports["metrics"] = bound
            running._closers.append(admin.server_close)
            running._closers.insert(0, admin.shutdown)
            api_url = f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{bound}"  # noqa: S104
        service.start(api_url)
        if config.grpc_endpoint:
            host, port = split_endpoint(config.grpc_endpoint)
            server, bound = start_grpc_receiver(service, host, port)
            running.ports["grpc"] = bound
            running._closers.insert(0, lambda: server.stop(grace=10).wait())
        if config.http_endpoint:
            host, port = split_endpoint(config.http_endpoint)
            http, bound = start_http_server(service, host, port, OtlpHandler)
            running.ports["http"] = bound
            running._closers.insert(0, http.server_close)
            running._closers.insert(0, http.shutdown)
        # Both receivers are bound and serving: only now may /readyz say ready.
        service.receiving.set()
    except BaseException:
        running.stop()
        raise
    return running


#: The collector allocates a few short-lived objects per event and keeps no reference cycles:
#: collect the young generation less often, and never re-scan what start-up left behind.
GC_THRESHOLDS: Final = (50_000, 20, 100)


def serve(config: CollectorConfig, out: TextIO = sys.stderr) -> int:
    """Run until SIGTERM or SIGINT, then drain and exit 0 (a signal during start-up stops the
    collector as soon as it has started, never half-way)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running = start_collector(config)
    # Our own process (never an agent's): tune the cyclic GC for throughput.
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    ports = ", ".join(f"{name}={port}" for name, port in running.ports.items())
    out.write(f"collector ready: {ports} store={config.store}\n")
    out.flush()
    while not stop.wait(0.5):
        pass
    out.write("collector stopping: draining in-flight exports\n")
    out.flush()
    running.stop()
    return 0
