"""Collector throughput: conversation events per collector CPU-second through OTLP/gRPC and HTTP.

The load generator is the official ``opentelemetry-exporter-otlp`` span exporter (gRPC and HTTP
protobuf) sending pre-recorded spans in batches of 512, from this process; the collector runs as a
subprocess pinned to CPU 0 (the generator to CPU 1), on a fresh embedded store. Throughput is
counted per CPU-second the collector process used (utime + stime from /proc), so it reads as
"per core" whatever the generator's own speed. Peak memory is the collector's VmHWM.

Baseline, measured in the same run: decode-only (protobuf ``ParseFromString`` of the same
requests, compiled upb backend) and decode + extract (``rows_from_traces``), in this process.

Target (SPEC section 7 / issue 3): >= 50,000 conversation events/s per core.

    python benchmarks/bench_collector.py [--spans 20000] [--events-per-span 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.internal import api_implementation
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _util import machine_note
from opentelemetry.exporter.conversation_analytics.collector.otlp import rows_from_traces
from opentelemetry.instrumentation.conversation import ConversationEvent, ConversationTracker

BATCH = 512
_READY = re.compile(r"collector ready: (.*) store=")


def record_spans(spans: int, events_per_span: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracker = ConversationTracker(provider, agent_name="bench", user_id_key=b"bench")
    tracer = provider.get_tracer("bench")
    for index in range(spans):
        cid = f"conv-{index // 4}"
        with tracer.start_as_current_span("invoke_agent"):
            for turn in range(events_per_span):
                tracker.record(
                    cid,
                    "user",
                    ConversationEvent.USER_MESSAGE,
                    turn=turn,
                    message_length=40,
                    model="gpt-4o",
                )
    provider.shutdown()
    return list(memory.get_finished_spans())


def batches(spans: Sequence[ReadableSpan]) -> list[Sequence[ReadableSpan]]:
    return [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_collector(directory: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    command = [
        sys.executable,
        "-m",
        "opentelemetry.exporter.conversation_analytics.cli",
        "collector",
        "--store",
        f"chdb://{directory}/store",
        "--spool-dir",
        f"{directory}/spool",
        "--grpc-endpoint",
        "127.0.0.1:0",
        "--http-endpoint",
        "127.0.0.1:0",
        "--metrics-endpoint",
        "127.0.0.1:0",
    ]
    taskset = shutil.which("taskset")
    if taskset and (os.cpu_count() or 1) > 1:
        command = [taskset, "-c", "0", *command]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        found = _READY.search(line)
        if found:
            ports = dict(item.split("=") for item in found.group(1).split(", "))
            return process, {name: int(port) for name, port in ports.items()}
    raise RuntimeError("collector did not start")


def run_load(name: str, exporter: object, work: list[Sequence[ReadableSpan]], pid: int) -> float:
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    for batch in work:
        result = exporter.export(batch)  # type: ignore[attr-defined]
        if result is not SpanExportResult.SUCCESS:
            raise RuntimeError(f"{name} export failed")
    wall = time.perf_counter() - started
    return cpu_seconds(pid) - cpu_before, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--events-per-span", type=int, default=10)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the generator stays off the collector's core
    print(f"# {machine_note()}; protobuf backend: {api_implementation.Type()}")
    spans = record_spans(args.spans, args.events_per_span)
    work = batches(spans)
    events = sum(len(span.events) for span in spans)
    requests = [encode_spans(batch).SerializeToString() for batch in work]
    print(f"# {len(spans)} spans, {events} conversation events, {len(work)} requests of {BATCH}")

    started = time.process_time()
    for body in requests:
        ExportTraceServiceRequest.FromString(body)
    decode = time.process_time() - started
    started = time.process_time()
    extracted = 0
    for body in requests:
        extracted += len(rows_from_traces(ExportTraceServiceRequest.FromString(body)).rows)
    extract = time.process_time() - started
    assert extracted == events
    print(f"baseline decode only          {events / decode:>12,.0f} events/CPU-s")
    print(f"baseline decode + extract     {events / extract:>12,.0f} events/CPU-s")

    for name in ("grpc", "http"):
        with tempfile.TemporaryDirectory() as directory:
            process, ports = start_collector(directory)
            try:
                if name == "grpc":
                    exporter = GrpcExporter(endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True)
                else:
                    exporter = HttpExporter(endpoint=f"http://127.0.0.1:{ports['http']}/v1/traces")
                cpu, wall = run_load(name, exporter, work, process.pid)
                peak = peak_rss_mib(process.pid)
                metrics = (
                    urllib.request.urlopen(
                        f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10
                    )
                    .read()
                    .decode()
                )
                written = float(
                    re.search(
                        r"^conversation_analytics_events_written_total (\S+)$", metrics, re.M
                    ).group(1)  # type: ignore[union-attr]
                )
                exporter.shutdown()
            finally:
                process.terminate()
                process.wait(timeout=60)
            assert written == events, (written, events)
            per_cpu = events / cpu
            print(
                f"otlp/{name:<4} end to end         {per_cpu:>12,.0f} events/CPU-s "
                f"({len(spans) / cpu:,.0f} spans/CPU-s; wall {events / wall:,.0f} events/s; "
                f"collector peak RSS {peak:.0f} MiB; vs decode+extract "
                f"{per_cpu / (events / extract):.2f}x, "
                f"vs decode-only {per_cpu / (events / decode):.3f}x)"
            )


if __name__ == "__main__":
    main()
