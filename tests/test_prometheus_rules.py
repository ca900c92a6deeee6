"""Prometheus configuration, recording and alert rules, checked by promtool from Debian's package.

``promtool test rules`` runs the unit tests in ``prometheus/tests/``: every alert fires on the
failure it names and stays quiet on healthy traffic, on too little traffic and on no traffic.
The checks below also make sure those unit tests exist for every alert, that every alert carries
the annotations and runbook an on-call engineer needs, and that the rules read only series the
exporter really exports, aggregated to bounded labels.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from prometheus_client import CollectorRegistry

from opentelemetry.exporter.conversation_analytics.collector.service import REQUESTS_REJECTED
from opentelemetry.exporter.conversation_analytics.metrics import ConversationMetrics
from prometheus_server import (
    CONFIG_FILE,
    INSTALL_HINT,
    ROOT,
    RULE_FILES,
    RULE_TEST_FILES,
    Rule,
    binary,
    load_rules,
)

RULES: Final = load_rules()
ALERTS: Final = [rule for rule in RULES if rule.is_alert]
RECORDS: Final = [rule for rule in RULES if not rule.is_alert]
#: Labels rules may aggregate or match on: bounded by the exporter (agent, tool) or by the
#: deployment (job, instance), plus histogram buckets and drop reasons.
BOUNDED_LABELS: Final = frozenset({"agent", "tool", "job", "instance", "reason", "le"})
SEVERITIES: Final = frozenset({"critical", "warning"})
#: An alert that fires precisely when there is no data.
FIRES_WITHOUT_DATA: Final = frozenset({"ConversationAnalyticsMetricsAbsent"})
#: Unit-test groups whose name starts with this feed no conversation or pipeline series.
NO_TRAFFIC: Final = "no traffic"
PROMTOOL_TIMEOUT: Final = 300
_IDENTIFIER: Final = re.compile(r"(?<![\w:])([A-Za-z_][A-Za-z0-9_]*)(?![\w:])")
_GROUPING: Final = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_OUR_PREFIXES: Final = ("agent_", "conversation_analytics_")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = binary("promtool")
    if found is None:
        pytest.skip(INSTALL_HINT)
    return found


def run_promtool(promtool: str, *args: str | Path, cwd: Path = ROOT) -> None:
    """Run promtool; fail with its output unless it succeeds."""
    completed = subprocess.run(
        [promtool, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, (
        f"promtool {' '.join(map(str, args))} exited {completed.returncode}:\n"
        f"{completed.stdout}\n{completed.stderr}"
    )


# ---- promtool ------------------------------------------------------------------------------------


def test_prometheus_config_is_valid(promtool: str) -> None:
    """prometheus.yml and the rule files it loads pass `promtool check config`."""
    run_promtool(promtool, "check", "config", CONFIG_FILE)


def test_config_loads_every_rule_file() -> None:
    """prometheus.yml loads every rule file, by a path relative to itself (the compose mount)."""
    config = yaml.safe_load(CONFIG_FILE.read_text())
    loaded = {(CONFIG_FILE.parent / name).resolve() for name in config["rule_files"]}
    assert loaded == {path.resolve() for path in RULE_FILES}
    assert all(not Path(name).is_absolute() for name in config["rule_files"])


def test_config_scrapes_the_collector() -> None:
    """The scrape job targets the collector's metrics port, the job name CollectorDown matches."""
    config = yaml.safe_load(CONFIG_FILE.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "conversation-analytics"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (targets,) = [static["targets"] for static in job["static_configs"]]
    assert targets == ["conversation-analytics:9464"]
    down = next(rule for rule in ALERTS if rule.name == "ConversationAnalyticsCollectorDown")
    assert f'job="{job["job_name"]}"' in down.expr


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda path: path.name)
def test_rule_file_is_valid(promtool: str, rule_file: Path) -> None:
    """Each rule file passes `promtool check rules` (syntax, PromQL, duplicate rules)."""
    run_promtool(promtool, "check", "rules", rule_file)


@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=lambda path: path.name)
def test_rule_unit_tests_pass(promtool: str, test_file: Path) -> None:
    """Each unit-test file passes `promtool test rules`: alerts fire and stay quiet as expected."""
    run_promtool(promtool, "test", "rules", test_file.name, cwd=test_file.parent)


# ---- every alert is unit-tested both ways --------------------------------------------------------


@dataclass(frozen=True)
class AlertCase:
    """One `alert_rule_test` entry of a promtool unit-test file."""

    alertname: str
    fires: bool
    with_traffic: bool
    where: str


def _is_no_traffic(group: dict[str, Any]) -> bool:
    """A test group named "no traffic…": it feeds no conversation or pipeline series."""
    if not str(group.get("name", "")).startswith(NO_TRAFFIC):
        return False
    fed = [series["series"] for series in group.get("input_series") or []]
    assert not [name for name in fed if name.startswith(_OUR_PREFIXES)], group["name"]
    return True


def _alert_cases() -> Iterator[AlertCase]:
    for path in RULE_TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test") or []:
                yield AlertCase(
                    alertname=case["alertname"],
                    fires=bool(case.get("exp_alerts")),
                    with_traffic=not _is_no_traffic(group),
                    where=f"{path.name}: {group.get('name')} @ {case['eval_time']}",
                )


ALERT_CASES: Final = list(_alert_cases())


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule.name)
def test_alert_is_unit_tested_firing_and_quiet(alert: Rule) -> None:
    """Each alert has unit tests where it fires, stays quiet on traffic, and on no traffic.

    Only the alert about missing metrics fires without data, which is its point.
    """
    cases = [case for case in ALERT_CASES if case.alertname == alert.name]
    assert any(case.fires for case in cases), f"{alert.name}: no unit test where it fires"
    assert any(not case.fires and case.with_traffic for case in cases), (
        f"{alert.name}: no unit test where it stays quiet on traffic"
    )
    without_traffic = [case for case in cases if not case.with_traffic]
    assert without_traffic, f"{alert.name}: no unit test without traffic"
    if alert.name in FIRES_WITHOUT_DATA:
        assert any(case.fires for case in without_traffic), without_traffic
    else:
        assert not any(case.fires for case in without_traffic), without_traffic


def test_unit_tests_name_only_existing_alerts() -> None:
    """Every alertname in the unit tests is an alert of the rule files (no silent typos)."""
    names = {rule.name for rule in ALERTS}
    assert {case.alertname for case in ALERT_CASES} <= names


# ---- what each alert carries ---------------------------------------------------------------------


def _github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule.name)
def test_alert_has_severity_summary_description_and_runbook(alert: Rule) -> None:
    """Each alert has a severity, a summary, a description and a runbook link that resolves."""
    assert alert.raw.get("labels", {}).get("severity") in SEVERITIES
    annotations = alert.raw.get("annotations", {})
    assert annotations.get("summary", "").strip()
    assert annotations.get("description", "").strip()
    runbook = annotations.get("runbook_url", "")
    path, _, anchor = runbook.partition("#")
    document = ROOT / path
    assert document.is_file(), f"{alert.name}: runbook {runbook!r} is not a file of the repo"
    anchors = {
        _github_anchor(line.lstrip("#"))
        for line in document.read_text().splitlines()
        if line.startswith("#")
    }
    assert anchor in anchors, f"{alert.name}: no heading for #{anchor} in {path}"
    assert anchor == _github_anchor(alert.name), "the runbook section is named after the alert"


# ---- what the rules read -------------------------------------------------------------------------


def _exported_series() -> set[str]:
    """Series names the exporter and the collector service can expose."""
    registry = CollectorRegistry()
    ConversationMetrics(registry)
    names = {f"{REQUESTS_REJECTED}_total"}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


EXPORTED: Final = _exported_series()


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_rule_reads_only_exported_series(rule: Rule) -> None:
    """Every raw series a rule reads is one the exporter or the collector really exports."""
    read = {name for name in _IDENTIFIER.findall(rule.expr) if name.startswith(_OUR_PREFIXES)}
    assert read <= EXPORTED, f"{rule.name} reads unknown series {sorted(read - EXPORTED)}"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_rule_aggregates_to_bounded_labels(rule: Rule) -> None:
    """Rules group and match only on bounded labels: never conversation or user ids."""
    for labels in _GROUPING.findall(rule.expr):
        used = {label.strip() for label in labels.split(",") if label.strip()}
        assert used <= BOUNDED_LABELS, f"{rule.name} groups by {sorted(used - BOUNDED_LABELS)}"
    assert "conversation_id" not in rule.expr
    assert "user_id" not in rule.expr


@pytest.mark.parametrize("rule", RECORDS, ids=lambda rule: rule.name)
def test_recording_rule_is_named_level_metric_operation(rule: Rule) -> None:
    """Recording rules follow Prometheus' level:metric:operation naming."""
    level, metric, operation = rule.name.split(":")
    assert level in {"agent", "agent_tool", "instance", "slo"}
    assert metric
    assert operation
