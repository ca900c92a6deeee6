"""Grafana provisioning and dashboards: their structure, and every ClickHouse query run for real.

Each ClickHouse panel query and query variable is expanded the way Grafana and the ClickHouse plugin
expand it (``tests/grafana_macros.py``), then run on chDB over data the demo generated, under
several variable selections; the results are checked for the columns their panel needs, and the
headline numbers against the product's own report.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from grafana_macros import ALL, VARIABLE_SYNTAX, QueryContext, Selection, prepare
from opentelemetry.exporter.conversation_analytics import metrics
from opentelemetry.exporter.conversation_analytics.analytics import ExitKind, round_half_up
from opentelemetry.exporter.conversation_analytics.collector.service import REQUESTS_REJECTED
from opentelemetry.exporter.conversation_analytics.demo import run_demo
from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.stats import (
    two_proportion_z_test,
    wilson_interval,
)
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, open_store
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
#: jsonData / secureJsonData keys of the ClickHouse plugin's provisioning documentation (v4).
CLICKHOUSE_JSON_KEYS = {
    "host", "port", "protocol", "secure", "username", "path", "defaultDatabase", "defaultTable",
    "configMode", "signalType", "tlsSkipVerify", "tlsAuth", "tlsAuthWithCACert", "dialTimeout",
    "queryTimeout", "connMaxLifetime", "maxIdleConns", "maxOpenConns", "validateSql",
    "enableRowLimit", "rowCapacityHint", "enableMapKeysDiscovery", "forwardGrafanaHeaders",
    "httpHeaders", "customSettings", "logs", "traces", "oauthPassThru",
    "oauthPassThruAllowFallback",
}  # fmt: skip
CLICKHOUSE_SECURE_KEYS = {"password", "tlsCACert", "tlsClientCert", "tlsClientKey"}
#: Names Grafana (and, in SQL, the ClickHouse plugin) provide without a dashboard variable.
BUILTINS = {
    "__interval", "__interval_ms", "__rate_interval", "__range", "__range_s", "__range_ms",
    "__from", "__to", "__dashboard", "__org", "__user", "__name", "__data", "__value", "__field",
    "__series", "__url_time_range", "__all_variables", "__timezone",
}  # fmt: skip
PLUGIN_MACROS = {
    "__timeFilter", "__timeFilter_ms", "__dateFilter", "__dateTimeFilter", "__dt", "__fromTime",
    "__toTime", "__fromTime_ms", "__toTime_ms", "__timeInterval", "__timeInterval_ms",
    "__interval_s", "__timeFrom", "__timeTo", "__timeGroup", "__conditionalAll",
}  # fmt: skip
FILTERS = ("agent", "channel", "model", "prompt_version")
#: Grafana's automatic interval for a 7-day range on a ~1000 px panel, before the panel minimum.
AUTO_INTERVAL_S = 600
NUMERIC_TYPE = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*|Bool)\)?$")
TEXT_TYPE = re.compile(r"^(Nullable\()?(LowCardinality\()?String\)?\)?$")
TIME_TYPE = re.compile(r"^(Nullable\()?DateTime(64)?(\(.*\))?\)?$")


def _load(path: Path) -> dict[str, Any]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


DASHBOARDS: dict[str, dict[str, Any]] = {path.name: _load(path) for path in DASHBOARD_FILES}


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in board["panels"]:
        yield item
        yield from item.get("panels", [])


@dataclass(frozen=True)
class Target:
    """One ClickHouse query of one panel."""

    board: dict[str, Any]
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def min_interval_s(self) -> int:
        found = re.fullmatch(r"(\d+)([smhd])", self.panel.get("interval", "0s"))
        assert found, self.panel.get("interval")
        return int(found.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]


CLICKHOUSE_TARGETS = [
    Target(board, item, target)
    for board in DASHBOARDS.values()
    for item in _panels(board)
    for target in item.get("targets", [])
    if target["datasource"]["type"] == CLICKHOUSE_TYPE
]


def _clickhouse_targets() -> list[Any]:
    return [
        pytest.param(
            query, id=f"{query.board['uid']}:{query.panel['title']}:{query.target['refId']}"
        )
        for query in CLICKHOUSE_TARGETS
    ]


def _clickhouse_variables() -> list[Any]:
    return [
        pytest.param(board, variable, id=f"{board['uid']}:{variable['name']}")
        for board in DASHBOARDS.values()
        for variable in board["templating"]["list"]
        if variable["type"] == "query" and variable["datasource"]["type"] == CLICKHOUSE_TYPE
    ]


def _by_title(uid: str, title: str) -> Target:
    for query in CLICKHOUSE_TARGETS:
        if query.board["uid"] == uid and query.panel["title"] == title:
            return query
    raise LookupError(f"{uid}: no ClickHouse panel {title!r}")


# ---- fixtures -----------------------------------------------------------------------------------


@dataclass
class Demo:
    """Demo data in a chDB store, the dashboard time range over it, and the variables' options."""

    store: ConversationStore
    registry: CollectorRegistry
    ctx: QueryContext
    options: dict[str, tuple[str, ...]]
    conversation_id: str

    def selections(self, scenario: str) -> dict[str, Selection]:
        """Variables as a user would set them: All, one value each, or two agents."""
        chosen: dict[str, Selection] = {}
        for name in FILTERS:
            options = self.options[name]
            values: tuple[str, ...] = (ALL,)
            if scenario == "one":
                values = options[:1]
            elif scenario == "several" and name == "agent":
                values = options[:2]
            chosen[name] = Selection(values, options, all_value=".*")
        chosen["conversation"] = Selection((self.conversation_id,), multi=False)
        chosen["trace_datasource"] = Selection(("tempo",), multi=False)
        return chosen

    def run(self, query: Target, scenario: str = "all") -> tuple[list[dict[str, str]], list[Any]]:
        """The query's (name, type) columns and rows, as the plugin would send it."""
        ctx = QueryContext(
            self.ctx.time_from,
            self.ctx.time_to,
            max(AUTO_INTERVAL_S, query.min_interval_s),
        )
        sql = prepare(query.target["rawSql"], self.selections(scenario), ctx)
        assert "$" not in sql, f"unexpanded variable or macro in:\n{sql}"
        columns = self.store.select(f"DESCRIBE TABLE ({sql})")
        return columns, self.store.select(sql)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """Two weeks of the demo fleet (week-over-week needs both), in this module's own store."""
    store = open_store(f"chdb://{tmp_path_factory.mktemp('grafana') / 'store'}")
    registry = CollectorRegistry()
    exporter = ConversationAnalyticsExporter(store, registry=registry)
    now = datetime.now(timezone.utc)
    try:
        run_demo(exporter, conversations=800, days=13, seed=7, now=now, progress=None)
        exporter.shutdown()
        # A whole-hour range ending after every event was stamped and inserted, so the rollup's
        # hourly buckets cover it exactly, as the report's window does.
        inserted = datetime.now(timezone.utc)
        end = inserted.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        ctx = QueryContext(end - timedelta(days=7), end, AUTO_INTERVAL_S)
        options: dict[str, tuple[str, ...]] = {}
        overview = DASHBOARDS["overview.json"]
        for variable in overview["templating"]["list"]:
            sql = prepare(variable["query"]["rawSql"], {}, ctx)
            options[variable["name"]] = tuple(row["value"] for row in store.select(sql))
        (busiest,) = store.select(
            "SELECT conversation_id FROM conversation_analytics.conversation_events "
            f"WHERE timestamp >= toDateTime({int(ctx.time_from.timestamp())}) "
            "GROUP BY conversation_id ORDER BY count() DESC, conversation_id LIMIT 1"
        )
        yield Demo(store, registry, ctx, options, busiest["conversation_id"])
    finally:
        exporter.shutdown()
        store.close()


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    return {source["uid"]: source for source in loaded["datasources"]}


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_dashboards", GRAFANA / "generate_dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- provisioning -------------------------------------------------------------------------------


def test_clickhouse_datasource_uses_the_plugins_documented_keys(
    datasources: dict[str, dict[str, Any]],
) -> None:
    """ClickHouse: fixed uid, the plugin's v4 keys only, credentials from the environment."""
    source = datasources["clickhouse"]
    assert source["type"] == CLICKHOUSE_TYPE
    json_data, secure = source["jsonData"], source["secureJsonData"]
    assert set(json_data) <= CLICKHOUSE_JSON_KEYS
    assert set(secure) <= CLICKHOUSE_SECURE_KEYS
    assert (json_data["host"], json_data["port"], json_data["protocol"]) == (
        "clickhouse",
        9000,
        "native",
    )
    assert json_data["defaultDatabase"] == "conversation_analytics"
    # Plugin 4.5 type-asserts the timeouts as strings: a YAML number would crash it.
    assert all(isinstance(json_data[key], str) for key in ("dialTimeout", "queryTimeout"))
    assert json_data["username"] == "${CLICKHOUSE_USER}"
    assert secure["password"] == "${CLICKHOUSE_PASSWORD}"


def test_prometheus_datasource_points_at_the_compose_service(
    datasources: dict[str, dict[str, Any]],
) -> None:
    """Prometheus: fixed uid, the docker-compose service's address."""
    source = datasources["prometheus"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert sum(bool(s.get("isDefault")) for s in datasources.values()) == 1


def test_dashboard_provider_loads_the_mounted_folder() -> None:
    """The file provider reads the folder docker-compose mounts the dashboards at."""
    loaded = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = loaded["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_MOUNT


# ---- structure ----------------------------------------------------------------------------------


def test_the_five_dashboards_exist_with_unique_stable_uids() -> None:
    """Overview, Drop-off, Compare, Conversations and Pipeline health, each with its own uid."""
    uids = [board["uid"] for board in DASHBOARDS.values()]
    assert sorted(uids) == sorted(
        ["ca-overview", "ca-dropoff", "ca-compare", "ca-conversations", "ca-pipeline"]
    )
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)
    assert len({board["title"] for board in DASHBOARDS.values()}) == len(DASHBOARDS)


def test_json_files_are_what_the_generator_writes(generator: ModuleType) -> None:
    """The committed JSON is the generator's output (edit the generator, then rerun it)."""
    rendered = generator.render()
    assert sorted(rendered) == [path.name for path in DASHBOARD_FILES]
    for path in DASHBOARD_FILES:
        assert path.read_text(encoding="utf-8") == rendered[path.name], (
            f"{path.name} is stale: run .venv/bin/python grafana/generate_dashboards.py"
        )


def _metric_names() -> set[str]:
    """Every metric name the exporter and the collector spell."""
    names = {
        value
        for key, value in vars(metrics).items()
        if key.isupper()
        and isinstance(value, str)
        and value.startswith(("agent_", "conversation_analytics_"))
    }
    return names | {REQUESTS_REJECTED}


def test_dashboard_modules_take_metric_names_from_the_names_module() -> None:
    """Only ``names.py`` refers to metric names (through the exporter's constants): no dashboard
    module spells one, so a renamed series cannot leave a panel querying the old name."""
    metric_names = _metric_names()
    assert metric_names >= {metrics.STARTED, metrics.BATCH_WRITE_SECONDS, REQUESTS_REJECTED}
    modules = sorted((GRAFANA / "dashboards_src").glob("*.py"))
    assert {path.name for path in modules} >= {
        "names.py", "queries.py", "panels.py", "overview.py", "dropoff.py", "compare.py",
        "conversations.py", "pipeline.py",
    }  # fmt: skip
    for path in [*modules, GRAFANA / "generate_dashboards.py"]:
        if path.name == "names.py":
            continue
        literals = [
            node.value
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
        spelled = {name for name in metric_names for text in literals if name in text}
        assert not spelled, f"{path.name} spells {sorted(spelled)}: take them from names.py"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_unique_ids_and_fit_the_grid(name: str) -> None:
    """Panel ids are unique within a dashboard and every panel lies on the 24-column grid."""
    panels = list(_panels(DASHBOARDS[name]))
    ids = [item["id"] for item in panels]
    assert len(ids) == len(set(ids))
    for item in panels:
        grid = item["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, item["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_time_range_and_refresh_are_set(name: str) -> None:
    """A relative default time range Grafana understands, ending now."""
    board = DASHBOARDS[name]
    assert re.fullmatch(r"now-\d+[mhdw]", board["time"]["from"])
    assert board["time"]["to"] == "now"
    assert board["refresh"]
    for item in _panels(board):
        if "timeFrom" in item:
            assert re.fullmatch(r"\d+[mhd]", item["timeFrom"]), item["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_datasource_is_provisioned(name: str, datasources: dict[str, dict[str, Any]]) -> None:
    """Every panel, query and variable names a provisioned data source uid of the right type."""
    board = DASHBOARDS[name]
    refs = [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
    for item in _panels(board):
        if item["type"] == "row":
            continue
        refs.append(item["datasource"])
        refs.extend(target["datasource"] for target in item["targets"])
        assert item["targets"], item["title"]
    for ref in refs:
        assert ref["uid"] in datasources, ref
        assert ref["type"] == datasources[ref["uid"]]["type"], ref


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_used_is_defined(name: str) -> None:
    """Queries, links and titles use only the dashboard's variables and Grafana's built-ins."""
    board = DASHBOARDS[name]
    defined = {variable["name"] for variable in board["templating"]["list"]}
    used = {
        next(group for group in match.groups() if group)
        for text in _strings([board["panels"], [v["query"] for v in board["templating"]["list"]]])
        for match in VARIABLE_SYNTAX.finditer(text)
    }
    unknown = used - defined - BUILTINS - PLUGIN_MACROS
    assert not unknown, f"undefined variables: {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_filter_variables_are_multi_select_with_all(name: str) -> None:
    """agent / channel / model / prompt_version: multi-select, All by default, on ClickHouse."""
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    if name == "pipeline.json":
        assert "instance" in variables
        return
    for filter_name in FILTERS:
        variable = variables[filter_name]
        assert variable["datasource"]["uid"] == "clickhouse"
        assert variable["multi"] and variable["includeAll"]
        assert variable["current"]["value"] == ["$__all"]
        assert variable["refresh"] == 2  # reloaded when the time range changes


@pytest.mark.parametrize("query", _clickhouse_targets())
def test_custom_all_values_never_reach_clickhouse(query: Target) -> None:
    """A filter variable appears in SQL only inside $__conditionalAll, which drops it on All."""
    sql = query.target["rawSql"]
    stripped = re.sub(
        r"\$__conditionalAll\(\w+ IN \(\$\{(\w+):singlequote\}\), \$(\w+)\)",
        lambda m: "" if m.group(1) == m.group(2) else m.group(0),
        sql,
    )
    for filter_name in FILTERS:
        assert f"${filter_name}" not in stripped and f"${{{filter_name}" not in stripped


# ---- Prometheus panels --------------------------------------------------------------------------

SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")


def _prometheus_exprs() -> list[Any]:
    return [
        pytest.param(target["expr"], id=f"{board['uid']}:{item['title']}:{target['refId']}")
        for board in DASHBOARDS.values()
        for item in _panels(board)
        for target in item.get("targets", [])
        if target["datasource"]["type"] == "prometheus"
    ]


def test_there_are_live_prometheus_panels_beside_the_history() -> None:
    """Overview, Drop-off, Compare and Pipeline health all show live Prometheus series."""
    for name in ("overview.json", "dropoff.json", "compare.json", "pipeline.json"):
        kinds = {
            target["datasource"]["type"]
            for item in _panels(DASHBOARDS[name])
            for target in item.get("targets", [])
        }
        assert "prometheus" in kinds, name


@pytest.mark.parametrize("expr", _prometheus_exprs())
def test_prometheus_queries_use_real_series_and_labels(expr: str, demo: Demo) -> None:
    """Every series a panel selects is exported, and filtered only by labels it carries."""
    labels: dict[str, set[str]] = {f"{REQUESTS_REJECTED}_total": {"reason"}}
    for family in demo.registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
        }[family.type]
        for suffix in suffixes:
            labels.setdefault(family.name + suffix, set())
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    selectors = SELECTOR.findall(expr)
    assert selectors, expr
    for metric, matchers in selectors:
        assert metric in labels, f"{metric} is not exported"
        used = {m.split("=")[0].strip().rstrip("!~") for m in matchers.split(",") if m}
        if labels[metric]:  # labelled series seen in the demo: the filters must exist on it
            assert used <= labels[metric] | {"instance", "job"}, (metric, used)
        for variable in re.findall(r'"\$(\w+)"', matchers):
            assert variable in (*FILTERS, "instance")


# ---- ClickHouse queries on real data ------------------------------------------------------------


@pytest.mark.parametrize("board, variable", _clickhouse_variables())
def test_variable_query_lists_values_from_the_data(
    board: dict[str, Any], variable: dict[str, Any], demo: Demo
) -> None:
    """Each filter variable's query returns one column of distinct, non-empty values."""
    sql = prepare(variable["query"]["rawSql"], {}, demo.ctx)
    rows = demo.store.select(sql)
    values = [row["value"] for row in rows]
    assert rows and all(list(row) == ["value"] for row in rows)
    assert len(values) == len(set(values)) and "" not in values
    assert tuple(values) == demo.options[variable["name"]]


def test_agent_variable_lists_the_demo_fleet(demo: Demo) -> None:
    """The agent variable offers the demo's two agents, the model one its four models."""
    assert demo.options["agent"] == ("research-assistant", "support-bot")
    assert len(demo.options["model"]) == 4
    assert demo.options["prompt_version"] == ("v1", "v2")


def _check_columns(query: Target, columns: list[dict[str, str]]) -> None:
    types = {column["name"]: column["type"] for column in columns}
    names = [column["name"] for column in columns]
    kind = query.panel["type"]
    if query.target["format"] == 0:  # time series: a time column, numbers, string labels
        assert names[0] == "time" and TIME_TYPE.match(types["time"]), columns
        values = [n for n in names[1:] if NUMERIC_TYPE.match(types[n])]
        labels = [n for n in names[1:] if TEXT_TYPE.match(types[n])]
        assert values and len(values) + len(labels) == len(names) - 1, columns
        return
    if kind == "stat":
        assert all(NUMERIC_TYPE.match(t) for t in types.values()), columns
    elif kind == "barchart":
        x_field = query.panel["options"]["xField"]
        assert names[0] == x_field and TEXT_TYPE.match(types[x_field]), columns
        assert all(NUMERIC_TYPE.match(types[n]) for n in names[1:]), columns
    needed = {
        rule["matcher"]["options"]
        for rule in query.panel["fieldConfig"]["overrides"]
        if rule["matcher"]["id"] == "byName"
    }
    needed |= set(re.findall(r"__data\.fields\.(\w+)", json.dumps(query.panel)))
    assert needed <= set(names), f"missing columns {sorted(needed - set(names))}"


@pytest.mark.parametrize("scenario", ["all", "one", "several"])
@pytest.mark.parametrize("query", _clickhouse_targets())
def test_clickhouse_query_runs_and_returns_its_panels_columns(
    query: Target, scenario: str, demo: Demo
) -> None:
    """The expanded query runs on chDB and returns the columns (and, on All, rows) it needs."""
    columns, rows = demo.run(query, scenario)
    _check_columns(query, columns)
    if scenario == "all":
        assert rows, "no rows over the demo data"
        if query.panel["type"] == "stat":
            assert len(rows) == 1


# ---- the numbers agree with the product's report ------------------------------------------------


def _stat_values(demo: Demo, uid: str, scenario: str = "all") -> dict[str, Any]:
    values: dict[str, Any] = {}
    for query in CLICKHOUSE_TARGETS:
        if query.board["uid"] == uid and query.panel["type"] == "stat":
            _, (row,) = demo.run(query, scenario)
            values.update(row)
    return values


def _report_days(demo: Demo) -> int:
    return round((demo.ctx.time_to - demo.ctx.time_from) / timedelta(days=1))


def test_overview_headline_numbers_equal_the_report(demo: Demo) -> None:
    """The Overview's stats are the report's section 4 numbers over the same window."""
    report = StoreReader(demo.store).report(_report_days(demo), now=demo.ctx.time_to).to_dict()
    values = _stat_values(demo, "ca-overview")
    assert set(values) == {
        "total_conversations", "completion_rate", "abandonment_rate", "handoff_rate",
        "avg_turns", "avg_duration_seconds", "avg_satisfaction", "rephrase_rate",
    }  # fmt: skip
    assert report["total_conversations"] > 0
    # Equal, not approximately: both round the same exact decimals half away from zero.
    assert values == {key: report[key] for key in values}


def test_agent_filter_gives_that_agents_report(demo: Demo) -> None:
    """With one agent selected, the Overview shows the report for that agent."""
    agent = demo.options["agent"][0]
    report = StoreReader(demo.store).report(_report_days(demo), now=demo.ctx.time_to, agent=agent)
    selection = {name: Selection(options=demo.options[name], all_value=".*") for name in FILTERS}
    selection["agent"] = Selection((agent,), demo.options["agent"], all_value=".*")
    query = _by_title("ca-overview", "Conversations")
    sql = prepare(query.target["rawSql"], selection, demo.ctx)
    (row,) = demo.store.select(sql)
    assert 0 < row["total_conversations"] == report.total_conversations


def test_abandonment_by_turn_is_the_reports_drop_off(demo: Demo) -> None:
    """Drop-off: abandoned events per turn equal the report's drop-off list."""
    report = StoreReader(demo.store).report(_report_days(demo), now=demo.ctx.time_to)
    _, rows = demo.run(_by_title("ca-dropoff", "Abandonment by turn"))
    counted = {row["turn"]: row["explicit"] + row["inferred"] for row in rows}
    assert report.drop_off
    for entry in report.drop_off:
        assert counted[str(entry.turn) if entry.turn is not None else "unknown"] == entry.count


def test_funnel_starts_with_every_conversation_and_shrinks(demo: Demo) -> None:
    """Turn 1 is reached by every conversation with a message; reach never grows with N."""
    total = _stat_values(demo, "ca-overview")["total_conversations"]
    _, rows = demo.run(_by_title("ca-dropoff", "Funnel by turn"))
    reached = [row["reached"] for row in rows]
    assert [row["turn"] for row in rows] == list(range(1, len(rows) + 1))
    assert reached[0] == total and rows[0]["reached_pct"] == 100
    assert reached == sorted(reached, reverse=True)
    for row in rows:
        ended = row["completed_here"] + row["abandoned_here"]
        assert ended <= row["ended_here"] + row["handed_off_here"]


def test_just_before_leaving_accounts_for_every_abandonment(demo: Demo) -> None:
    """Every abandoned conversation appears once, explicit or inferred, with its last tool."""
    abandoned = _stat_values(demo, "ca-dropoff")["abandoned"]
    _, rows = demo.run(_by_title("ca-dropoff", "Just before people left"))
    assert sum(row["abandoned"] for row in rows) == abandoned > 0
    assert all(row["explicit"] + row["inferred"] == row["abandoned"] for row in rows)
    assert {row["handoff"] for row in rows} <= {"yes", "no"}
    assert any(row["last_tool"] != "(no tool)" for row in rows)


#: The report's exit kinds as the drop-off panel names a last event (its raw event type).
_PANEL_EVENT = {
    ExitKind.HANDOFF_REQUEST: ConversationEvent.HANDOFF_REQUESTED,
    ExitKind.AGENT_RESPONSE: ConversationEvent.AGENT_RESPONSE,
    ExitKind.TOOL_ERROR: ConversationEvent.TOOL_CALLED,
    ExitKind.TOOL_CALL: ConversationEvent.TOOL_CALLED,
    ExitKind.REPHRASE: ConversationEvent.USER_MESSAGE,
    ExitKind.USER_MESSAGE: ConversationEvent.USER_MESSAGE,
    ExitKind.STARTED: ConversationEvent.STARTED,
}


def test_report_exit_context_agrees_with_just_before_leaving(demo: Demo) -> None:
    """The report's ``exit_context`` and the "Just before people left" panel count the same
    abandoned conversations by last event and by last tool (and its failure), where their
    definitions overlap: the report splits tool calls and user messages finer."""
    context = StoreReader(demo.store).report(_report_days(demo), now=demo.ctx.time_to).exit_context
    _, rows = demo.run(_by_title("ca-dropoff", "Just before people left"))
    assert len(rows) < 20, "the panel's LIMIT cut rows off: compare on more data differently"
    assert sum(row["abandoned"] for row in rows) == context.abandoned > 0
    panel_events: dict[str, int] = {}
    panel_tools: dict[tuple[str | None, bool], int] = {}
    for row in rows:
        panel_events[row["last_event"]] = panel_events.get(row["last_event"], 0) + row["abandoned"]
        tool = row["last_tool"]
        key = (
            (None, False)
            if tool == "(no tool)"
            else (tool.split(" (failed: ")[0], "(failed: " in tool)
        )
        panel_tools[key] = panel_tools.get(key, 0) + row["abandoned"]
    report_events: dict[str, int] = {}
    for entry in context.last_event:
        event = _PANEL_EVENT[ExitKind(entry.kind)].value
        report_events[event] = report_events.get(event, 0) + entry.conversations
    assert report_events == panel_events
    assert {(t.tool, t.failed): t.conversations for t in context.last_tool} == panel_tools


def test_compare_by_agent_equals_the_reports_breakdown(demo: Demo) -> None:
    """Compare's per-agent rows are the report's per-agent numbers, with week-over-week."""
    report = StoreReader(demo.store).report(_report_days(demo), now=demo.ctx.time_to)
    _, rows = demo.run(_by_title("ca-compare", "By agent"))
    by_agent = {row["agent"]: row for row in rows}
    assert set(by_agent) == {entry.agent for entry in report.agents}
    for entry in report.agents:
        row = by_agent[entry.agent]
        assert row["conversations"] == entry.total_conversations
        keys = ("completion_rate", "abandonment_rate", "handoff_rate", "avg_turns")
        keys += ("avg_duration_seconds", "avg_satisfaction")
        assert {key: row[key] for key in keys} == {key: getattr(entry, key) for key in keys}
        assert row["completion_last_week"] is not None  # two weeks of demo data
        assert row["completion_wow_pts"] == pytest.approx(
            row["completion_this_week"] - row["completion_last_week"], abs=1e-9
        )


def _run_for_agent(demo: Demo, query: Target, agent: str) -> list[Any]:
    """The query's rows with only the agent filter set (the others on All)."""
    selection = {name: Selection(options=demo.options[name], all_value=".*") for name in FILTERS}
    selection["agent"] = Selection((agent,), demo.options["agent"], all_value=".*")
    return demo.store.select(prepare(query.target["rawSql"], selection, demo.ctx))


def _assert_survival_table(rows: list[Any], survival: list[Any]) -> None:
    assert [row["turn"] for row in rows] == [step.turn for step in survival]
    for row, step in zip(rows, survival, strict=True):
        counts = (row["at_risk"], row["abandoned"], row["censored"])
        assert counts == (step.at_risk, step.abandoned, step.censored), step
        assert row["survival"] == pytest.approx(step.survival, abs=1e-9), step


def test_kaplan_meier_table_is_the_reports_survival(demo: Demo) -> None:
    """Drop-off's Kaplan-Meier table is the report's ``survival``, step by step: the same
    per-conversation durations (the store's SQL), counts exact, the product to 1e-9; and with
    one agent selected, that agent's curve."""
    reader = StoreReader(demo.store)
    report = reader.report(_report_days(demo), now=demo.ctx.time_to)
    query = _by_title("ca-dropoff", "Kaplan–Meier by turn")
    _, rows = demo.run(query)
    assert len(report.survival) > 3 and 0 < report.survival[-1].survival < 1
    assert any(step.censored for step in report.survival)
    _assert_survival_table(rows, report.survival)
    agent = demo.options["agent"][0]
    (entry,) = [a for a in report.agents if a.agent == agent]
    _assert_survival_table(_run_for_agent(demo, query, agent), entry.survival)


def test_survival_chart_steps_through_every_turn(demo: Demo) -> None:
    """The chart has a bar at every turn 1..N (N the longest duration, at most 30), each the
    report's survival at the last step at or before it (1 before the first)."""
    report = StoreReader(demo.store).report(_report_days(demo), now=demo.ctx.time_to)
    _, rows = demo.run(_by_title("ca-dropoff", "Still here after turn N (Kaplan–Meier)"))
    last = min(report.survival[-1].turn, 30)
    assert [row["turn"] for row in rows] == [str(turn) for turn in range(1, last + 1)]
    for row in rows:
        steps = [step.survival for step in report.survival if step.turn <= int(row["turn"])]
        assert row["survival"] == pytest.approx(steps[-1] if steps else 1.0, abs=1e-9), row


@pytest.mark.parametrize(
    "name, key, by",
    [
        ("prompt version", "prompt_version", "prompt_version"),
        ("agent", "agent", "agent"),
        # The dashboards' model is the response model, else the request model; every demo
        # conversation has a response model, so this is ``compare --by response_model``.
        ("model", "model", "response_model"),
    ],
)
def test_compare_intervals_equal_the_cli_compare(demo: Demo, name: str, key: str, by: str) -> None:
    """The interval tables are ``compare --by``: the same groups in the same order (baseline
    first), counts and completion rate, Wilson bounds to the last decimal, the difference from
    the baseline exactly and its p-value to 1e-12, and the same verdict."""
    comparison = StoreReader(demo.store).compare(by, _report_days(demo), now=demo.ctx.time_to)
    _, rows = demo.run(_by_title("ca-compare", f"Completion by {name} with 95% intervals"))
    groups = comparison.groups
    assert len(groups) >= 2 and groups[0].value == comparison.baseline
    assert [row[key] for row in rows] == [group.value or "(none)" for group in groups]
    for row, group in zip(rows, groups, strict=True):
        assert (row["conversations"], row["completed"]) == (group.conversations, group.completed)
        assert row["completion_rate"] == group.completion_rate
        assert group.completion_ci is not None
        assert [row["completion_low"], row["completion_high"]] == group.completion_ci
        assert row["completion_ci"] == "{:.1f} - {:.1f}".format(*group.completion_ci)
        versus = group.vs_baseline
        if versus is None:
            assert row["completion_diff_pts"] is None and row["completion_p_value"] is None
            assert row["verdict"] == "baseline"
            continue
        assert row["completion_diff_pts"] == versus.completion_diff
        assert row["completion_p_value"] == pytest.approx(versus.completion_p_value, rel=1e-12)
        expected = "significant" if versus.significant else "not significant"
        assert row["verdict"] == ("too few conversations" if versus.note else expected)


def test_interval_and_test_sql_are_the_clis_statistics(demo: Demo, generator: ModuleType) -> None:
    """The Wilson bounds and the z-test's p-value in SQL, on counts the demo lacks (tiny groups,
    0 % and 100 %, large ones): the bounds equal the CLI's rounded ones exactly, the p-value to
    1e-12 (1 where the pooled variance is 0)."""
    queries = importlib.import_module("dashboards_src.queries")
    assert generator.DASHBOARDS  # the package is importable beside the generator script
    cases = [(s, t) for t in (*range(1, 41), 99, 100, 1000, 12345) for s in range(t + 1)]
    cases = [(s, t) for s, t in cases if t <= 100 or s % 97 in (0, 1) or s == t]
    low, high = queries.wilson_percent("s", "t")
    p_value = queries.two_proportion_p_value("s", "t", "bs", "bt")
    pairs = ", ".join(f"({s}, {t}, {t // 2}, {(t + 1) // 2 or 1})" for s, t in cases)
    rows = demo.store.select(
        f"""SELECT s, t, bs, bt, {low} AS low, {high} AS high, {p_value} AS p_value
FROM (SELECT arrayJoin([{pairs}]) AS c, toUInt64(c.1) AS s, toUInt64(c.2) AS t,
      toUInt64(c.3) AS bs, toUInt64(c.4) AS bt)"""
    )
    assert len(rows) == len(cases)
    for row in rows:
        s, t, bs, bt = (int(row[name]) for name in ("s", "t", "bs", "bt"))
        interval = wilson_interval(s, t)
        assert interval is not None
        expected = [round_half_up(bound * 100, 1) for bound in interval]
        assert [float(row["low"]), float(row["high"])] == expected, (s, t)
        test = two_proportion_z_test(s, t, min(bs, bt), bt)
        assert test is not None
        assert float(row["p_value"]) == pytest.approx(test.p_value, rel=1e-12, abs=1e-300), row


def test_worst_conversations_are_sorted_and_link_to_the_timeline(demo: Demo) -> None:
    """Lowest satisfaction first; the id links to this dashboard with the conversation set."""
    query = _by_title("ca-conversations", "Lowest satisfaction")
    _, rows = demo.run(query)
    scores = [row["satisfaction"] for row in rows]
    assert scores == sorted(scores) and len(rows) == 50
    (link,) = next(
        rule["properties"][-1]["value"]
        for rule in query.panel["fieldConfig"]["overrides"]
        if rule["matcher"]["options"] == "conversation_id"
    )
    assert link["url"].startswith("/d/ca-conversations/")
    assert "var-conversation=${__value.raw}" in link["url"]


def test_conversation_summary_and_timeline_match_the_store(demo: Demo) -> None:
    """The selected conversation's satisfaction and events are the store's, with trace ids."""
    detail = StoreReader(demo.store).conversation(demo.conversation_id)
    _, (summary,) = demo.run(_by_title("ca-conversations", "Summary"))
    assert summary["conversation_id"] == demo.conversation_id
    assert summary["satisfaction"] == pytest.approx(detail.satisfaction, abs=0.001)
    _, timeline = demo.run(_by_title("ca-conversations", "Timeline"))
    assert [row["event"] for row in timeline] == [e["event_type"] for e in detail.events]
    assert all(re.fullmatch(r"[0-9a-f]{32}", row["trace_id"]) for row in timeline)


def test_timeline_links_each_trace_id_to_explore(demo: Demo) -> None:
    """The trace id opens Explore on the configurable trace data source with that trace."""
    query = _by_title("ca-conversations", "Timeline")
    (link,) = next(
        rule["properties"][-1]["value"]
        for rule in query.panel["fieldConfig"]["overrides"]
        if rule["matcher"]["options"] == "trace_id"
    )
    assert link["url"].startswith("/explore?")
    assert "${trace_datasource}" in link["url"] and "${__value.raw}" in link["url"]
    variables = {v["name"]: v for v in query.board["templating"]["list"]}
    assert variables["trace_datasource"]["query"] == "tempo"
