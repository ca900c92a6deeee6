"""``conversation-analytics``: demo, report, conversation and schema, run as real processes."""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from collector_process import CollectorProcess, start_collector
from opentelemetry.exporter.conversation_analytics.store import DEFAULT_STORE_URL, MAX_DAYS
from opentelemetry.exporter.conversation_analytics.store.url import ENV_STORE

CLI = (sys.executable, "-m", "opentelemetry.exporter.conversation_analytics.cli")
SPEC_KEYS = {
    "total_conversations",
    "completion_rate",
    "abandonment_rate",
    "handoff_rate",
    "avg_turns",
    "avg_duration_seconds",
    "drop_off",
}
EXTRA_KEYS = {
    "avg_satisfaction",
    "rephrase_rate",
    "days",
    "agents",
    "evaluations",
    "survival",
    "reached_turn",
    "daily",
    "satisfaction_distribution",
    "exit_context",
    "tool_lift",
}
RATE_KEYS = ("completion_rate", "abandonment_rate", "handoff_rate")
DEMO_AGENTS = {"support-bot", "research-assistant"}
DEMO_CONVERSATIONS = 200
BASE = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


def cli_env() -> dict[str, str]:
    """The test's environment without any store or key the developer may have configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATION_ANALYTICS_")}
    env["CONVERSATION_ANALYTICS_USER_ID_KEY"] = "cli-test-key"
    return env


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env(),
        timeout=300,
        check=False,
    )


@dataclass(frozen=True)
class DemoRun:
    store_url: str
    cwd: Path
    done: subprocess.CompletedProcess[str]

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.done.stdout)
        return data


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One seeded demo of 200 conversations into a fresh embedded store, JSON report on stdout."""
    cwd = tmp_path_factory.mktemp("demo")
    store_url = f"chdb://{cwd / 'store'}"
    done = run_cli(
        "demo",
        "--store", store_url,
        "--seed", "42",
        "--conversations", str(DEMO_CONVERSATIONS),
        "--metrics-port", "-1",
        "--format", "json",
        cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return DemoRun(store_url, cwd, done)


# ---- demo and report ----------------------------------------------------------------------------


def test_demo_reports_spec_keys_and_sane_values(demo: DemoRun) -> None:
    """The demo's JSON report has exactly the SPEC keys plus the documented extras, all in range."""
    report = demo.report
    assert set(report) == SPEC_KEYS | EXTRA_KEYS
    assert report["total_conversations"] == DEMO_CONVERSATIONS
    for key in RATE_KEYS:
        assert 0.0 <= report[key] <= 100.0, key
    assert report["avg_turns"] >= 1.0  # every simulated conversation has a first user message
    assert report["avg_duration_seconds"] > 0
    assert 0.0 <= report["avg_satisfaction"] <= 1.0
    assert report["days"] == 7
    context = report["exit_context"]
    assert sum(entry["conversations"] for entry in context["last_event"]) == context["abandoned"]


def test_demo_drop_off_is_turn_count_pairs_most_frequent_first(demo: DemoRun) -> None:
    """``drop_off`` is a list of ``{"turn", "count"}`` ordered by count, within 10 entries."""
    drop_off = demo.report["drop_off"]
    assert drop_off, "200 simulated conversations include abandoned ones"
    assert len(drop_off) <= 10
    for entry in drop_off:
        assert set(entry) == {"turn", "count"}
        assert isinstance(entry["turn"], int)
        assert isinstance(entry["count"], int)
        assert entry["turn"] >= 1
        assert entry["count"] >= 1
    counts = [entry["count"] for entry in drop_off]
    assert counts == sorted(counts, reverse=True)
    # All abandoned conversations carry a turn; top 10 can only hide some of them.
    abandoned = round(demo.report["abandonment_rate"] * DEMO_CONVERSATIONS / 100)
    assert sum(counts) <= abandoned


def test_demo_survival_is_a_non_increasing_curve_over_all_conversations(demo: DemoRun) -> None:
    """Every simulated conversation has a user message, so all are at risk at the first turn;
    the curve only falls, and each turn's at-risk count is the previous one's minus its exits."""
    survival = demo.report["survival"]
    assert survival[0]["at_risk"] == DEMO_CONVERSATIONS
    for before, after in itertools.pairwise(survival):
        assert after["survival"] <= before["survival"]
        assert after["at_risk"] == before["at_risk"] - before["abandoned"] - before["censored"]
    last = survival[-1]
    assert last["abandoned"] + last["censored"] == last["at_risk"]


def test_demo_per_agent_rows_add_up(demo: DemoRun) -> None:
    """Both demo agents are reported, and their conversations sum to the total."""
    agents = demo.report["agents"]
    assert {a["agent"] for a in agents} == DEMO_AGENTS
    assert sum(a["total_conversations"] for a in agents) == DEMO_CONVERSATIONS


def test_demo_shows_progress_on_stderr_only(demo: DemoRun) -> None:
    """Progress goes to stderr, so stdout is exactly the JSON document."""
    assert f"Simulating {DEMO_CONVERSATIONS} conversations" in demo.done.stderr
    assert f"{DEMO_CONVERSATIONS}/{DEMO_CONVERSATIONS} conversations" in demo.done.stderr
    assert "simulating" not in demo.done.stdout
    json.loads(demo.done.stdout)


def test_report_in_a_new_process_matches_the_demo(demo: DemoRun) -> None:
    """The demo's events persisted: ``report`` in another process gives the same numbers."""
    done = run_cli("report", "--format", "json", "--store", demo.store_url, cwd=demo.cwd)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == demo.report


@pytest.mark.parametrize("agent", sorted(DEMO_AGENTS))
def test_report_agent_filter_matches_the_breakdown(demo: DemoRun, agent: str) -> None:
    """``report --agent`` gives the same numbers as that agent's row of the breakdown."""
    done = run_cli(
        "report", "--agent", agent, "--format", "json", "--store", demo.store_url, cwd=demo.cwd
    )
    assert done.returncode == 0, done.stderr
    filtered = json.loads(done.stdout)
    (row,) = [a for a in demo.report["agents"] if a["agent"] == agent]
    for key, value in row.items():
        if key != "agent":
            assert filtered[key] == value, key


def test_report_table_shows_the_per_agent_section(demo: DemoRun) -> None:
    """The table format shows the totals and a per-agent section naming both demo agents."""
    done = run_cli("report", "--store", demo.store_url, cwd=demo.cwd)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(rf"Conversations\s+{DEMO_CONVERSATIONS}\b", out)
    assert re.search(rf"Completion rate\s+{demo.report['completion_rate']}%", out)
    assert "Per agent" in out
    per_agent = out[out.index("Per agent") :]
    for agent in DEMO_AGENTS:
        assert agent in per_agent


def test_report_on_an_empty_store_has_no_numbers(store_url: str, tmp_path: Path) -> None:
    """With no events the report says 0 conversations and null rates (the article's NULLs)."""
    assert run_cli("schema", "--apply", "--store", store_url, cwd=tmp_path).returncode == 0
    done = run_cli("report", "--format", "json", "--store", store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no conversations in the last 7 days" in done.stderr
    report = json.loads(done.stdout)
    assert report["total_conversations"] == 0
    assert report["drop_off"] == []
    assert report["agents"] == []
    for key in (*RATE_KEYS, "avg_turns", "avg_duration_seconds"):
        assert report[key] is None, key


def _metric_sum(text: str, name: str) -> float:
    """Sum of every sample of one series in Prometheus text format."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


class RunningDemo:
    """A ``demo`` process serving /metrics, with its stderr read line by line in a thread."""

    def __init__(self, cwd: Path, conversations: int, serve: float) -> None:
        self.conversations = conversations
        self.proc = subprocess.Popen(
            [
                *CLI, "demo",
                "--store", f"chdb://{cwd / 'store'}",
                "--seed", "3",
                "--conversations", str(conversations),
                "--metrics-port", "0",
                "--serve", str(serve),
                "--format", "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=cli_env(),
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        """The first stderr line (progress lines included) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            found = re.search(pattern, line)
            if found:
                return found

    def metrics(self, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text: str = response.read().decode()
        return text

    def finish(self) -> dict[str, Any]:
        """Stop the --serve wait (Ctrl-C), expect exit 0, and return the JSON report."""
        self.proc.send_signal(signal.SIGINT)
        return self.report()

    def report(self) -> dict[str, Any]:
        """Wait for a clean exit and return the JSON report from stdout."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        assert self.proc.wait(timeout=300) == 0
        report: dict[str, Any] = json.loads(out)
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[[int, float], RunningDemo]]:
    started: list[RunningDemo] = []

    def start(conversations: int, serve: float) -> RunningDemo:
        started.append(RunningDemo(tmp_path, conversations, serve))
        return started[-1]

    yield start
    for running in started:
        running.kill()


PORT_LINE = r"Prometheus metrics at http://127\.0\.0\.1:(\d+)/metrics"


def test_demo_serves_metrics_while_simulating(
    start_demo: Callable[[int, float], RunningDemo],
) -> None:
    """``demo --metrics-port 0`` serves /metrics on the port it prints, during the simulation."""
    demo = start_demo(1500, 0)
    port = int(demo.wait_for(PORT_LINE).group(1))
    assert port > 0
    text = demo.metrics(port)
    assert "conversation_analytics_events_received_total" in text
    assert 0 <= _metric_sum(text, "agent_conversations_started_total") <= demo.conversations
    assert demo.report()["total_conversations"] == demo.conversations


def test_demo_serve_keeps_metrics_up_after_the_report(
    start_demo: Callable[[int, float], RunningDemo],
) -> None:
    """``demo --serve`` keeps /metrics up after the report, counting every conversation."""
    demo = start_demo(40, 120)
    port = int(demo.wait_for(PORT_LINE).group(1))
    demo.wait_for(r"^serving /metrics")
    text = demo.metrics(port)
    assert _metric_sum(text, "agent_conversations_started_total") == demo.conversations
    finished = _metric_sum(text, "agent_conversations_completed_total") + _metric_sum(
        text, "agent_conversations_abandoned_total"
    )
    assert 0 < finished <= demo.conversations
    assert demo.finish()["total_conversations"] == demo.conversations


# ---- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "--days", "0"), f"--days must be between 1 and {MAX_DAYS}, got 0"),
        (("report", "--days", "-3"), f"--days must be between 1 and {MAX_DAYS}, got -3"),
        (("report", "--format", "xml"), "invalid choice"),
        (("report", "--store", "mysql://db/x"), "unsupported store URL scheme 'mysql'"),
        (("conversation", "c1", "--store", "ftp://x"), "unsupported store URL scheme 'ftp'"),
        (("demo", "--conversations", "0"), "must be a positive integer"),
        (("schema", "--cluster", "prod; DROP TABLE x"), "not a valid ClickHouse identifier"),
        (("schema", "--ttl-days", "-1"), "ttl_days"),
        ((), "required"),
    ],
    ids=[
        "days-zero",
        "days-negative",
        "bad-format",
        "bad-scheme",
        "bad-scheme-conversation",
        "zero-conversations",
        "hostile-cluster",
        "negative-ttl",
        "no-command",
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """Bad arguments and unsupported store URLs exit 2 with one clear line, no traceback."""
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "error" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / ".conversation-analytics").exists()


# ---- conversation -------------------------------------------------------------------------------


def _at(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


# Each conversation's events in time order as (seconds, event_type, metadata), and its satisfaction
# by SPEC section 4's formula, worked out by hand.
CONVERSATIONS: dict[str, tuple[list[tuple[int, str, dict[str, Any]]], float]] = {
    # 2 messages, completed, 1 positive: signals 1.0 and 0.9 -> 0.95.
    "quick-win": (
        [
            (0, "started", {"channel": "web"}),
            (5, "user_message", {"turn": 1}),
            (7, "agent_response", {"turn": 1}),
            (9, "user_message", {"turn": 2}),
            (11, "agent_response", {"turn": 2}),
            (15, "feedback_received", {"rating": "positive"}),
            (16, "completed", {"total_turns": 2}),
        ],
        0.95,
    ),
    # 4 messages, handoff, 1 negative, not completed: 0.0, 0.3 and 0.8 - 0.1 = 0.7 -> 1.0 / 3.
    "escalated": (
        [
            (0, "started", {}),
            (1, "user_message", {"turn": 1}),
            (2, "user_message", {"turn": 2}),
            (3, "tool_called", {"turn": 2, "tool_name": "search_kb"}),
            (4, "user_message", {"turn": 3}),
            (5, "user_message", {"turn": 4}),
            (6, "handoff_requested", {"turn": 4, "reason": "angry"}),
            (7, "feedback_received", {"rating": "negative"}),
        ],
        1.0 / 3.0,
    ),
    # 5 messages, completed, no handoff: no outcome signal; 0.8 - 0.2 = 0.6 -> 0.6.
    "long-haul": (
        [
            (0, "started", {}),
            *[(10 * t, "user_message", {"turn": t}) for t in range(1, 6)],
            (60, "completed", {"total_turns": 5}),
        ],
        0.6,
    ),
    # 1 message, abandoned: only "not completed" 0.1.
    "walked-away": (
        [
            (0, "started", {}),
            (3, "user_message", {"turn": 1}),
            (100, "abandoned", {"abandoned_at_turn": 1, "inferred": True}),
        ],
        0.1,
    ),
}


@pytest.fixture
def imported(store_url: str, tmp_path: Path) -> str:
    """:data:`CONVERSATIONS` imported by the CLI, lines shuffled out of time order."""
    records = [
        {
            "id": f"{cid}-{n}",
            "conversation_id": cid,
            "user_id": f"user-of-{cid}",
            "event_type": kind,
            "timestamp": _at(seconds),
            "metadata": meta,
        }
        for cid, (events, _) in CONVERSATIONS.items()
        for n, (seconds, kind, meta) in enumerate(events)
    ]
    records.reverse()  # newest first: the store, not the file, must give the order
    path = tmp_path / "conversations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    done = run_cli("import", str(path), "--store", store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return store_url


@pytest.mark.parametrize("cid", list(CONVERSATIONS))
def test_conversation_json_has_ordered_events_and_satisfaction(
    imported: str, tmp_path: Path, cid: str
) -> None:
    """``conversation ID --format json`` lists the events oldest first with their satisfaction."""
    events, satisfaction = CONVERSATIONS[cid]
    done = run_cli("conversation", cid, "--format", "json", "--store", imported, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    detail = json.loads(done.stdout)
    assert detail["conversation_id"] == cid
    assert detail["satisfaction"] == pytest.approx(satisfaction)
    assert [e["event_type"] for e in detail["events"]] == [kind for _, kind, _ in events]
    assert [e["event_id"] for e in detail["events"]] == [f"{cid}-{n}" for n in range(len(events))]
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in detail["events"]]
    assert stamps == [BASE + timedelta(seconds=seconds) for seconds, _, _ in events]
    assert all(e["user_id"] != f"user-of-{cid}" for e in detail["events"])


def test_report_over_imported_conversations(imported: str, tmp_path: Path) -> None:
    """The report over the four imported conversations gives the hand-computed numbers."""
    done = run_cli("report", "--format", "json", "--store", imported, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # completed: quick-win, long-haul (2/4); abandoned: walked-away (1/4); handoff: escalated
    # (1/4); messages 2 + 4 + 5 + 1 = 12 over 4 = 3.0; durations 16 s and 60 s -> 38.
    assert {key: report[key] for key in SPEC_KEYS} == {
        "total_conversations": 4,
        "completion_rate": 50.0,
        "abandonment_rate": 25.0,
        "handoff_rate": 25.0,
        "avg_turns": 3.0,
        "avg_duration_seconds": 38,
        "drop_off": [{"turn": 1, "count": 1}],
    }
    expected = sum(score for _, score in CONVERSATIONS.values()) / len(CONVERSATIONS)
    assert report["avg_satisfaction"] == pytest.approx(expected, abs=0.0005)


def test_conversation_table_format(imported: str, tmp_path: Path) -> None:
    """The table format names the conversation, its satisfaction and each event."""
    done = run_cli("conversation", "quick-win", "--store", imported, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "quick-win" in done.stdout
    assert "satisfaction 0.950" in done.stdout
    for kind in ("started", "user_message", "feedback_received", "completed"):
        assert kind in done.stdout


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_unknown_conversation_exits_1(imported: str, tmp_path: Path, fmt: str) -> None:
    """An id with no events exits 1 with the API's 404 message, and prints no conversation."""
    done = run_cli("conversation", "no-such-id", "--format", fmt, "--store", imported, cwd=tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr
        == "conversation-analytics conversation: error: unknown conversation 'no-such-id'\n"
    )
    assert done.stdout == ""


# ---- schema -------------------------------------------------------------------------------------


def test_schema_prints_single_node_ddl(tmp_path: Path) -> None:
    """``schema`` prints the single-node DDL: tables and the rollup view, no cluster clauses."""
    done = run_cli("schema", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ddl = done.stdout
    assert "CREATE TABLE IF NOT EXISTS" in ddl
    assert "CREATE MATERIALIZED VIEW IF NOT EXISTS" in ddl
    assert "ReplacingMergeTree()" in ddl
    assert "AggregatingMergeTree()" in ddl
    for absent in ("ON CLUSTER", "Replicated", "Distributed", "TTL"):
        assert absent not in ddl
    assert not (tmp_path / ".conversation-analytics").exists()


def test_schema_cluster_prints_replicated_ddl(tmp_path: Path) -> None:
    """``schema --cluster prod`` adds ON CLUSTER, replicated engines and Distributed tables."""
    done = run_cli("schema", "--cluster", "prod", "--ttl-days", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ddl = done.stdout
    statements = [s for s in ddl.split(";") if s.strip()]
    assert all("ON CLUSTER `prod`" in s for s in statements)
    assert "ReplicatedReplacingMergeTree(" in ddl
    assert "ReplicatedAggregatingMergeTree(" in ddl
    assert ddl.count("ENGINE = Distributed(`prod`") == 3  # events, rollup, abandonments
    assert "INTERVAL 30 DAY" in ddl


def test_schema_apply_is_idempotent(store_url: str, tmp_path: Path) -> None:
    """``schema --apply`` succeeds twice on one store, and the store then answers reports."""
    for _ in range(2):
        done = run_cli("schema", "--apply", "--store", store_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "schema applied" in done.stdout
    done = run_cli("report", "--format", "json", "--store", store_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total_conversations"] == 0


def test_schema_apply_keeps_existing_events(imported: str, tmp_path: Path) -> None:
    """Re-applying the schema to a store with data leaves the data and its numbers as they were."""
    before = run_cli("report", "--format", "json", "--store", imported, cwd=tmp_path).stdout
    done = run_cli("schema", "--apply", "--store", imported, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = run_cli("report", "--format", "json", "--store", imported, cwd=tmp_path).stdout
    assert json.loads(after) == json.loads(before)
    assert json.loads(after)["total_conversations"] == len(CONVERSATIONS)


def test_version(tmp_path: Path) -> None:
    """``--version`` prints a version and exits 0."""
    done = run_cli("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert re.fullmatch(r"\d+\.\d+\S*\n", done.stdout)


class TestInfer:
    """``infer``: one-shot abandonment inference over a store, as cron or a CronJob runs it."""

    def _import(self, store_url: str, tmp_path: Path) -> None:
        def event(cid: str, n: int, seconds: int, kind: str, **meta: Any) -> dict[str, Any]:
            return {
                "id": f"{cid}-{n}",
                "conversation_id": cid,
                "user_id": "u",
                "event_type": kind,
                "timestamp": _at(seconds),
                "metadata": meta,
            }

        records = [
            # Left after two user messages, 3 hours ago: abandoned at turn 2.
            event("gone", 0, 0, "started"),
            event("gone", 1, 1, "user_message", turn=1),
            event("gone", 2, 2, "agent_response", turn=1),
            event("gone", 3, 3, "user_message", turn=2),
            # Completed: an outcome, never inferred.
            event("done", 0, 0, "started"),
            event("done", 1, 1, "user_message", turn=1),
            event("done", 2, 2, "completed", total_turns=1),
            # Handed off then silent: a human took over, not an abandonment.
            event("human", 0, 0, "started"),
            event("human", 1, 1, "user_message", turn=1),
            event("human", 2, 2, "handoff_requested", reason="billing"),
        ]
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        assert run_cli("import", str(path), "--store", store_url, cwd=tmp_path).returncode == 0

    def _abandoned(self, store_url: str, tmp_path: Path, cid: str) -> list[dict[str, Any]]:
        done = run_cli("conversation", cid, "--format", "json", "--store", store_url, cwd=tmp_path)
        events = json.loads(done.stdout)["events"]
        return [e for e in events if e["event_type"] == "abandoned"]

    def test_infers_once_and_only_without_outcome(self, store_url: str, tmp_path: Path) -> None:
        """The idle conversation is abandoned at its last user turn; a rerun adds nothing;
        completed and handed-off conversations are left alone."""
        self._import(store_url, tmp_path)
        first = run_cli("infer", "--store", store_url, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("inferred 1 abandoned conversations")
        again = run_cli("infer", "--store", store_url, cwd=tmp_path)
        assert again.stdout.startswith("inferred 0 abandoned conversations")
        [abandoned] = self._abandoned(store_url, tmp_path, "gone")
        assert abandoned["abandoned_at_turn"] == 2 and abandoned["abandon_inferred"] is True
        assert self._abandoned(store_url, tmp_path, "done") == []
        assert self._abandoned(store_url, tmp_path, "human") == []
        report = run_cli("report", "--format", "json", "--store", store_url, cwd=tmp_path)
        assert json.loads(report.stdout)["abandonment_rate"] == 33.3

    def test_as_of_before_the_timeout_infers_nothing(self, store_url: str, tmp_path: Path) -> None:
        """--as-of moves "now": ten minutes after the last activity nothing is idle yet."""
        self._import(store_url, tmp_path)
        early = (BASE + timedelta(minutes=10)).isoformat()
        done = run_cli("infer", "--as-of", early, "--store", store_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("inferred 0 abandoned conversations")
        assert self._abandoned(store_url, tmp_path, "gone") == []

    @pytest.mark.parametrize(
        ("flag", "value", "message"),
        [
            ("--idle-timeout", "0", "must be a positive integer"),
            ("--as-of", "yesterday", "not an ISO 8601 time"),
        ],
    )
    def test_bad_input_is_a_usage_error(
        self, store_url: str, tmp_path: Path, flag: str, value: str, message: str
    ) -> None:
        """A bad flag value exits 2 with a plain message and touches no store."""
        done = run_cli("infer", flag, value, "--store", store_url, cwd=tmp_path)
        assert done.returncode == 2
        assert message in done.stderr


class TestFeedback:
    """``feedback ID positive|negative``: a rating that arrives after the conversation."""

    def _one_conversation(self, store_url: str, tmp_path: Path) -> None:
        records = [
            {"id": "c-0", "conversation_id": "late", "user_id": "u", "event_type": "started",
             "timestamp": _at(0), "metadata": {"agent": "bot"}},
            {"id": "c-1", "conversation_id": "late", "user_id": "u",
             "event_type": "user_message", "timestamp": _at(1), "metadata": {"agent": "bot"}},
            {"id": "c-2", "conversation_id": "late", "user_id": "u", "event_type": "completed",
             "timestamp": _at(2), "metadata": {"agent": "bot"}},
        ]  # fmt: skip
        path = tmp_path / "one.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        assert run_cli("import", str(path), "--store", store_url, cwd=tmp_path).returncode == 0

    def _detail(self, store_url: str, tmp_path: Path) -> dict[str, Any]:
        done = run_cli(
            "conversation", "late", "--format", "json", "--store", store_url, cwd=tmp_path
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def test_late_rating_counts_once_per_id(self, store_url: str, tmp_path: Path) -> None:
        """A negative rating joins the conversation's satisfaction (0.9 -> mean of 0.9 and 0.0)
        under its agent; the same --id twice is stored once."""
        self._one_conversation(store_url, tmp_path)
        assert self._detail(store_url, tmp_path)["satisfaction"] == pytest.approx(0.9)
        for _ in range(2):
            done = run_cli(
                "feedback", "late", "negative", "--id", "fb-1", "--user-id", "rater@example.com",
                "--store", store_url, cwd=tmp_path,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        detail = self._detail(store_url, tmp_path)
        ratings = [e for e in detail["events"] if e["event_type"] == "feedback_received"]
        assert len(ratings) == 1
        assert ratings[0]["feedback_rating"] == "negative" and ratings[0]["agent_name"] == "bot"
        assert "example.com" not in json.dumps(detail)
        assert detail["satisfaction"] == pytest.approx(0.45)

    def test_unknown_conversation_fails(self, store_url: str, tmp_path: Path) -> None:
        """Feedback for a conversation the store has never seen exits 1 and says so."""
        self._one_conversation(store_url, tmp_path)
        done = run_cli("feedback", "nobody", "positive", "--store", store_url, cwd=tmp_path)
        assert done.returncode == 1
        assert "unknown conversation 'nobody'" in done.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["late", "meh"], "invalid choice"),
            (["late", "positive", "--score", "7"], "must be between 0 and 1"),
        ],
    )
    def test_bad_input_is_a_usage_error(
        self, store_url: str, tmp_path: Path, args: list[str], message: str
    ) -> None:
        """A bad rating or score exits 2 with a plain message."""
        done = run_cli("feedback", *args, "--store", store_url, cwd=tmp_path)
        assert done.returncode == 2
        assert message in done.stderr


#: Every event type, as ``import`` lists them for a line with a bad one (written out: the
#: message is for people, so the test states it rather than rebuilding it from the enum).
ACCEPTED_EVENT_TYPES = (
    "started, user_message, agent_response, tool_called, handoff_requested, feedback_received, "
    "completed, abandoned"
)


class TestBadInput:
    """Bad input gets one plain line in the user's terms and a clear exit code, never a
    traceback, an engine error or a silently empty answer."""

    @pytest.fixture
    def owned(self, store_url: str, tmp_path: Path) -> Iterator[CollectorProcess]:
        """A real collector subprocess owning the embedded store (its ``collector.json`` in it)."""
        collector = start_collector(store_url, tmp_path / "collector.log")
        yield collector
        collector.stop()

    @staticmethod
    def _one_line_error(done: subprocess.CompletedProcess[str], command: str) -> str:
        """The single ``error:`` line the command printed, asserting there is nothing else."""
        assert "Traceback" not in done.stderr, done.stderr
        lines = [line for line in done.stderr.splitlines() if not line.startswith(("usage:", " "))]
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"conversation-analytics {command}: error: "), done.stderr
        return lines[0]

    @pytest.mark.parametrize(
        ("days", "message"),
        [
            ("100000000", f"--days must be between 1 and {MAX_DAYS}, got 100000000"),
            (str(MAX_DAYS + 1), f"--days must be between 1 and {MAX_DAYS}, got {MAX_DAYS + 1}"),
            ("9" * 5000, f"--days must be between 1 and {MAX_DAYS}, got 999"),
            ("abc", "--days must be a whole number of days, got 'abc'"),
            ("1.5", "--days must be a whole number of days, got '1.5'"),
        ],
        ids=["huge", "just-over", "thousands-of-digits", "word", "fraction"],
    )
    @pytest.mark.parametrize("command", ["report", "demo"])
    def test_days_outside_the_window_or_not_a_number_is_a_usage_error(
        self, store_url: str, tmp_path: Path, command: str, days: str, message: str
    ) -> None:
        """--days that is not a whole number in 1..MAX_DAYS exits 2 and says why in the flag's
        terms; no store is opened or created."""
        done = run_cli(command, "--days", days, "--store", store_url, cwd=tmp_path)
        assert done.returncode == 2
        assert message in self._one_line_error(done, command)
        assert done.stdout == ""
        assert not Path(store_url.removeprefix("chdb://")).exists()

    @pytest.mark.parametrize("days", ["1", str(MAX_DAYS)])
    def test_widest_and_narrowest_windows_answer(
        self, imported: str, tmp_path: Path, days: str
    ) -> None:
        """The bounds of --days are valid windows: the report answers with every conversation."""
        done = run_cli(
            "report", "--days", days, "--format", "json", "--store", imported, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["total_conversations"] == len(CONVERSATIONS)

    @pytest.mark.parametrize(
        "args",
        [("report",), ("conversation", "c1"), ("feedback", "c1", "positive"), ("infer",)],
        ids=["report", "conversation", "feedback", "infer"],
    )
    @pytest.mark.parametrize("where", ["missing-dirs", "empty-dir", "default"])
    def test_reading_a_store_that_does_not_exist_fails_and_creates_nothing(
        self, tmp_path: Path, args: tuple[str, ...], where: str
    ) -> None:
        """Reading a store nobody wrote (missing directories, an empty directory, or the default
        store in a fresh directory) exits 1 with "no store at DIR" and creates nothing."""
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        if where == "default":
            missing, store_args = cwd / DEFAULT_STORE_URL.removeprefix("chdb://"), ()
        else:
            missing = tmp_path / "nonexistent" / "dir" / "store"
            if where == "empty-dir":
                missing.mkdir(parents=True)
            store_args = ("--store", f"chdb://{missing}")
        done = run_cli(*args, *store_args, cwd=cwd)
        assert done.returncode == 1
        assert f"no store at {missing} " in self._one_line_error(done, args[0])
        assert done.stdout == ""
        if where == "empty-dir":
            assert list(missing.iterdir()) == []
        else:
            assert not missing.exists()
            assert not (tmp_path / "nonexistent").exists()
        assert list(cwd.iterdir()) == []

    def test_writing_creates_a_store_that_does_not_exist(self, tmp_path: Path) -> None:
        """``import`` still creates a missing store (and its directories); reads then see it."""
        store_url = f"chdb://{tmp_path / 'new' / 'nested' / 'store'}"
        path = tmp_path / "one.jsonl"
        record = {"conversation_id": "c1", "event_type": "started", "timestamp": _at(0)}
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        assert run_cli("import", str(path), "--store", store_url, cwd=tmp_path).returncode == 0
        done = run_cli("report", "--format", "json", "--store", store_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["total_conversations"] == 1

    @pytest.mark.parametrize("route", ["discovered", "--collector"])
    def test_unknown_conversation_through_a_collector_exits_1(
        self, owned: CollectorProcess, tmp_path: Path, route: str
    ) -> None:
        """Through a running collector (found from the store, or named) an unknown id exits 1
        with the message the API's 404 carries."""
        args = (
            ("--store", owned.store_url)
            if route == "discovered"
            else ("--collector", owned.api_url)
        )
        reply = owned.get("/api/v1/conversation?id=nobody")
        assert reply.status == 404
        done = run_cli("conversation", "nobody", *args, cwd=tmp_path)
        assert done.returncode == 1
        assert self._one_line_error(done, "conversation").endswith(f": {reply.json()['error']}")
        assert reply.json()["error"] == "unknown conversation 'nobody'"
        assert done.stdout == ""

    @pytest.mark.parametrize(
        "args",
        [
            ("import", "{file}"),
            ("demo", "--conversations", "1", "--metrics-port", "-1"),
            ("feedback", "c1", "positive"),
            ("infer",),
            ("schema", "--apply"),
            ("collector",),
        ],
        ids=["import", "demo", "feedback", "infer", "schema", "collector"],
    )
    def test_store_owned_by_a_collector_is_refused_with_what_to_do(
        self, owned: CollectorProcess, tmp_path: Path, args: tuple[str, ...]
    ) -> None:
        """A command that must open an embedded store a collector owns exits 1 naming the
        collector (pid) and how to read through it (--collector URL): no engine errors."""
        path = tmp_path / "one.jsonl"
        path.write_text('{"conversation_id": "c1", "event_type": "started", "timestamp": 0}\n')
        argv = [arg.format(file=path) for arg in args]
        done = run_cli(*argv, "--store", owned.store_url, cwd=tmp_path)
        assert done.returncode == 1
        line = self._one_line_error(done, args[0])
        assert f"a running collector (pid {owned.pid}) owns the embedded store" in line
        assert f"(--collector {owned.api_url})" in line
        for engine_noise in ("Code: ", "Cannot lock", "EmbeddedServer"):
            assert engine_noise not in done.stderr
        assert owned.get("/readyz").status == 200

    def test_store_locked_by_another_process_is_a_plain_error(
        self, store: object, store_url: str, tmp_path: Path
    ) -> None:
        """An embedded store another process holds (here: this test's own chDB, no collector)
        is one line saying so, for writes and reads alike, without chDB's lock errors."""
        path = tmp_path / "one.jsonl"
        path.write_text('{"conversation_id": "c1", "event_type": "started", "timestamp": 0}\n')
        for args in (("import", str(path)), ("report",)):
            done = run_cli(*args, "--store", store_url, cwd=tmp_path)
            assert done.returncode == 1
            assert "is in use by another process" in self._one_line_error(done, args[0])
            for engine_noise in ("Code: ", "Cannot lock", "EmbeddedServer"):
                assert engine_noise not in done.stderr

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            (
                '{"conversation_id": "c9", "event_type": "started"',
                "not valid JSON (Expecting ',' delimiter)",
            ),
            (
                '{"conversation_id": "c9",',
                "not valid JSON (Expecting property name enclosed in double quotes)",
            ),
            (
                '{"conversation_id": "c9", "event_type": "exploded", "timestamp": 0}',
                f"unknown event_type 'exploded' (accepted: {ACCEPTED_EVENT_TYPES})",
            ),
            (
                '{"conversation_id": "c9", "timestamp": 0}',
                f"event_type is missing (accepted: {ACCEPTED_EVENT_TYPES})",
            ),
        ],
        ids=["truncated", "cut-after-comma", "unknown-event-type", "no-event-type"],
    )
    def test_import_names_what_is_wrong_with_a_line_in_the_files_terms(
        self, store_url: str, tmp_path: Path, line: str, message: str
    ) -> None:
        """A bad line is reported as FILE:LINE with what is wrong, not the JSON parser's own
        line and column; an unknown event type lists the accepted ones."""
        path = tmp_path / "events.jsonl"
        good = json.dumps({"conversation_id": "c1", "event_type": "started", "timestamp": _at(0)})
        path.write_text(f"{good}\n{line}\n{good}\n", encoding="utf-8")
        done = run_cli("import", str(path), "--store", store_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stderr == f"{path}:2: skipped: {message}\n"
        assert "column" not in done.stderr

    def test_unreachable_clickhouse_is_one_clear_line(self, tmp_path: Path) -> None:
        """A ClickHouse server that refuses the connection gives our one error line with the
        cause, not clickhouse-connect's stray "Unexpected Http Driver Exception" before it."""
        import socket

        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
            port = closed.getsockname()[1]
            done = run_cli(
                "report", "--store", f"clickhouse://u:pw@127.0.0.1:{port}/db", cwd=tmp_path
            )
        assert done.returncode == 1
        assert done.stderr == (
            f"conversation-analytics report: error: cannot reach ClickHouse at 127.0.0.1:{port}: "
            "Connection refused\n"
        )

    def test_collector_help_shows_the_real_store_default(self, tmp_path: Path) -> None:
        """``collector --help`` shows the store the collector opens by default, not ``''``."""
        done = run_cli("collector", "--help", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        text = " ".join(done.stdout.split())  # argparse wraps at the terminal's width
        assert f"--store STORE (env {ENV_STORE}; default {DEFAULT_STORE_URL})" in text
        assert "default '')" not in text

    @pytest.mark.parametrize("fmt", ["json", "table"])
    def test_agent_filter_matching_nothing_says_so(
        self, imported: str, tmp_path: Path, fmt: str
    ) -> None:
        """``report --agent NAME`` that matches nothing still exits 0 with the (empty) report on
        stdout, and says on stderr that the agent had no conversations, naming those that did."""
        everyone = json.loads(
            run_cli("report", "--format", "json", "--store", imported, cwd=tmp_path).stdout
        )
        agents = [row["agent"] for row in everyone["agents"]]
        assert agents
        done = run_cli(
            "report", "--agent", "nobody", "--format", fmt, "--store", imported, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == (
            "no conversations for agent 'nobody' in the last 7 days "
            f"(agents with conversations: {', '.join(sorted(agents))})\n"
        )
        if fmt == "json":
            assert json.loads(done.stdout)["total_conversations"] == 0
        matched = run_cli("report", "--agent", agents[0], "--store", imported, cwd=tmp_path)
        assert matched.returncode == 0 and matched.stderr == ""
