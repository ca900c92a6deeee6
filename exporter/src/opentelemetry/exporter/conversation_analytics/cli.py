"""``conversation-analytics``: demo, report, compare, conversations, conversation, import, infer,
schema, collector."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from opentelemetry.exporter.conversation_analytics.analytics import (
    CONVERSATION_ORDERS,
    DEFAULT_CONVERSATIONS_LIMIT,
    DEFAULT_DAYS,
    MAX_CONVERSATIONS_LIMIT,
    MIN_COMPARE_SAMPLE,
    Comparison,
    ConversationList,
    ConversationOutcome,
    Report,
)
from opentelemetry.exporter.conversation_analytics.collector.inference import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LOOKBACK,
)
from opentelemetry.exporter.conversation_analytics.reader import ConversationReader, StoreReader
from opentelemetry.exporter.conversation_analytics.store import (
    COMPARE_DIMENSIONS,
    DEFAULT_STORE_URL,
    MAX_DAYS,
    ConversationStore,
    Schema,
    StoreError,
    UnknownConversation,
    check_dimension,
    check_order,
    check_outcome,
    open_store,
    parse_count,
    parse_days,
    resolve_store_url,
)
from opentelemetry.exporter.conversation_analytics.store.base import MAX_MIN_TURNS
from opentelemetry.exporter.conversation_analytics.version import __version__
from opentelemetry.instrumentation.conversation.semconv import RATINGS

DEFAULT_DEMO_METRICS_PORT = 9464
EXIT_USAGE = 2
EXIT_FAILURE = 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r:.40}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _checked(check: Callable[[str, str], Any]) -> type[argparse.Action]:
    """An action running ``check(text, flag)``, the same check the API runs on its query
    parameter, and showing its message as is (argparse's own would say "invalid value")."""

    class _Checked(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            try:
                setattr(namespace, self.dest, check(str(values), option_string or self.dest))
            except ValueError as exc:
                raise argparse.ArgumentError(None, str(exc)) from None

    return _Checked


#: ``--days N`` and ``--by DIMENSION``: the API's own checks of ``?days=`` and ``?by=``.
_Days = _checked(parse_days)
_Dimension = _checked(check_dimension)


def _limit(text: str, name: str) -> int:
    return parse_count(text, name, 1, MAX_CONVERSATIONS_LIMIT)


def _min_turns(text: str, name: str) -> int:
    return parse_count(text, name, 0, MAX_MIN_TURNS)


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-12-01T18:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _add_store(parser: argparse.ArgumentParser) -> None:
    from opentelemetry.exporter.conversation_analytics.store.url import ENV_STORE

    parser.add_argument(
        "--store",
        default=None,
        help="store URL: chdb:///path (embedded) or clickhouse://user:pw@host:8123/db "
        f"(default: ${ENV_STORE}, else {DEFAULT_STORE_URL})",
    )


def _add_format(parser: argparse.ArgumentParser, *, html: bool = False) -> None:
    formats = ("table", "json", "html") if html else ("table", "json")
    parser.add_argument("--format", choices=formats, default="table")
    parser.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="write to FILE instead of standard output",
    )


def _add_collector(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collector",
        default=None,
        metavar="URL",
        help="read through a running collector's admin API (default: "
        "$CONVERSATION_ANALYTICS_COLLECTOR_URL, else the collector that owns an embedded store)",
    )


def _add_collector_command(commands: Any) -> None:
    from dataclasses import fields

    from opentelemetry.exporter.conversation_analytics.collector.config import CollectorConfig

    collector = commands.add_parser(
        "collector",
        help="OTLP receiver service (gRPC :4317, HTTP :4318): sessionize, infer abandonment",
        description="Every flag falls back to its CONVERSATION_ANALYTICS_* environment variable.",
    )
    for item in fields(CollectorConfig):
        flag = "--" + item.name.replace("_", "-")
        env = CollectorConfig.env_name(item.name)
        # An empty default stands for something (the default store, "none"): show that.
        default = item.metadata.get("default_text") or repr(item.default)
        help_text = f"{item.metadata.get('help', '')} (env {env}; default {default})".strip()
        if item.type == "bool":
            collector.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(item.type), str)
            collector.add_argument(flag, type=kind, default=None, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conversation-analytics",
        description="Conversation analytics for AI agents, built on OpenTelemetry.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="simulate an instrumented agent fleet into the store, then report"
    )
    _add_store(demo)
    demo.add_argument("--conversations", type=_positive_int, default=2000)
    demo.add_argument("--days", action=_Days, default=6, help="spread over the last N days")
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_DEMO_METRICS_PORT,
        help="serve /metrics here while the demo runs (0: any free port; -1: off)",
    )
    demo.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="live mode: send OTLP/gRPC here (an OpenTelemetry Collector or the collector "
        "service) at --rate conversations/s until stopped, instead of the batch into the store",
    )
    demo.add_argument("--rate", type=float, default=2.0, help="live mode: conversations/s")
    demo.add_argument(
        "--serve",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep /metrics up this long after the report (for a look in a browser)",
    )
    _add_format(demo)

    report = commands.add_parser("report", help="section 4 metrics over the last N days")
    report.add_argument(
        "--days", action=_Days, default=DEFAULT_DAYS, help=f"1 to {MAX_DAYS} (default: %(default)s)"
    )
    report.add_argument("--agent", default="", help="only this agent")
    report.add_argument(
        "--compare-by",
        action=_Dimension,
        default="agent",
        metavar="{" + ",".join(COMPARE_DIMENSIONS) + "}",
        help="--format html: the side-by-side section's grouping (default: %(default)s)",
    )
    _add_format(report, html=True)
    _add_store(report)
    _add_collector(report)

    compare = commands.add_parser(
        "compare",
        help="groups side by side (prompt versions, models, ...): 95%% Wilson intervals and a "
        "two-proportion z-test of completion against a baseline",
        description=f"A difference is significant when p < 0.05 and both groups have at least "
        f"{MIN_COMPARE_SAMPLE} conversations.",
    )
    compare.add_argument(
        "--by",
        action=_Dimension,
        required=True,
        metavar="{" + ",".join(COMPARE_DIMENSIONS) + "}",
        help="what to group conversations by (a conversation's value on its events)",
    )
    compare.add_argument(
        "--baseline", default=None, help="the group to test against (default: the largest)"
    )
    compare.add_argument("--agent", default="", help="only this agent's conversations")
    compare.add_argument(
        "--days", action=_Days, default=DEFAULT_DAYS, help=f"1 to {MAX_DAYS} (default: %(default)s)"
    )
    _add_format(compare)
    _add_store(compare)
    _add_collector(compare)

    listing = commands.add_parser(
        "conversations",
        help="list conversation ids by filter (agent, outcome, rephrased, turns) to drill into",
        description="Outcome, by precedence: completed (also after a handoff), abandoned (an "
        "abandonment that stands), handoff, open.",
    )
    listing.add_argument("--agent", default="", help="only this agent's conversations")
    listing.add_argument(
        "--outcome",
        action=_checked(check_outcome),
        default=None,
        metavar="{" + ",".join(outcome.value for outcome in ConversationOutcome) + "}",
    )
    listing.add_argument(
        "--rephrased", action="store_true", help="only conversations with a rephrase"
    )
    listing.add_argument(
        "--min-turns",
        action=_checked(_min_turns),
        default=0,
        metavar="N",
        help="only conversations with at least N user messages (default: %(default)s)",
    )
    listing.add_argument(
        "--order",
        action=_checked(check_order),
        default=CONVERSATION_ORDERS[0],
        metavar="{" + ",".join(CONVERSATION_ORDERS) + "}",
        help="worst satisfaction first, or latest activity first (default: %(default)s)",
    )
    listing.add_argument(
        "--limit",
        action=_checked(_limit),
        default=DEFAULT_CONVERSATIONS_LIMIT,
        metavar="N",
        help=f"1 to {MAX_CONVERSATIONS_LIMIT} (default: %(default)s)",
    )
    listing.add_argument(
        "--days", action=_Days, default=DEFAULT_DAYS, help=f"1 to {MAX_DAYS} (default: %(default)s)"
    )
    _add_format(listing)
    _add_store(listing)
    _add_collector(listing)

    conversation = commands.add_parser("conversation", help="one conversation and its satisfaction")
    conversation.add_argument("conversation_id")
    _add_format(conversation)
    _add_store(conversation)
    _add_collector(conversation)

    _add_collector_command(commands)

    importer = commands.add_parser("import", help="backfill from JSON lines (article's records)")
    importer.add_argument("file", help="path to a JSON-lines file, or - for standard input")
    _add_store(importer)

    infer = commands.add_parser(
        "infer",
        help="infer abandoned conversations once (idempotent: safe from cron or a CronJob)",
    )
    infer.add_argument(
        "--idle-timeout",
        type=_positive_int,
        default=int(DEFAULT_IDLE_TIMEOUT.total_seconds()),
        metavar="SECONDS",
        help="silence after which a conversation with no outcome is abandoned "
        "(default: %(default)s)",
    )
    infer.add_argument(
        "--lookback",
        type=_positive_int,
        default=int(DEFAULT_LOOKBACK.total_seconds()),
        metavar="SECONDS",
        help="how far back idle conversations are looked for (default: %(default)s)",
    )
    infer.add_argument(
        "--as-of",
        type=_timestamp,
        default=None,
        metavar="TIME",
        help="infer as if now were TIME (ISO 8601, UTC if no offset), for imported history",
    )
    _add_store(infer)

    feedback = commands.add_parser(
        "feedback", help="record a rating that arrived after the conversation (late feedback)"
    )
    feedback.add_argument("conversation_id")
    feedback.add_argument("rating", choices=sorted(RATINGS))
    feedback.add_argument("--score", type=_unit_interval, default=None, help="0..1")
    feedback.add_argument("--user-id", default=None, help="the rater (pseudonymised)")
    feedback.add_argument(
        "--id", default=None, help="idempotency key: the same id twice is stored once"
    )
    feedback.add_argument(
        "--timestamp", type=_timestamp, default=None, metavar="TIME", help="default: now"
    )
    _add_store(feedback)

    schema = commands.add_parser("schema", help="print (or --apply) the DDL")
    schema.add_argument("--cluster", default=None, help="replicated cluster variant (ON CLUSTER)")
    schema.add_argument("--database", default=Schema.database)
    schema.add_argument("--ttl-days", type=int, default=0, help="0 keeps events forever")
    schema.add_argument("--apply", action="store_true", help="apply to --store instead of printing")
    _add_store(schema)
    return parser


def _print_json(args: argparse.Namespace, data: Any) -> None:
    _emit(args, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _check_output(path: str | None) -> None:
    """Refuse an ``--output`` that cannot be a file, before any work is done."""
    if path is not None and os.path.isdir(path):
        raise ValueError(f"--output {path!r} is a directory: name a file to write")


def _emit(args: argparse.Namespace, text: str) -> None:
    """The command's answer, to ``--output FILE`` (replaced whole) or standard output."""
    text = text if text.endswith("\n") else text + "\n"
    output = getattr(args, "output", None)
    if output is None:
        sys.stdout.write(text)
        return
    with open(output, "w", encoding="utf-8") as stream:
        stream.write(text)


@contextlib.contextmanager
def _reader(args: argparse.Namespace) -> Iterator[ConversationReader]:
    """The store's reader, or a running collector's API when it owns the store (or is named)."""
    from opentelemetry.exporter.conversation_analytics.collector.client import (
        ENV_COLLECTOR_URL,
        CollectorClient,
        discover,
    )

    url = args.collector or os.environ.get(ENV_COLLECTOR_URL) or discover(args.store)
    if url:
        yield CollectorClient(url)
        return
    store = open_store(args.store, must_exist=True)  # a mistyped --store is no empty report
    try:
        yield StoreReader(store)
    finally:
        store.close()


def _open(
    args: argparse.Namespace, *, must_exist: bool = False, apply_schema: bool = True
) -> ConversationStore:
    """The store for a command that opens it itself (writes). While a collector owns an
    embedded store chDB would refuse with engine errors: say who owns it and what to do."""
    _refuse_owned(args)
    return open_store(args.store, must_exist=must_exist, apply_schema=apply_schema)


def _refuse_owned(args: argparse.Namespace) -> None:
    """A clear error, before chDB's lock errors, when a live collector owns the store."""
    from opentelemetry.exporter.conversation_analytics.collector.client import store_owner

    owner = store_owner(args.store)
    if owner is not None:
        raise StoreError(
            f"a running collector (pid {owner.pid}) owns the embedded store {owner.directory} "
            f"and chDB lets one process open it: {args.command} cannot run on it until that "
            "collector stops (send events to the collector over OTLP instead); report, compare, "
            f"conversations and conversation read through it (--collector {owner.api_url})"
        )


#: How many agent names a "no conversations for agent" note lists.
_MAX_AGENTS_NAMED = 10


def _nothing_found(reader: ConversationReader, days: int, agent: str) -> str:
    """The note for an empty report: an agent filter that matched nothing names the agents
    that did have conversations (a typo is then plain)."""
    window = f"in the last {days} day{'' if days == 1 else 's'}"
    if not agent:
        return f"no conversations {window}"
    note = f"no conversations for agent {agent!r} {window}"
    agents = sorted(item.agent for item in reader.report(days).agents)
    if agents:
        named = ", ".join(agents[:_MAX_AGENTS_NAMED])
        extra = len(agents) - _MAX_AGENTS_NAMED
        more = f" and {extra} more" if extra > 0 else ""
        note += f" (agents with conversations: {named}{more})"
    return note


def _report(args: argparse.Namespace, reader: ConversationReader) -> Report:
    from opentelemetry.exporter.conversation_analytics.render import render_report

    agent = getattr(args, "agent", "")
    report = reader.report(args.days, agent=agent)
    if args.format == "json":
        _print_json(args, report.to_dict())
    elif args.format == "html":
        from opentelemetry.exporter.conversation_analytics.html_report import render_html

        comparison = reader.compare(args.compare_by, args.days, agent=agent)
        _emit(args, render_html(report, comparison, agent=agent))
    else:
        _emit(args, render_report(report))
    return report


def _cmd_demo_live(args: argparse.Namespace) -> int:
    import signal
    import threading

    from opentelemetry.exporter.conversation_analytics.demo import run_live

    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise StoreError(
            "live mode needs opentelemetry-exporter-otlp-proto-grpc "
            "(pip install 'opentelemetry-exporter-conversation-analytics[demo]')"
        ) from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    insecure = not args.otlp_endpoint.startswith("https://")
    exporter = OTLPSpanExporter(endpoint=args.otlp_endpoint, insecure=insecure)
    print(f"live demo: {args.rate:g} conversations/s to {args.otlp_endpoint}", file=sys.stderr)
    simulated = run_live(exporter, rate=args.rate, stop=stop, seed=args.seed)
    exporter.shutdown()
    print(f"live demo stopped after {simulated} conversations", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from opentelemetry.exporter.conversation_analytics.demo import run_demo

    if args.otlp_endpoint:
        return _cmd_demo_live(args)
    from opentelemetry.exporter.conversation_analytics.exporter import (
        ConversationAnalyticsExporter,
    )

    store = _open(args)
    try:
        port = None if args.metrics_port < 0 else args.metrics_port
        try:
            exporter = ConversationAnalyticsExporter(store, metrics_port=port)
        except OSError as exc:
            print(f"note: /metrics not served ({exc}); continuing", file=sys.stderr)
            exporter = ConversationAnalyticsExporter(store)
        if exporter.metrics_port is not None:
            print(
                f"Prometheus metrics at http://127.0.0.1:{exporter.metrics_port}/metrics",
                file=sys.stderr,
            )
        print(
            f"Simulating {args.conversations} conversations into {resolve_store_url(args.store)}",
            file=sys.stderr,
        )
        run_demo(exporter, conversations=args.conversations, days=args.days, seed=args.seed)
        args.agent = ""
        args.days = DEFAULT_DAYS
        _report(args, StoreReader(store))
        if args.serve > 0 and exporter.metrics_port is not None:
            import time

            print(f"serving /metrics for {args.serve:g} s (Ctrl-C stops)", file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(args.serve)
        exporter.shutdown()
    finally:
        store.close()
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    with _reader(args) as reader:
        report = _report(args, reader)
        if report.total_conversations == 0:
            # Still exit 0 (an empty window is an answer), but never a silent one.
            print(_nothing_found(reader, args.days, args.agent), file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from opentelemetry.exporter.conversation_analytics.render import render_comparison

    with _reader(args) as reader:
        comparison: Comparison = reader.compare(
            args.by, args.days, baseline=args.baseline, agent=args.agent
        )
        if args.format == "json":
            _print_json(args, comparison.to_dict())
        else:
            _emit(args, render_comparison(comparison))
        if not comparison.groups:
            print(_nothing_found(reader, args.days, args.agent), file=sys.stderr)
    return 0


def _cmd_conversations(args: argparse.Namespace) -> int:
    from opentelemetry.exporter.conversation_analytics.render import render_conversations

    with _reader(args) as reader:
        listing: ConversationList = reader.conversations(
            args.days,
            agent=args.agent,
            outcome=args.outcome,
            rephrased=args.rephrased,
            min_turns=args.min_turns,
            order=args.order,
            limit=args.limit,
        )
        if args.format == "json":
            _print_json(args, listing.to_dict())
        else:
            _emit(args, render_conversations(listing))
        if not listing.conversations:
            print("no conversations match", file=sys.stderr)
    return 0


def _cmd_conversation(args: argparse.Namespace) -> int:
    from opentelemetry.exporter.conversation_analytics.render import render_conversation

    with _reader(args) as reader:
        detail = reader.existing_conversation(args.conversation_id)
    if args.format == "json":
        _print_json(args, detail.to_dict())
    else:
        _emit(args, render_conversation(detail))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from opentelemetry.exporter.conversation_analytics.importer import (
        ImportFailed,
        import_file,
        spooled,
    )

    store = _open(args)
    try:
        with spooled(args.file, sys.stdin.buffer) as path:
            result = import_file(path, store)
    except ImportFailed as exc:
        raise StoreError(str(exc)) from exc
    finally:
        store.close()
    for number, message in result.errors[:50]:
        print(f"{args.file}:{number}: skipped: {message}", file=sys.stderr)
    if result.skipped > 50:
        print(f"... and {result.skipped - 50} more bad lines", file=sys.stderr)
    print(
        f"imported {result.imported} events, skipped {result.skipped} bad lines "
        "(events already stored keep a single copy)"
    )
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from opentelemetry.exporter.conversation_analytics.collector.inference import (
        AbandonmentSweeper,
    )
    from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline

    now = args.as_of or datetime.now(timezone.utc)
    store = _open(args, must_exist=True)  # nothing to infer in a store nobody wrote
    pipeline = ConversationPipeline(store)
    try:
        sweeper = AbandonmentSweeper(
            pipeline,
            idle_timeout=timedelta(seconds=args.idle_timeout),
            lookback=timedelta(seconds=args.lookback),
            clock=lambda: now,
        )
        inferred = sweeper.sweep()
    finally:
        pipeline.close()
        store.close()
    print(
        f"inferred {inferred} abandoned conversations as of {now.isoformat()} "
        f"(idle over {args.idle_timeout} s, looked back {args.lookback} s)"
    )
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    from opentelemetry.exporter.conversation_analytics.feedback import SOURCE, feedback_row
    from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline, Outcome

    store = _open(args, must_exist=True)  # its conversation must exist, so must the store
    pipeline = ConversationPipeline(store)
    try:
        row = feedback_row(
            store,
            args.conversation_id,
            args.rating,
            score=args.score,
            user_id=args.user_id,
            event_id=args.id,
            timestamp=args.timestamp.isoformat() if args.timestamp else None,
        )
        if pipeline.submit([row], SOURCE) is not Outcome.WRITTEN:
            raise StoreError("the store did not accept the feedback")
    finally:
        pipeline.close()
        store.close()
    print(f"recorded {args.rating} feedback for {args.conversation_id} (event {row.event_id})")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    schema = Schema(database=args.database, cluster=args.cluster, ttl_days=args.ttl_days)
    if not args.apply:
        print(";\n\n".join(schema.ddl()) + ";")
        return 0
    store = _open(args, apply_schema=False)
    try:
        store.schema = schema
        store.apply_schema()
    finally:
        store.close()
    print(f"schema applied to {resolve_store_url(args.store)}")
    return 0


def _cmd_collector(args: argparse.Namespace) -> int:
    import logging

    try:
        from opentelemetry.exporter.conversation_analytics.collector.config import (
            CollectorConfig,
        )
        from opentelemetry.exporter.conversation_analytics.collector.run import serve
    except ImportError as exc:
        raise StoreError(
            f"the collector needs its extra: pip install "
            f"'opentelemetry-exporter-conversation-analytics[collector]' ({exc})"
        ) from exc
    _refuse_owned(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides = {key: value for key, value in vars(args).items() if key != "command"}
    return serve(CollectorConfig.load(overrides))


_COMMANDS = {
    "demo": _cmd_demo,
    "report": _cmd_report,
    "compare": _cmd_compare,
    "conversations": _cmd_conversations,
    "conversation": _cmd_conversation,
    "import": _cmd_import,
    "infer": _cmd_infer,
    "feedback": _cmd_feedback,
    "schema": _cmd_schema,
    "collector": _cmd_collector,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_output(getattr(args, "output", None))
        return _COMMANDS[args.command](args)
    except UnknownConversation as exc:  # the API's 404, in the same words
        print(f"conversation-analytics {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (StoreError, ValueError, OSError) as exc:
        print(f"conversation-analytics {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
