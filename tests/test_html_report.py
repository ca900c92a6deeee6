"""``report --format html``: the CLI in a subprocess over a real chDB store, the page loaded in
real headless Debian chromium (DOM dump, screenshot, network log), every table number checked
against ``report --format json`` and ``compare --format json``."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collector_process import cli_json, run_cli
from opentelemetry.exporter.conversation_analytics.analytics import (
    ASSISTANT_COMPLETION_TARGET,
    SUPPORT_COMPLETION_TARGET,
    Comparison,
    Report,
    round_half_up,
)
from opentelemetry.exporter.conversation_analytics.html_report import (
    CONTENT_SECURITY_POLICY,
    NO_DATA,
    p_text,
    render_html,
)
from opentelemetry.exporter.conversation_analytics.store import open_store
from synthetic import Plan, random_plans, rows

HOSTILE = "<script>alert(1)</script>"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
#: Conversations on each of the last few days, two agents (one with a hostile name).
DAYS_BACK = 5
PLANS: list[Plan] = []
_rng = random.Random(12)
for _back in range(DAYS_BACK):
    PLANS += random_plans(
        _rng, 40, f"s{_back}", completion=0.75 - 0.04 * _back, agent="support-bot"
    )
    PLANS += random_plans(_rng, 25, f"h{_back}", completion=0.5, agent=HOSTILE)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--hide-scrollbars",
)
#: Requests chromium makes for itself (updates, dictionaries) carry no page origin.
BROWSER_INITIATOR = "not an origin"


def chromium() -> str:
    """Debian's chromium, or a failure saying how to get it (a core test: never skipped)."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: install Debian's chromium "
            "(apt-get install --no-install-recommends chromium; .ci/run does it)"
        )
    return path


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def page_requests(net_log: Path) -> list[str]:
    """Every http(s) URL in the network log requested on a page's behalf."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        url = str(params.get("url", ""))
        page = params.get("initiator") != BROWSER_INITIATOR
        if event["type"] == start and page and re.match(r"https?://", url):
            urls.append(url)
    return urls


class _Tables(HTMLParser):
    """Every table of a page by id: rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(str(dict(attrs).get("id")), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(dom: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(dom)
    return parser.tables


def shown(value: Any) -> str:
    """A JSON number as the page must show it."""
    return NO_DATA if value is None else str(value)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The planned conversations, one batch per day back, in a closed store."""
    url = f"chdb://{tmp_path_factory.mktemp('html') / 'store'}"
    store = open_store(url)
    try:
        per_day = len(PLANS) // DAYS_BACK
        for back in range(DAYS_BACK):
            batch = PLANS[back * per_day : (back + 1) * per_day]
            store.insert(rows(batch, NOW - timedelta(days=back, minutes=30)))
    finally:
        store.close()
    return url


@pytest.fixture(scope="module")
def rendered(written: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The page (written by ``--output``), its JSON twins, and chromium's DOM and net log."""
    work = tmp_path_factory.mktemp("page")
    page = work / "report.html"
    run_cli("report", "--store", written, "--format", "html", "--output", str(page))
    net_log = work / "net.json"
    dom = run_chromium(page, work / "profile", f"--log-net-log={net_log}", "--dump-dom").stdout
    return {
        "page": page,
        "html": page.read_text(encoding="utf-8"),
        "dom": dom,
        "net_log": net_log,
        "report": cli_json("report", "--store", written),
        "compare": cli_json("compare", "--by", "agent", "--store", written),
        "work": work,
    }


class TestReportJson:
    """The report's new keys: ``daily`` and ``satisfaction_distribution``."""

    def test_daily_counts_every_conversation_once(self, rendered: dict[str, Any]) -> None:
        """Each planned day has its conversations; the days add up to the total."""
        report = rendered["report"]
        daily = report["daily"]
        assert sum(day["conversations"] for day in daily) == report["total_conversations"]
        assert report["total_conversations"] == len(PLANS)
        assert [day["day"] for day in daily] == sorted(day["day"] for day in daily)
        for day in daily:
            assert set(day) >= {"day", "conversations", "completion_rate", "abandonment_rate"}
            exact = Decimal(day["completed"] * 100) / Decimal(day["conversations"])
            assert day["completion_rate"] == round_half_up(exact, 1)

    def test_distribution_matches_the_plans(self, rendered: dict[str, Any]) -> None:
        """Ten bins of 0.1; each holds the planned conversations whose exact score is in it."""
        expected = [0] * 10
        for plan in PLANS:
            score = Fraction(plan.satisfaction).limit_denominator(1000)
            expected[min(9, math.floor(score * 10))] += 1
        bins = rendered["report"]["satisfaction_distribution"]
        assert [entry["conversations"] for entry in bins] == expected
        assert [(entry["bin_start"], entry["bin_end"]) for entry in bins] == [
            (i / 10, (i + 1) / 10) for i in range(10)
        ]

    def test_round_trips_through_from_dict(self, rendered: dict[str, Any]) -> None:
        """A report read back from JSON (the collector client's path) keeps both series."""
        report = rendered["report"]
        assert Report.from_dict(report).to_dict() == report


class TestPageInChromium:
    """The page loaded in real headless chromium."""

    def test_renders_every_table(self, rendered: dict[str, Any]) -> None:
        """The DOM has the five sections' tables, each with rows."""
        found = tables(rendered["dom"])
        for table_id in (
            "trend-table",
            "survival-table",
            "compare-table",
            "distribution-table",
            "dropoff-table",
        ):
            assert len(found.get(table_id, [])) > 1, table_id

    def test_trend_table_equals_the_json(self, rendered: dict[str, Any]) -> None:
        """Every number of the per-day table is the JSON's."""
        body = tables(rendered["dom"])["trend-table"][1:]
        expected = [
            [
                day["day"],
                str(day["conversations"]),
                str(day["completed"]),
                str(day["abandoned"]),
                shown(day["completion_rate"]),
                shown(day["abandonment_rate"]),
            ]
            for day in rendered["report"]["daily"]
        ]
        assert body == expected

    def test_survival_table_equals_the_json(self, rendered: dict[str, Any]) -> None:
        """Turn, reached, at risk, abandoned, censored and survival % are the JSON's."""
        report = rendered["report"]
        reached = {step["turn"]: step["conversations"] for step in report["reached_turn"]}
        body = tables(rendered["dom"])["survival-table"][1:]
        expected = [
            [
                str(step["turn"]),
                str(reached[step["turn"]]),
                str(step["at_risk"]),
                str(step["abandoned"]),
                str(step["censored"]),
                str(round_half_up(step["survival"] * 100, 1)),
            ]
            for step in report["survival"]
        ]
        assert body == expected and expected

    def test_compare_table_equals_the_json(self, rendered: dict[str, Any]) -> None:
        """Every group's rates, intervals, satisfaction and test are ``compare``'s."""
        body = tables(rendered["dom"])["compare-table"][1:]

        def bounds(interval: Sequence[float] | None) -> list[str]:
            return [NO_DATA, NO_DATA] if interval is None else [str(b) for b in interval]

        expected = []
        for group in rendered["compare"]["groups"]:
            versus = group["vs_baseline"]
            if versus is None:
                verdict = ["baseline", NO_DATA, ""]
            else:
                called = "significant" if versus["significant"] else "not significant"
                if versus["note"] and not versus["significant"]:
                    called = "too few"
                verdict = [
                    shown(versus["completion_diff"]),
                    p_text(versus["completion_p_value"]),
                    called,
                ]
            expected.append(
                [
                    group["value"],
                    str(group["conversations"]),
                    shown(group["completion_rate"]),
                    *bounds(group["completion_ci"]),
                    shown(group["abandonment_rate"]),
                    *bounds(group["abandonment_ci"]),
                    shown(group["avg_satisfaction"]),
                    *bounds(group["satisfaction_ci"]),
                    *verdict,
                ]
            )
        assert body == expected
        assert {row[0] for row in body} == {"support-bot", HOSTILE}

    def test_distribution_table_equals_the_json(self, rendered: dict[str, Any]) -> None:
        """Each bin's bounds and count are the JSON's."""
        body = tables(rendered["dom"])["distribution-table"][1:]
        expected = [
            [str(entry["bin_start"]), str(entry["bin_end"]), str(entry["conversations"])]
            for entry in rendered["report"]["satisfaction_distribution"]
        ]
        assert body == expected

    def test_dropoff_table_equals_the_json(self, rendered: dict[str, Any]) -> None:
        """Without ``exit_context`` the drop-off is where people leave."""
        body = tables(rendered["dom"])["dropoff-table"][1:]
        expected = [
            [shown(entry["turn"]), str(entry["count"])] for entry in rendered["report"]["drop_off"]
        ]
        assert body == expected and expected

    def test_makes_no_network_request(self, rendered: dict[str, Any]) -> None:
        """Chromium's net log has no http(s) request on the page's behalf."""
        assert page_requests(rendered["net_log"]) == []

    def test_the_net_log_check_sees_a_page_request(self, tmp_path: Path) -> None:
        """Control: a page that loads an image from a loopback server is caught."""
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            page = tmp_path / "leaky.html"
            port = server.server_address[1]
            page.write_text(f'<img src="http://127.0.0.1:{port}/pixel.png">', encoding="utf-8")
            net_log = tmp_path / "net.json"
            run_chromium(page, tmp_path / "profile", f"--log-net-log={net_log}", "--dump-dom")
        finally:
            server.shutdown()
            server.server_close()
        assert hits == ["/pixel.png"]
        assert page_requests(net_log) == [f"http://127.0.0.1:{port}/pixel.png"]

    def test_screenshot(self, rendered: dict[str, Any]) -> None:
        """Chromium paints the page to a PNG (the README's screenshot comes this way)."""
        shot = rendered["work"] / "report.png"
        run_chromium(
            rendered["page"],
            rendered["work"] / "profile-shot",
            f"--screenshot={shot}",
            "--window-size=1280,2400",
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000  # more than a blank page


class TestSelfContained:
    """The file itself: nothing to fetch, nothing to run."""

    def test_no_script_and_no_remote_reference(self, rendered: dict[str, Any]) -> None:
        """No ``<script``, no http(s) src/href, no ``@import``, no ``url(`` but data:."""
        text = rendered["html"]
        assert "<script" not in text.lower()
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
        assert "http://" not in text and "https://" not in text
        assert "@import" not in text.lower()
        assert all(m.startswith("data:") for m in re.findall(r"url\(\s*['\"]?([^)'\"]*)", text))

    def test_strict_content_security_policy(self, rendered: dict[str, Any]) -> None:
        """The page tells the browser to load nothing but inline styles and data: images."""
        assert CONTENT_SECURITY_POLICY == (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        )
        assert (
            '<meta http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;; '
            'style-src &#x27;unsafe-inline&#x27;; img-src data:">' in rendered["html"]
        )

    def test_targets_come_from_analytics(self, rendered: dict[str, Any]) -> None:
        """The bands named are the article's, from the one place they are spelled."""
        text = rendered["html"]
        for low, high in (SUPPORT_COMPLETION_TARGET, ASSISTANT_COMPLETION_TARGET):
            assert f"{low}–{high}%" in text


class TestHostileNames:
    """Agent names are user data: they render as text."""

    def test_script_name_is_escaped(self, rendered: dict[str, Any]) -> None:
        """The hostile name appears escaped in the file and as text in chromium's DOM."""
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered["html"]
        assert "<script" not in rendered["dom"].lower()
        compare = tables(rendered["dom"])["compare-table"]
        assert any(row[0] == HOSTILE for row in compare)

    def test_exit_tables_equal_the_json(self, rendered: dict[str, Any]) -> None:
        """The last step and last tool tables are the report's ``exit_context``."""
        context = rendered["report"]["exit_context"]
        found = tables(rendered["dom"])
        assert context["abandoned"] > 0
        assert found["exit-table"][1:] == [
            [entry["kind"], str(entry["conversations"]), shown(entry["share"])]
            for entry in context["last_event"]
        ]
        assert found["exit-tool-table"][1:] == [
            [
                entry["tool"] or "(none)",
                "yes" if entry["failed"] else "no",
                str(entry["conversations"]),
                shown(entry["share"]),
            ]
            for entry in context["last_tool"]
        ]

    def test_hostile_tool_name_is_text(self, rendered: dict[str, Any]) -> None:
        """A tool called ``<script>…`` in the exit tables is escaped, never markup."""
        report = Report.from_dict(rendered["report"])
        report.exit_context.last_tool[0].tool = HOSTILE
        page = render_html(report, Comparison.from_dict(rendered["compare"]))
        assert tables(page)["exit-tool-table"][1][0] == HOSTILE
        assert "<script>" not in page


class TestOutputOption:
    """``--output`` for every format, and refused for a directory."""

    def test_json_and_table_to_a_file(self, written: str, tmp_path: Path) -> None:
        """``--output`` writes the same JSON as standard output, and the table."""
        out = tmp_path / "r.json"
        assert run_cli("report", "--store", written, "--format", "json", "--output", str(out))
        assert json.loads(out.read_text(encoding="utf-8")) == cli_json("report", "--store", written)
        table = tmp_path / "r.txt"
        run_cli("report", "--store", written, "--output", str(table))
        assert "Completion rate" in table.read_text(encoding="utf-8")

    def test_a_directory_is_refused(self, written: str, tmp_path: Path) -> None:
        """A directory as ``--output`` is a usage error (exit 2) that says so."""
        result = run_cli(
            "report",
            "--store",
            written,
            "--format",
            "html",
            "--output",
            str(tmp_path),
            check=False,
        )
        assert result.returncode == 2
        assert "is a directory" in result.stderr
        assert result.stdout == ""

    def test_stdout_is_the_same_page(self, written: str, rendered: dict[str, Any]) -> None:
        """Without ``--output`` the page goes to standard output."""
        page = run_cli("report", "--store", written, "--format", "html").stdout
        assert page == rendered["html"]


class TestEmptyWindow:
    """A window without conversations still gives a whole page."""

    def test_empty_report_renders(self) -> None:
        """Every section is there, its table empty and its chart saying there is no data."""
        report = Report(0, None, None, None, None, None)
        page = render_html(report, Comparison(by="agent", baseline=None, days=7, groups=[]))
        found = tables(page)
        for table_id in ("trend-table", "survival-table", "compare-table", "dropoff-table"):
            assert found[table_id][1:] == [], table_id
        assert "no data in the window" in page
        assert "no abandoned conversations" in page
