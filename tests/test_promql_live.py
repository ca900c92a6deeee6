"""Every PromQL expression of the rules and dashboards, evaluated by a real Prometheus.

A real collector (``conversation-analytics collector``) receives conversations from the real
tracker through the official OTLP gRPC exporter; a real Prometheus from Debian's package scrapes
it every second with the repository's scrape job and rule files, on loopback. Then every
expression is evaluated through Prometheus' HTTP API:

- recording rules and the collector's own series must return data, and Prometheus must have
  recorded each rule's series;
- alert expressions must evaluate without error (most are rightly empty on healthy traffic);
- Grafana panel and variable queries on the Prometheus datasource must return data, with template
  variables set to "all" (``.*``) and ``$__rate_interval`` 1m, ``$__interval`` 30s,
  ``$__range`` 1h.

Expressions that look at last week (``offset``, or a recording rule built on one) can only be
empty on a Prometheus a minute old: those are checked to evaluate without error.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry

from collector_process import CollectorProcess, start_collector
from opentelemetry.exporter.conversation_analytics.collector.service import REQUESTS_REJECTED
from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    semconv,
)
from prometheus_server import (
    CONFIG_FILE,
    INSTALL_HINT,
    ROOT,
    RULE_FILES,
    PrometheusServer,
    Rule,
    binary,
    load_rules,
    start_prometheus,
    wait_until,
)

DASHBOARDS: Final = ROOT / "grafana" / "dashboards"
PROMETHEUS_UID: Final = "prometheus"
JOB: Final = "conversation-analytics"
#: Grafana's built-in variables; every other variable means "all" (``.*``).
GRAFANA_BUILTINS: Final = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_VARIABLE: Final = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
_LABEL_VALUES: Final = re.compile(
    r"^\s*label_values\((?:(?P<selector>.*),)?\s*(?P<label>\w+)\s*\)\s*$"
)
_QUERY_RESULT: Final = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.DOTALL)
TIMEOUT: Final = 30.0

# ---- the traffic ---------------------------------------------------------------------------------

AGENTS: Final = {"support-bot": "v1", "sales-bot": "v2"}
USER_ID_KEY: Final = b"promql-live"
Script = list[tuple[ConversationEvent, dict[str, object]]]
E = ConversationEvent
#: One conversation of each outcome; "idle" is left open and becomes an inferred abandonment.
SCRIPTS: Final[dict[str, Script]] = {
    "quick": [
        (E.STARTED, {"channel": "web"}),
        (E.USER_MESSAGE, {"turn": 1, "message_length": 24}),
        (E.TOOL_CALLED, {"turn": 1, "tool_name": "search"}),
        (E.AGENT_RESPONSE, {"turn": 1, "model": "model-a", "response_length": 120}),
        (E.FEEDBACK_RECEIVED, {"rating": "positive", "score": 1.0}),
        (E.COMPLETED, {"total_turns": 1}),
    ],
    "long": [
        (E.STARTED, {"channel": "voice"}),
        (E.USER_MESSAGE, {"turn": 1, "message_length": 30}),
        (E.AGENT_RESPONSE, {"turn": 1, "model": "model-b", "response_length": 90}),
        (E.USER_MESSAGE, {"turn": 2, "message_length": 31, "similarity": 0.93, "rephrase": True}),
        (E.TOOL_CALLED, {"turn": 2, "tool_name": "lookup", "error_type": "TimeoutError"}),
        (E.AGENT_RESPONSE, {"turn": 2, "model": "model-b", "response_length": 60}),
        (E.USER_MESSAGE, {"turn": 3, "message_length": 29, "similarity": 0.9, "rephrase": True}),
        (E.USER_MESSAGE, {"turn": 4, "message_length": 12}),
        (E.AGENT_RESPONSE, {"turn": 4, "model": "model-b", "response_length": 40}),
        (E.FEEDBACK_RECEIVED, {"rating": "negative", "score": 0.0}),
        (E.COMPLETED, {"total_turns": 4}),
    ],
    "handoff": [
        (E.STARTED, {"channel": "web"}),
        (E.USER_MESSAGE, {"turn": 1, "message_length": 18}),
        (E.AGENT_RESPONSE, {"turn": 1, "model": "model-a", "response_length": 50}),
        (E.HANDOFF_REQUESTED, {"turn": 1, "reason": "asked for a human"}),
    ],
    "abandoned": [
        (E.STARTED, {"channel": "web"}),
        (E.USER_MESSAGE, {"turn": 1, "message_length": 40}),
        (E.AGENT_RESPONSE, {"turn": 1, "model": "model-a", "response_length": 70}),
        (E.USER_MESSAGE, {"turn": 2, "message_length": 8}),
        (E.ABANDONED, {"abandoned_at_turn": 2}),
    ],
    "idle": [
        (E.STARTED, {"channel": "web"}),
        (E.USER_MESSAGE, {"turn": 1, "message_length": 15}),
    ],
}
WAVES: Final = 2
#: What Prometheus must show after both waves (per series name and label filter).
EXPECTED_TOTALS: Final = {
    "agent_conversations_started_total": WAVES * len(AGENTS) * len(SCRIPTS),
    "agent_conversations_completed_total": WAVES * len(AGENTS) * 2,
    "agent_conversation_handoffs_total": WAVES * len(AGENTS),
    'agent_conversations_abandoned_total{inferred="false"}': WAVES * len(AGENTS),
    'agent_conversations_abandoned_total{inferred="true"}': WAVES * len(AGENTS),
    'agent_conversation_tool_calls_total{outcome="error"}': WAVES * len(AGENTS),
    'agent_conversation_tool_calls_total{outcome="ok"}': WAVES * len(AGENTS),
    'agent_conversation_feedback_total{rating="positive"}': WAVES * len(AGENTS),
    'agent_conversation_feedback_total{rating="negative"}': WAVES * len(AGENTS),
    "agent_conversation_rephrases_total": WAVES * len(AGENTS) * 2,
    "agent_conversation_satisfaction_count": WAVES * len(AGENTS) * 4,
    "agent_conversation_evaluations_total": WAVES * len(AGENTS),
    'conversation_analytics_events_dropped_total{reason="missing_conversation_id"}': WAVES,
    f'{REQUESTS_REJECTED}_total{{reason="malformed"}}': WAVES,
}


def send_wave(provider: TracerProvider, collector: CollectorProcess, wave: int) -> None:
    """Each script once per agent through the real tracker, plus one event without an id and one
    malformed request (so the drop and rejection series exist)."""
    tracer = provider.get_tracer("promql-live-agent")
    for agent, prompt_version in AGENTS.items():
        tracker = ConversationTracker(
            provider, agent_name=agent, prompt_version=prompt_version, user_id_key=USER_ID_KEY
        )
        for name, script in SCRIPTS.items():
            conversation_id = f"{agent}-{name}-{wave}"
            for event, metadata in script:
                with tracer.start_as_current_span("agent.turn"):
                    assert tracker.record(conversation_id, "user-1", event, **metadata).recorded
        with tracer.start_as_current_span(
            "judge", attributes={semconv.CONVERSATION_ID: f"{agent}-quick-{wave}"}
        ) as span:  # an online evaluator's verdict on the quick conversation
            span.add_event(
                semconv.EVALUATION_EVENT,
                {semconv.EVALUATION_NAME: "relevance", semconv.EVALUATION_SCORE_VALUE: 0.8},
            )
        assert tracker.errors == 0
    with tracer.start_as_current_span("agent.turn") as span:
        span.add_event(ConversationEvent.STARTED.event_name, {semconv.AGENT_NAME: "no-id-bot"})
    assert collector.post("/v1/traces", b"\xff" * 16).status == 400
    assert provider.force_flush(10_000)


# ---- expressions ---------------------------------------------------------------------------------

RULES: Final = load_rules()


def _historical_records(rules: list[Rule]) -> frozenset[str]:
    """Recording rules that look at last week, directly (``offset``) or through another rule."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for rule in rules:
            if rule.is_alert or rule.name in found:
                continue
            if "offset" in rule.expr or any(name in rule.expr for name in found):
                found.add(rule.name)
                changed = True
    return frozenset(found)


HISTORICAL: Final = _historical_records(RULES)


def looks_at_last_week(expr: str) -> bool:
    """Whether ``expr`` can only be empty on a fresh Prometheus (it reads data a week old)."""
    return "offset" in expr or any(name in expr for name in HISTORICAL)


def substitute_variables(expr: str) -> str:
    """A Grafana query with its variables replaced: built-ins by fixed values, others by `.*`."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return GRAFANA_BUILTINS.get(name, ".*")

    return _VARIABLE.sub(value, expr)


def _is_prometheus(datasource: Any) -> bool:
    if isinstance(datasource, dict):
        return datasource.get("uid") == PROMETHEUS_UID or datasource.get("type") == "prometheus"
    return isinstance(datasource, str) and PROMETHEUS_UID in datasource.lower()


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # collapsed rows keep their panels here


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL query of a dashboard, variables substituted."""

    where: str
    expr: str


def panel_queries() -> list[DashboardQuery]:
    """Every Prometheus panel target of grafana/dashboards/*.json."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard.get("panels") or []):
            for target in panel.get("targets") or []:
                datasource = target.get("datasource") or panel.get("datasource")
                if _is_prometheus(datasource) and target.get("expr", "").strip():
                    where = (
                        f"{path.name}:{panel.get('title', panel.get('id'))}:{target.get('refId')}"
                    )
                    found.append(DashboardQuery(where, substitute_variables(target["expr"])))
    return found


def variable_queries() -> list[DashboardQuery]:
    """Every Prometheus template variable query of grafana/dashboards/*.json, as PromQL."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for variable in (dashboard.get("templating") or {}).get("list") or []:
            if variable.get("type") != "query" or not _is_prometheus(variable.get("datasource")):
                continue
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            label_values = _LABEL_VALUES.match(text)
            query_result = _QUERY_RESULT.match(text)
            if label_values:
                label = label_values["label"]
                selector = label_values["selector"] or f'{{{label}!=""}}'
                expr = f"group by ({label}) ({selector})"
            elif query_result:
                expr = query_result["expr"]
            else:
                expr = text
            where = f"{path.name}:${variable.get('name')}"
            found.append(DashboardQuery(where, substitute_variables(expr)))
    return found


def _params(queries: list[DashboardQuery], what: str) -> list[Any]:
    if not queries:
        reason = f"no {what} on the Prometheus datasource in {DASHBOARDS.relative_to(ROOT)} yet"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="none")]
    return [pytest.param(query, id=query.where) for query in queries]


def exported_series() -> list[str]:
    """Series names the collector exports (counters as ``_total``, histograms as their parts)."""
    registry = CollectorRegistry()
    ConversationMetrics(registry)
    names = [f"{REQUESTS_REJECTED}_total"]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in registry.collect():
        names.extend(family.name + suffix for suffix in suffixes[family.type])
    return sorted(names)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus_executable() -> str:
    found = binary("prometheus")
    if found is None:
        pytest.skip(INSTALL_HINT)
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("promql-live")


@pytest.fixture(scope="module")
def collector(prometheus_executable: str, workdir: Path) -> Iterator[CollectorProcess]:
    """A real collector; abandonment is inferred after 2 idle seconds."""
    process = start_collector(
        f"chdb://{workdir / 'store'}",
        workdir / "collector.log",
        "--spool-dir",
        str(workdir / "spool"),
        "--idle-timeout",
        "2",
    )
    yield process
    process.stop()


def live_config(workdir: Path, metrics_port: int) -> Path:
    """The shipped prometheus.yml, scraping the test's collector every second.

    Rule files are copied without group intervals, so every group is evaluated every second.
    """
    config = yaml.safe_load(CONFIG_FILE.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    rule_files = []
    for path in RULE_FILES:
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            group.pop("interval", None)
        copy = workdir / f"rules-{path.name}"
        copy.write_text(yaml.safe_dump(rules, sort_keys=False))
        rule_files.append(str(copy))
    config["rule_files"] = rule_files
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    written = workdir / "prometheus.yml"
    written.write_text(yaml.safe_dump(config, sort_keys=False))
    return written


@pytest.fixture(scope="module")
def prometheus(
    prometheus_executable: str, collector: CollectorProcess, workdir: Path
) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the collector, with the repository's rules loaded."""
    config = live_config(workdir, collector.ports["metrics"])
    server = start_prometheus(prometheus_executable, config, workdir)
    try:
        wait_until(lambda: server.query(f'up{{job="{JOB}"}} == 1'), TIMEOUT, "the first scrape")
        yield server
    finally:
        server.stop()


def _total(server: PrometheusServer, selector: str) -> float:
    result = server.query(f"sum({selector})")
    return float(result[0]["value"][1]) if result else 0.0


def _rules_evaluated_since(server: PrometheusServer, since: float) -> bool:
    groups = server.api("/api/v1/rules")["groups"]
    return bool(groups) and all(
        _parse_time(rule.get("lastEvaluation")) > since
        for group in groups
        for rule in group["rules"]
    )


def _parse_time(text: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 time from the API (0 for none)."""
    if not text or text.startswith("0001-"):
        return 0.0
    text = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def _scrapes(prometheus: PrometheusServer) -> float:
    """Scrapes so far of the least-scraped target (``up`` has one sample per scrape)."""
    result = prometheus.query("min(count_over_time(up[1h]))")
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def scraped(prometheus: PrometheusServer, collector: CollectorProcess) -> PrometheusServer:
    """Prometheus once two waves of conversations are scraped and every rule evaluated on them.

    Two waves, so that each series exists before it grows and rates over it are not just zero.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": "promql-live"}))
    exporter = OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
    started = "agent_conversations_started_total"
    try:
        for wave in range(1, WAVES + 1):
            send_wave(provider, collector, wave)
            expected = wave * len(AGENTS) * len(SCRIPTS)
            wait_until(
                lambda expected=expected: _total(prometheus, started) == expected,
                TIMEOUT,
                f"wave {wave} in Prometheus",
            )
            scrapes = _scrapes(prometheus)  # then two more scrapes of the same values
            wait_until(
                lambda scrapes=scrapes: _scrapes(prometheus) >= scrapes + 2,
                TIMEOUT,
                "two more scrapes",
            )
    finally:
        provider.shutdown()
    inferred = 'agent_conversations_abandoned_total{inferred="true"}'
    wait_until(
        lambda: _total(prometheus, inferred) == EXPECTED_TOTALS[inferred],
        TIMEOUT,
        "inferred abandonments in Prometheus",
    )
    now = time.time()
    wait_until(
        lambda: _rules_evaluated_since(prometheus, now), TIMEOUT, "a rule evaluation on the data"
    )
    return prometheus


# ---- the collector's series ----------------------------------------------------------------------


def test_prometheus_scrapes_the_collector_with_the_shipped_job(scraped: PrometheusServer) -> None:
    """The shipped scrape job, aimed at a running collector, is up."""
    assert scraped.query(f'up{{job="{JOB}"}} == 1')


@pytest.mark.parametrize("selector", sorted(EXPECTED_TOTALS))
def test_counters_in_prometheus_match_the_traffic(scraped: PrometheusServer, selector: str) -> None:
    """Prometheus holds exactly the conversations, outcomes and rejections that were sent."""
    assert _total(scraped, selector) == EXPECTED_TOTALS[selector]


@pytest.mark.parametrize("series", exported_series())
def test_every_exported_series_is_scraped(scraped: PrometheusServer, series: str) -> None:
    """Each series the collector defines is in Prometheus after realistic traffic."""
    assert scraped.query(series), f"{series} is not in Prometheus"


# ---- rules ---------------------------------------------------------------------------------------


def test_every_rule_group_loads_and_evaluates_healthy(scraped: PrometheusServer) -> None:
    """Prometheus loads every rule group of the repository and evaluates each rule without error."""
    groups = scraped.api("/api/v1/rules")["groups"]
    assert {group["name"] for group in groups} == {rule.group for rule in RULES}
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule.name for rule in RULES}
    unhealthy = {
        name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] != "ok"
    }
    assert not unhealthy


@pytest.mark.parametrize(
    "rule", [rule for rule in RULES if not rule.is_alert], ids=lambda rule: rule.name
)
def test_recording_rule_returns_data(scraped: PrometheusServer, rule: Rule) -> None:
    """A recording rule's expression returns data, and Prometheus records the rule's series.

    Rules that compare with last week evaluate without error but are empty on fresh data.
    """
    result = scraped.query(rule.expr)
    recorded = scraped.query(rule.name)
    if rule.name in HISTORICAL:
        return
    assert result, f"{rule.name}: its expression returned no data"
    assert recorded, f"{rule.name}: Prometheus recorded no series"


@pytest.mark.parametrize("rule", [rule for rule in RULES if rule.is_alert], ids=lambda r: r.name)
def test_alert_expression_evaluates(scraped: PrometheusServer, rule: Rule) -> None:
    """An alert's expression evaluates without error against live data."""
    scraped.query(rule.expr)


@pytest.mark.parametrize(
    "alert", ["ConversationAnalyticsMetricsAbsent", "ConversationAnalyticsCollectorDown"]
)
def test_missing_collector_alerts_are_quiet_while_it_is_scraped(
    scraped: PrometheusServer, alert: str
) -> None:
    """The alerts about a missing or down collector are empty while it is scraped."""
    (rule,) = [rule for rule in RULES if rule.name == alert]
    assert scraped.query(rule.expr) == []


# ---- dashboards ----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", _params(panel_queries(), "panel queries"))
def test_dashboard_panel_query_returns_data(
    scraped: PrometheusServer, query: DashboardQuery
) -> None:
    """A dashboard panel's PromQL returns data (queries of last week: evaluates without error)."""
    result = scraped.query(query.expr)
    if not looks_at_last_week(query.expr):
        assert result, f"{query.where}: no data for {query.expr}"


@pytest.mark.parametrize("query", _params(variable_queries(), "variable queries"))
def test_dashboard_variable_query_returns_values(
    scraped: PrometheusServer, query: DashboardQuery
) -> None:
    """A dashboard variable on the Prometheus datasource offers values."""
    assert scraped.query(query.expr), f"{query.where}: no values from {query.expr}"
