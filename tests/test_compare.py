"""``compare``: the statistics against statsmodels and SciPy, and the command end to end (real
chDB store, the CLI in a subprocess, a real collector's API) against the same libraries fed the
counts of the planned conversations."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import proportion_confint, proportions_ztest
from statsmodels.stats.weightstats import DescrStatsW

from collector_process import run_cli
from handbuilt import collector_api
from opentelemetry.exporter.conversation_analytics import stats
from opentelemetry.exporter.conversation_analytics.analytics import (
    MIN_COMPARE_SAMPLE,
    TOO_FEW_NOTE,
    Comparison,
    round_half_up,
)
from opentelemetry.exporter.conversation_analytics.collector.client import ENV_AUTH_TOKEN
from opentelemetry.exporter.conversation_analytics.collector.config import CollectorConfig
from opentelemetry.exporter.conversation_analytics.collector.run import start_collector
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import (
    COMPARE_DIMENSIONS,
    ConversationStore,
)
from opentelemetry.instrumentation.conversation import ConversationEvent
from synthetic import Plan, durations, random_plans, rows, write_closed

#: Half a unit in the last reported place: a reported value is the reference, rounded.
PERCENT_PLACE = 0.05 + 1e-9
SCORE_PLACE = 0.0005 + 1e-9
#: A large window: the planned conversations are hours old, whatever the clock says.
START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)

COUNT_SETS = [
    (0, 1),
    (1, 1),
    (0, 30),
    (30, 30),
    (1, 2),
    (3, 7),
    (741, 1000),
    (999, 1000),
    (0, 5000),
    (2500, 5000),
]


class TestWilsonInterval:
    """``wilson_interval`` against ``statsmodels.stats.proportion.proportion_confint``."""

    @pytest.mark.parametrize(("successes", "trials"), COUNT_SETS)
    def test_matches_statsmodels(self, successes: int, trials: int) -> None:
        """Same bounds as statsmodels' Wilson interval, including 0 and n successes and n=1."""
        expected = proportion_confint(successes, trials, alpha=0.05, method="wilson")
        assert stats.wilson_interval(successes, trials) == pytest.approx(expected, abs=1e-12)

    def test_no_trials_has_no_interval(self) -> None:
        """An empty group has no interval, rather than a division by zero."""
        assert stats.wilson_interval(0, 0) is None

    def test_z_is_the_normal_quantile(self) -> None:
        """The 95% z is SciPy's normal quantile of 0.975."""
        assert pytest.approx(scipy_stats.norm.ppf(0.975), abs=1e-15) == stats.Z_95


class TestTwoProportionZTest:
    """``two_proportion_z_test`` against ``statsmodels.stats.proportion.proportions_ztest``."""

    @pytest.mark.parametrize(
        "counts",
        [
            (741, 1000, 797, 1000),
            (0, 10, 5, 10),
            (10, 10, 3, 12),
            (1, 1, 0, 1),
            (0, 1, 1, 2),
            (15, 40, 22, 35),
            (2999, 5000, 3101, 5000),
        ],
    )
    def test_matches_statsmodels(self, counts: tuple[int, int, int, int]) -> None:
        """Same z and two-sided p as statsmodels' pooled test (its default, prop_var=False)."""
        x1, n1, x2, n2 = counts
        z, p_value = proportions_ztest([x1, x2], [n1, n2])
        result = stats.two_proportion_z_test(x1, n1, x2, n2)
        assert result is not None
        assert result.z == pytest.approx(float(z), rel=1e-12)
        assert result.p_value == pytest.approx(float(p_value), rel=1e-9, abs=1e-300)

    @pytest.mark.parametrize("counts", [(0, 10, 0, 12), (5, 5, 7, 7)])
    def test_no_variance_is_no_evidence(self, counts: tuple[int, int, int, int]) -> None:
        """Both groups all failures or all successes: statsmodels answers NaN; this says z=0,
        p=1 (no difference seen), which is what a report can show."""
        x1, n1, x2, n2 = counts
        with np.errstate(divide="ignore", invalid="ignore"):
            _, p_value = proportions_ztest([x1, x2], [n1, n2])
        assert math.isnan(p_value)
        assert stats.two_proportion_z_test(x1, n1, x2, n2) == stats.ZTest(0.0, 1.0)

    def test_empty_group_has_no_test(self) -> None:
        """A group without conversations cannot be tested."""
        assert stats.two_proportion_z_test(0, 0, 3, 10) is None


class TestStudentT:
    """The t quantile behind the satisfaction interval, against SciPy."""

    @pytest.mark.parametrize("df", [1, 2, 3, 5, 29, 100, 10_000])
    @pytest.mark.parametrize("probability", [0.6, 0.975, 0.995, 0.025])
    def test_quantile_matches_scipy(self, df: int, probability: float) -> None:
        """``student_t_quantile`` equals ``scipy.stats.t.ppf``."""
        expected = scipy_stats.t.ppf(probability, df)
        assert stats.student_t_quantile(probability, df) == pytest.approx(expected, rel=1e-9)


def _uniform(count: int) -> list[float]:
    rng = random.Random(7)
    return [rng.random() for _ in range(count)]


class TestMeanInterval:
    """``mean_interval`` against statsmodels' ``DescrStatsW.tconfint_mean``."""

    @pytest.mark.parametrize(
        "values",
        [
            [0.9, 0.1, 0.3, 0.7, 0.5, 0.9, 0.95],
            [0.5, 0.5, 0.5],
            [0.2, 0.9],
            [0.0, 1.0],  # df=1: the t-interval spills past 0..1 and is clipped
            [random.Random(7).random() ** 2 for _ in range(1)] * 2 + _uniform(500),
        ],
        ids=["seven", "constant", "two", "extremes", "five-hundred"],
    )
    def test_matches_statsmodels_clipped(self, values: list[float]) -> None:
        """Same bounds as statsmodels' t-interval of the mean, clipped to the scores' 0..1."""
        low, high = DescrStatsW(np.array(values)).tconfint_mean(alpha=0.05)
        expected = (max(0.0, low), min(1.0, high))
        total, squares = sum(values), sum(v * v for v in values)
        result = stats.mean_interval(len(values), total, squares)
        assert result == pytest.approx(expected, abs=1e-9)

    def test_one_value_has_no_interval(self) -> None:
        """One conversation says nothing about spread: no interval."""
        assert stats.mean_interval(1, 0.4, 0.16) is None


# ---- end to end ------------------------------------------------------------------------------


def _plans() -> list[Plan]:
    """Three prompt versions (one below the minimum sample) over two agents and two models."""
    rng = random.Random(12)
    return [
        *random_plans(
            rng, 140, "v1", completion=0.72, agent="support", dims=_dims("v1", "gpt-a", "web")
        ),
        *random_plans(
            rng, 90, "v2", completion=0.55, agent="support", dims=_dims("v2", "gpt-b", "web")
        ),
        *random_plans(
            rng, 60, "v2r", completion=0.6, agent="research", dims=_dims("v2", "gpt-a", "api")
        ),
        *random_plans(
            rng, 12, "v3", completion=0.9, agent="research", dims=_dims("v3", "gpt-b", "")
        ),
    ]


def _dims(prompt: str, model: str, channel: str) -> dict[str, str]:
    return {"prompt_version": prompt, "request_model": model, "channel": channel}


PLANS = _plans()


@dataclass(frozen=True)
class Expected:
    """One group's reference numbers, from the plans through statsmodels and lifelines."""

    plans: Sequence[Plan]

    @property
    def n(self) -> int:
        return len(self.plans)

    def count(self, outcome: str) -> int:
        return sum(plan.outcome == outcome for plan in self.plans)


def _groups(by: str, plans: Sequence[Plan]) -> dict[str, Expected]:
    values = sorted({plan.value(by) for plan in plans})
    return {v: Expected([plan for plan in plans if plan.value(by) == v]) for v in values}


def assert_matches_references(
    document: dict[str, Any], by: str, plans: Sequence[Plan], baseline: str | None = None
) -> None:
    """Every number of a compare JSON document equals the reference libraries' on the plans."""
    groups = _groups(by, plans)
    if baseline is None:  # the largest group, ties to the smallest value
        baseline = min(groups, key=lambda value: (-groups[value].n, value))
    assert document["by"] == by
    assert document["baseline"] == baseline
    assert sorted(g["value"] for g in document["groups"]) == sorted(groups)
    assert document["groups"][0]["value"] == baseline
    base = groups[baseline]
    for group in document["groups"]:
        expected = groups[group["value"]]
        n = expected.n
        assert group["conversations"] == n
        for outcome, rate, ci in (
            ("completed", "completion_rate", "completion_ci"),
            ("abandoned", "abandonment_rate", "abandonment_ci"),
            ("handoff", "handoff_rate", "handoff_ci"),
        ):
            k = expected.count(outcome)
            assert group[rate] == pytest.approx(100 * k / n, abs=PERCENT_PLACE), (group, rate)
            low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
            assert group[ci] == pytest.approx([100 * low, 100 * high], abs=PERCENT_PLACE)
        assert group["completed"] == expected.count("completed")
        assert group["avg_turns"] == pytest.approx(
            np.mean([p.messages for p in expected.plans]), abs=PERCENT_PLACE
        )
        scores = np.array([plan.satisfaction for plan in expected.plans])
        assert group["avg_satisfaction"] == pytest.approx(scores.mean(), abs=SCORE_PLACE)
        low, high = DescrStatsW(scores).tconfint_mean(alpha=0.05)
        assert group["satisfaction_ci"] == pytest.approx(
            [max(0.0, low), min(1.0, high)], abs=SCORE_PLACE
        )
        _assert_survival(group, expected.plans)
        versus = group["vs_baseline"]
        if group["value"] == baseline:
            assert versus is None
            continue
        x1, x2 = expected.count("completed"), base.count("completed")
        _, p_value = proportions_ztest([x1, x2], [n, base.n])
        assert versus["completion_diff"] == pytest.approx(
            100 * (x1 / n - x2 / base.n), abs=PERCENT_PLACE
        )
        assert versus["completion_p_value"] == pytest.approx(float(p_value), rel=1e-9)
        enough = min(n, base.n) >= MIN_COMPARE_SAMPLE
        assert versus["significant"] is bool(enough and p_value < 0.05)
        assert ("too few" in (versus.get("note") or "")) is (not enough)


def _assert_survival(group: dict[str, Any], plans: Sequence[Plan]) -> None:
    """The group's survival curve is lifelines' Kaplan-Meier on the plans' durations."""
    times, observed = durations(plans)
    fitter = KaplanMeierFitter().fit(times, observed)
    table = fitter.event_table.drop(index=0, errors="ignore")
    turns = [step["turn"] for step in group["survival"]]
    assert turns == [int(t) for t in table.index]
    assert [step["at_risk"] for step in group["survival"]] == list(table["at_risk"])
    assert [step["abandoned"] for step in group["survival"]] == list(table["observed"])
    assert [step["censored"] for step in group["survival"]] == list(table["censored"])
    expected = fitter.survival_function_at_times(turns).to_numpy()
    assert [step["survival"] for step in group["survival"]] == pytest.approx(expected, rel=1e-12)


class TestCompareOnTheStore:
    """``ConversationStore.compare`` over planned conversations in a real chDB store."""

    @pytest.fixture
    def filled(self, store: ConversationStore) -> ConversationStore:
        store.insert(rows(PLANS, START))
        return store

    @pytest.mark.parametrize("by", COMPARE_DIMENSIONS)
    def test_every_dimension_matches_the_references(
        self, filled: ConversationStore, by: str
    ) -> None:
        """For every ``--by``, each group's rates, intervals, test and curve equal the
        reference libraries' on that group's planned conversations."""
        if by == "agent_version":  # not planned: one group of everything, valued ''
            assert [g.value for g in StoreReader(filled).compare(by).groups] == [""]
            return
        assert_matches_references(StoreReader(filled).compare(by).to_dict(), by, PLANS)

    def test_named_baseline_and_agent_filter(self, filled: ConversationStore) -> None:
        """``baseline`` picks the group tested against; ``agent`` keeps one agent's
        conversations (v3 is a research-only group below the minimum sample)."""
        comparison = StoreReader(filled).compare("prompt_version", baseline="v3", agent="research")
        research = [plan for plan in PLANS if plan.agent == "research"]
        assert_matches_references(comparison.to_dict(), "prompt_version", research, "v3")
        assert comparison.agent == "research"

    def test_a_small_group_is_never_significant(self, store: ConversationStore) -> None:
        """Below the minimum sample a difference statsmodels calls overwhelming (p far below
        0.05) is still not significant, and says why; at the minimum it is."""
        small = MIN_COMPARE_SAMPLE - 1
        plans = [
            *(Plan(f"b{i}", 2, "completed", dims={"channel": "web"}) for i in range(100)),
            *(Plan(f"s{i}", 2, "abandoned", dims={"channel": "sms"}) for i in range(small)),
        ]
        store.insert(rows(plans, START))
        comparison = StoreReader(store).compare("channel").to_dict()
        assert_matches_references(comparison, "channel", plans)
        versus = comparison["groups"][1]["vs_baseline"]
        assert versus["completion_p_value"] < 1e-10
        assert (versus["significant"], versus["note"]) == (False, TOO_FEW_NOTE)
        store.insert(rows([Plan("s-last", 2, "abandoned", dims={"channel": "sms"})], START))
        versus = StoreReader(store).compare("channel").to_dict()["groups"][1]["vs_baseline"]
        assert (versus["significant"], versus["note"]) == (True, None)

    def test_unknown_baseline_is_an_error_naming_the_values(
        self, filled: ConversationStore
    ) -> None:
        """A baseline with no conversations is a ValueError that lists the values there are."""
        with pytest.raises(ValueError, match=r"baseline 'v9' has no conversations.*'v1', 'v2'"):
            StoreReader(filled).compare("prompt_version", baseline="v9")

    def test_duplicate_writes_count_once(self, filled: ConversationStore) -> None:
        """The same batch written again (a retry) changes nothing."""
        before = StoreReader(filled).compare("prompt_version").to_dict()
        filled.insert(rows(PLANS, START))
        assert StoreReader(filled).compare("prompt_version").to_dict() == before

    def test_round_trips_through_json(self, filled: ConversationStore) -> None:
        """``Comparison.from_dict`` inverts ``to_dict`` (what the collector client relies on)."""
        comparison = StoreReader(filled).compare("request_model")
        assert Comparison.from_dict(json.loads(json.dumps(comparison.to_dict()))) == comparison

    def test_rephrase_rate_per_group(self, store: ConversationStore) -> None:
        """Each group's rephrase rate is its rephrased user messages over its user messages."""
        plans = [
            *(Plan(f"a{i}", 4, "completed", dims={"channel": "web"}) for i in range(5)),
            *(Plan(f"b{i}", 3, "abandoned", dims={"channel": "sms"}) for i in range(4)),
        ]
        planned = rows(plans, START)
        rephrased = {"a0", "a1", "b3"}  # their second message rephrases the first
        marked = [
            dataclasses.replace(row, rephrase=True)
            if row.conversation_id in rephrased
            and row.event_type == ConversationEvent.USER_MESSAGE.value
            and row.turn == 2
            else row
            for row in planned
        ]
        store.insert(marked)
        rates = {g.value: g.rephrase_rate for g in StoreReader(store).compare("channel").groups}
        assert rates == {"web": round_half_up(100 * 2 / 20, 1), "sms": round_half_up(100 / 12, 1)}

    def test_empty_window_has_no_groups(self, store: ConversationStore) -> None:
        """No conversations: no groups and no baseline, not an error."""
        comparison = StoreReader(store).compare("channel")
        assert (comparison.groups, comparison.baseline) == ([], None)


@pytest.fixture
def written(store_url: str) -> str:
    """The planned conversations in a closed store, for a CLI subprocess to open."""
    return write_closed(store_url, PLANS, START)


class TestCompareCommand:
    """``conversation-analytics compare`` in a subprocess over the store."""

    def test_json_matches_the_references(self, written: str) -> None:
        """``--format json`` gives the reference libraries' numbers for every group."""
        done = run_cli("compare", "--by", "prompt_version", "--format", "json", "--store", written)
        assert_matches_references(json.loads(done.stdout), "prompt_version", PLANS)

    def test_table_shows_each_group_and_the_verdicts(self, written: str) -> None:
        """The table names every group, marks the baseline and spells out each verdict."""
        table = run_cli("compare", "--by", "prompt_version", "--store", written).stdout
        document = json.loads(
            run_cli(
                "compare", "--by", "prompt_version", "--format", "json", "--store", written
            ).stdout
        )
        lines = {line.split()[0]: line for line in table.splitlines() if line.startswith("  v")}
        assert set(lines) == {"v1", "v2", "v3"}
        for group in document["groups"]:
            line = lines[group["value"]]
            low, high = group["completion_ci"]
            assert f"[{low}, {high}]" in line
            versus = group["vs_baseline"]
            if versus is None:
                assert "baseline" in line
            elif versus["significant"]:
                assert line.rstrip().endswith(" significant")
            else:
                assert line.rstrip().endswith("too few" if versus["note"] else "not significant")

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--by", "prompt"), "--by must be one of " + ", ".join(COMPARE_DIMENSIONS)),
            ((), "the following arguments are required: --by"),
            (("--by", "agent", "--days", "abc"), "--days must be a whole number of days"),
            (("--by", "agent", "--days", "0"), "--days must be between 1 and"),
        ],
        ids=["unknown-by", "no-by", "days-word", "days-zero"],
    )
    def test_usage_errors_exit_2(self, store_url: str, args: tuple[str, ...], message: str) -> None:
        """A bad ``--by`` or ``--days`` exits 2 with one line saying what is accepted."""
        done = run_cli("compare", *args, "--store", store_url, check=False)
        assert done.returncode == 2
        assert done.stderr.splitlines()[-1].startswith("conversation-analytics compare: error: ")
        assert message in done.stderr
        assert done.stdout == ""

    def test_unknown_baseline_exits_2(self, written: str) -> None:
        """A baseline with no conversations is a usage error naming the values there are."""
        done = run_cli("compare", "--by", "channel", "--baseline", "tv", "--store", written,
                       check=False)  # fmt: skip
        assert done.returncode == 2
        assert "baseline 'tv' has no conversations by channel" in done.stderr
        assert "'', 'api', 'web'" in done.stderr


class TestCompareApi:
    """``GET /api/v1/compare`` on a real collector, and the CLI reading through it."""

    @pytest.fixture
    def api(self, store: ConversationStore, store_url: str, tmp_path: Path) -> Iterator[str]:
        store.insert(rows(PLANS, START))
        with collector_api(store, store_url, tmp_path) as url:
            yield url

    def _get(self, base_url: str, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(base_url + path, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def test_api_and_cli_through_it_match_the_references(self, api: str) -> None:
        """The API's document and ``compare --collector URL`` both give the references'
        numbers, and the same document."""
        status, document = self._get(api, "/api/v1/compare?by=request_model&days=7")
        assert status == 200, document
        assert_matches_references(document, "request_model", PLANS)
        done = run_cli("compare", "--by", "request_model", "--format", "json", "--collector", api)
        assert json.loads(done.stdout) == document

    def test_baseline_and_agent_parameters(self, api: str) -> None:
        """``baseline`` and ``agent`` mean what the CLI's flags mean."""
        status, document = self._get(api, "/api/v1/compare?by=channel&baseline=api&agent=research")
        assert status == 200, document
        research = [plan for plan in PLANS if plan.agent == "research"]
        assert_matches_references(document, "channel", research, "api")

    @pytest.mark.parametrize(
        ("query", "error"),
        [
            ("by=prompt", "by must be one of " + ", ".join(COMPARE_DIMENSIONS) + "; got 'prompt'"),
            ("", "by is required: one of " + ", ".join(COMPARE_DIMENSIONS)),
            ("by=agent&days=abc", "days must be a whole number of days, got 'abc'"),
            (
                "by=agent&baseline=nobody",
                "baseline 'nobody' has no conversations by agent in the last 7 days "
                "(values: 'research', 'support')",
            ),
        ],
        ids=["unknown-by", "no-by", "days-word", "unknown-baseline"],
    )
    def test_bad_parameters_are_a_400_in_the_clis_words(
        self, api: str, query: str, error: str
    ) -> None:
        """Bad parameters are a 400 with the message the CLI prints for its flag."""
        assert self._get(api, f"/api/v1/compare?{query}") == (400, {"error": error})

    def test_guarded_by_the_bearer_token(
        self, store: ConversationStore, store_url: str, tmp_path: Path
    ) -> None:
        """With a token set, the compare API answers 401 without it, like the other reads, and
        the CLI passes the token from the environment."""
        store.insert(rows(PLANS[:40], START))
        config = CollectorConfig(
            store=store_url,
            grpc_endpoint="",
            http_endpoint="",
            metrics_endpoint="127.0.0.1:0",
            spool_dir=str(tmp_path / "spool"),
            auth_token="s3cret",
        )
        collector = start_collector(config, store=store)
        try:
            api = f"http://127.0.0.1:{collector.ports['metrics']}"
            status, document = self._get(api, "/api/v1/compare?by=agent")
            assert (status, document) == (401, {"error": "missing or wrong bearer token"})
            done = run_cli(
                "compare", "--by", "agent", "--format", "json", "--collector", api,
                env={ENV_AUTH_TOKEN: "s3cret"},
            )  # fmt: skip
            assert json.loads(done.stdout)["groups"][0]["conversations"] == 40
        finally:
            collector.stop()

    def test_unknown_baseline_through_the_collector_exits_2(self, api: str) -> None:
        """The API's 400 for a baseline reaches the CLI as the same usage error (exit 2)."""
        done = run_cli(
            "compare", "--by", "agent", "--baseline", "nobody", "--collector", api, check=False
        )
        assert done.returncode == 2
        assert done.stderr.strip().endswith("(values: 'research', 'support')")
