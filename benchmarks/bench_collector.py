"""Collector throughput: conversation events per collector CPU-second through OTLP/gRPC and HTTP.

The load generator is the official ``opentelemetry-exporter-otlp`` span exporter (gRPC and HTTP
protobuf) sending pre-recorded spans in batches of 512 (``--batch``), from this process; the
collector runs as a subprocess pinned to CPU 0 (the generator to CPU 1), on a fresh embedded store.
Throughput is counted per CPU-second the collector process used (utime + stime from /proc), so it
reads as "per core" whatever the generator's own speed. Peak memory is the collector's VmHWM.

Baseline, measured in the same run: decode-only (protobuf ``ParseFromString`` of the same
requests, compiled upb backend) and decode + extract (``rows_from_traces``), in this process.

With ``--decode-workers N``, a second part measures using more than one core: the collector
unpinned, fed pre-encoded bodies from 4 connections (so the senders cost little CPU), once
decoding in-process and once with N decode workers, same run; it prints wall events/s, events
per CPU-second of the collector and its workers together, the CPU per event of the collector's
own process, and the ratios. ``--sustained-rounds R`` sends R rounds of ``--spans`` new spans
to one collector and prints its resident memory after each.

Target (SPEC section 7 / issue 3): >= 50,000 conversation events/s per core.

    python benchmarks/bench_collector.py [--spans 20000] [--events-per-span 10]
        [--decode-workers 2] [--sustained-rounds 10]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf.internal import api_implementation
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _util import machine_note, memory_mib
from opentelemetry.exporter.conversation_analytics.collector.otlp import rows_from_traces
from opentelemetry.instrumentation.conversation import ConversationEvent, ConversationTracker

BATCH = 512
SENDERS = 4
_READY = re.compile(r"collector ready: (.*) store=")


def record_spans(spans: int, events_per_span: int, prefix: str = "conv") -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracker = ConversationTracker(provider, agent_name="bench", user_id_key=b"bench")
    tracer = provider.get_tracer("bench")
    for index in range(spans):
        cid = f"{prefix}-{index // 4}"
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


def batches(spans: Sequence[ReadableSpan], size: int = BATCH) -> list[Sequence[ReadableSpan]]:
    return [spans[i : i + size] for i in range(0, len(spans), size)]


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """``pid`` and its live child processes (the decode workers)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(pid):
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def family_cpu_seconds(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def written_events(metrics_port: int) -> float:
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        .read()
        .decode()
    )
    found = re.search(r"^conversation_analytics_events_written_total (\S+)$", metrics, re.M)
    assert found is not None
    return float(found.group(1))


def send_raw(transport: str, port: int, bodies: Sequence[bytes]) -> None:
    """POST pre-encoded export bodies (no encoding cost on this side), one connection."""
    if transport == "grpc":
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            )
            for body in bodies:
                export(body, timeout=60)
        return
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for body in bodies:
            connection.request(
                "POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"}
            )
            reply = connection.getresponse()
            reply.read()
            if reply.status != 200:
                raise RuntimeError(f"HTTP export answered {reply.status}")
    finally:
        connection.close()


def scaling(requests: Sequence[bytes], events: int, workers: int) -> None:
    """Wall throughput and CPU of the collector on every core, decoding in-process vs with
    ``workers`` decode workers, fed pre-encoded bodies from ``SENDERS`` connections."""
    print(
        f"# scaling: collector unpinned ({os.cpu_count()} CPUs, shared with the senders), "
        f"{SENDERS} sender connections of pre-encoded bodies"
    )
    results: dict[tuple[str, int], float] = {}
    main_us: dict[tuple[str, int], float] = {}
    for transport in ("grpc", "http"):
        for count in (0, workers):
            with tempfile.TemporaryDirectory() as directory:
                process, ports = start_collector(directory, count, pin=False)
                try:
                    pids = family(process.pid)
                    cpu_before = family_cpu_seconds(pids)
                    main_before = cpu_seconds(process.pid)
                    started = time.perf_counter()
                    senders = [
                        threading.Thread(
                            target=send_raw,
                            args=(transport, ports[transport], requests[i::SENDERS]),
                        )
                        for i in range(SENDERS)
                    ]
                    for sender in senders:
                        sender.start()
                    for sender in senders:
                        sender.join()
                    wall = time.perf_counter() - started
                    cpu = family_cpu_seconds(pids) - cpu_before
                    main_cpu = cpu_seconds(process.pid) - main_before
                    written = written_events(ports["metrics"])
                finally:
                    process.terminate()
                    process.wait(timeout=60)
            assert written == events, (written, events)
            results[(transport, count)] = events / wall
            label = "in-process" if count == 0 else f"{count} decode workers"
            print(
                f"otlp/{transport:<4} {label:<18} wall {events / wall:>10,.0f} events/s, "
                f"{events / cpu:>10,.0f} events per collector CPU-s "
                f"({len(pids)} processes, {cpu / wall:.2f} cores busy); the collector's own "
                f"process {main_cpu / events * 1e6:.1f} us CPU per event"
            )
            main_us[(transport, count)] = main_cpu / events * 1e6
        ratio = results[(transport, workers)] / results[(transport, 0)]
        ceiling = main_us[(transport, 0)] / main_us[(transport, workers)]
        print(
            f"otlp/{transport:<4} wall throughput, {workers} workers / in-process: {ratio:.2f}x; "
            f"the collector's own process per event, in-process / with workers: {ceiling:.2f}x "
            "(the most the pool can give where cores are spare)"
        )


def sustained(rounds: int, spans: int, events_per_span: int) -> None:
    """Resident memory of one collector over ``rounds`` rounds of new conversations (new ids
    each round), sent as pre-encoded bodies: it must level off, not grow with what it has seen."""
    print(f"# sustained ingest: {rounds} rounds of {spans * events_per_span:,} new events each")
    with tempfile.TemporaryDirectory() as directory:
        process, ports = start_collector(directory, pin=False)
        try:
            sent = 0
            series = []
            for round_ in range(rounds):
                work = batches(record_spans(spans, events_per_span, prefix=f"r{round_}"))
                bodies = [encode_spans(batch).SerializeToString() for batch in work]
                sent += sum(len(span.events) for batch in work for span in batch)
                send_raw("grpc", ports["grpc"], bodies)
                rss = memory_mib(process.pid, "VmRSS")
                series.append(rss)
                print(f"   after {sent:>12,} events: collector RSS {rss:,.0f} MiB")
            assert written_events(ports["metrics"]) == sent
            print(
                f"   peak {memory_mib(process.pid):,.0f} MiB; RSS growth over the second half "
                f"of the run: {series[-1] - series[len(series) // 2 - 1]:+,.0f} MiB"
            )
        finally:
            process.terminate()
            process.wait(timeout=60)


def start_collector(
    directory: str, decode_workers: int = 0, pin: bool = True
) -> tuple[subprocess.Popen[str], dict[str, int]]:
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
        "--decode-workers",
        str(decode_workers),
    ]
    taskset = shutil.which("taskset")
    if pin and taskset and (os.cpu_count() or 1) > 1:
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
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help="spans per export request (default 512, the SDK's OTEL_BSP_MAX_EXPORT_BATCH_SIZE); "
        "each request is one insert, whose fixed cost larger requests spread over more events",
    )
    parser.add_argument(
        "--decode-workers",
        type=int,
        default=0,
        help="also measure wall throughput with this many decode workers against in-process "
        "decoding, collector on every core (default 0: skip)",
    )
    parser.add_argument(
        "--sustained-rounds",
        type=int,
        default=0,
        help="also send this many rounds of --spans new spans to one collector and print its "
        "resident memory after each (default 0: skip)",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the generator stays off the collector's core
    print(f"# {machine_note()}; protobuf backend: {api_implementation.Type()}")
    spans = record_spans(args.spans, args.events_per_span)
    work = batches(spans, args.batch)
    events = sum(len(span.events) for span in spans)
    requests = [encode_spans(batch).SerializeToString() for batch in work]
    print(
        f"# {len(spans)} spans, {events} conversation events, {len(work)} requests of {args.batch}"
    )

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
                peak = memory_mib(process.pid)
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
    if args.decode_workers:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        scaling(requests, events, args.decode_workers)
    if args.sustained_rounds:
        sustained(args.sustained_rounds, args.spans, args.events_per_span)


if __name__ == "__main__":
    main()
