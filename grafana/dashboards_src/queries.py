"""The query text the panels share: SQL over the rollup and events, and PromQL selectors.

SQL follows the ClickHouse plugin's conventions (grafana-clickhouse-datasource v4):

- the template variables agent / channel / model / prompt_version are multi-select with an "All"
  whose value is ``.*`` (a regex for the Prometheus panels); in SQL each is only used inside
  ``$__conditionalAll(column IN (${var:singlequote}), $var)``, which the plugin turns into ``1=1``
  when All is selected, so ``.*`` never reaches ClickHouse;
- rates, turns, durations and satisfaction read the per-conversation, per-hour rollup, merged per
  conversation over the hours that overlap the dashboard's time range (``conversations``); the
  per-conversation merge takes its merge functions from the product's own ``ROLLUP_COLUMNS`` and
  the satisfaction score is the product's ``SATISFACTION_EXPR``, so a schema change cannot leave a
  dashboard merging an aggregate state the wrong way;
- a conversation is placed in time by its first event in the range (``first_seen``); time series
  use buckets of at least one hour (the rollup's grain);
- rates and means are exact decimals rounded half away from zero (``ratio``), so a panel shows
  the number ``conversation-analytics report`` prints, field by field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.exporter.conversation_analytics.analytics import MIN_COMPARE_SAMPLE
from opentelemetry.exporter.conversation_analytics.stats import ALPHA, Z_95
from opentelemetry.exporter.conversation_analytics.store.sql import (
    DECIMAL_SCALE,
    ROLLUP_COLUMNS,
    SATISFACTION_EXPR,
)
from opentelemetry.exporter.conversation_analytics.store.sql import (
    SURVIVAL_TURN as _REPORT_SURVIVAL_TURN,  # the report's definition: the curve cannot drift
)

from .names import ROLLUP

#: Merge expression of each rollup column (``sum(user_messages)``, ``max(...)``).
MERGE: dict[str, str] = {column.name: column.merge for column in ROLLUP_COLUMNS}
#: The per-conversation satisfaction of SPEC section 4, on one line.
SATISFACTION = " ".join(SATISFACTION_EXPR.split())
#: An inferred abandonment stands only while the user has not come back (as the report does).
WAS_ABANDONED = (
    "toUInt8(explicit_abandoned = 1 OR (inferred_abandoned_at IS NOT NULL AND "
    "(last_activity IS NULL OR inferred_abandoned_at >= last_activity)))"
)
#: Cheap merges (min/max) every per-conversation row carries: times, outcome flags, filters.
BASE_COLUMNS: tuple[str, ...] = (
    "first_seen",
    "last_seen",
    "started_at",
    "completed_at",
    "was_completed",
    "explicit_abandoned",
    "inferred_abandoned_at",
    "last_activity",
    "had_handoff",
    "channel",
    "request_model",
    "response_model",
    "prompt_version",
)
#: Event counts (sums), added only where a query uses them.
COUNTED_COLUMNS: tuple[str, ...] = (
    "user_messages",
    "rephrases",
    "tool_calls",
    "tool_errors",
    "positive_feedback",
    "negative_feedback",
)


# ---- SQL fragments ------------------------------------------------------------------------------


def cond_all(column: str, variable: str) -> str:
    """``column IN (selected values)``, or ``1=1`` when the variable is on All (plugin macro)."""
    return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


FILTER_DIMENSIONS = (
    cond_all("channel", "channel"),
    cond_all("model", "model"),
    cond_all("prompt_version", "prompt_version"),
)


def conversations(
    columns: Iterable[str] = (),
    *,
    since: str = "$__fromTime",
    flags: Sequence[str] = (),
    derived: Sequence[str] = (),
    where: str | None = None,
    filtered: bool = True,
) -> str:
    """One merged row per conversation that has rollup rows in the hours overlapping the range.

    ``since`` widens the read to earlier hours (week-over-week); ``flags`` adds per-conversation
    aggregates over the rollup rows, ``derived`` expressions over the merged row; ``where``
    replaces the time and agent condition.
    """
    merges = [f"{MERGE[name]} AS {name}" for name in (*BASE_COLUMNS, *columns)]
    selected = ",\n        ".join([*merges, *flags])
    condition = where or (
        f"bucket > {since} - INTERVAL 1 HOUR AND bucket <= $__toTime\n"
        f"      AND {cond_all('agent_name', 'agent')}"
    )
    outer = "\nWHERE " + "\n  AND ".join(FILTER_DIMENSIONS) if filtered else ""
    computed = ",\n    ".join(
        [
            f"{WAS_ABANDONED} AS was_abandoned",
            "if(response_model != '', response_model, request_model) AS model",
            *derived,
        ]
    )
    return f"""SELECT *,
    {computed}
FROM (
    SELECT agent_name, conversation_id,
        {selected}
    FROM {ROLLUP}
    WHERE {condition}
    GROUP BY agent_name, conversation_id
){outer}"""


def indent(sql: str, spaces: int = 4) -> str:
    pad = " " * spaces
    return sql.replace("\n", "\n" + pad)


def time_bucket(minimum_seconds: int = 3600, column: str = "first_seen") -> str:
    """Grafana's interval, but never finer than the rollup's hour."""
    return (
        f"toStartOfInterval({column}, toIntervalSecond(greatest($__interval_s, {minimum_seconds})))"
    )


def ratio(numerator: str, denominator: str, places: int) -> str:
    """``numerator / denominator`` in exact decimals, rounded half away from zero (NULL on 0).

    The report's rounding rule: ClickHouse rounds a ``Decimal`` half away from zero as
    PostgreSQL does, while a ``Float64`` would round half to even and drift with summation order.
    """
    return f"round(toDecimal128({numerator}, {DECIMAL_SCALE}) / nullIf({denominator}, 0), {places})"


def mean(expression: str, places: int) -> str:
    """The mean of an integer or decimal ``expression`` over the rows, rounded as the report."""
    return ratio(f"sum({expression})", "count()", places)


def pct(condition: str, among: str = "") -> str:
    """Percent of conversations (optionally among those matching ``among``), 1 decimal."""
    if among:
        return ratio(f"100 * countIf({among} AND {condition})", f"countIf({among})", 1)
    return ratio(f"100 * countIf({condition})", "count()", 1)


def float_rounded(expression: str, places: int) -> str:
    """A ``Float64`` rounded as the report rounds one (``round_half_up``): its shortest decimal
    text (what Python's ``repr`` prints, and ClickHouse's ``toString``), then half away from zero
    in exact decimals. Converting the float to a ``Decimal`` directly would take its binary value,
    and round 12.35 (12.3499999...) down where the report rounds it up."""
    return f"round(toDecimal128(toString({expression}), {DECIMAL_SCALE}), {places})"


#: The normal quantile of the two-sided 95 % intervals: ``stats.Z_95`` to the bit
#: (1.9599639845400536, what ``NormalDist().inv_cdf(0.975)`` gives; 1.959963984540054 rounded).
Z = repr(Z_95)
#: A conversation's duration in user turns for the survival curve (NULL: no user message).
SURVIVAL_TURN = " ".join(_REPORT_SURVIVAL_TURN.split())
#: The level below which a difference is called significant: ``stats.ALPHA`` to the bit
#: (``1 - 0.95``, 0.050000000000000044), as the CLI compares ``p < ALPHA``.
SIGNIFICANCE = repr(ALPHA)
#: Below this many conversations in either group the CLI never calls a difference significant.
MIN_SAMPLE = MIN_COMPARE_SAMPLE


def wilson_percent(successes: str, trials: str) -> tuple[str, str]:
    """The 95 % Wilson score bounds of ``successes / trials`` (count columns, ``trials`` > 0) in
    percent, 1 decimal: ``stats.wilson_interval`` with the same ``Float64`` operations in the
    same order, so the same bits, rounded as the CLI's ``completion_ci``."""
    p = f"({successes} / {trials})"
    z2 = f"({Z} * {Z})"
    denominator = f"(1 + {z2} / {trials})"
    center = f"(({p} + {z2} / (2 * {trials})) / {denominator})"
    half = (
        f"({Z} / {denominator} * sqrt({p} * (1 - {p}) / {trials} + {z2} / (4 * {trials} * "
        f"{trials})))"
    )
    return (
        float_rounded(f"greatest(0., {center} - {half}) * 100", 1),
        float_rounded(f"least(1., {center} + {half}) * 100", 1),
    )


def two_proportion_p_value(successes_a: str, trials_a: str, successes_b: str, trials_b: str) -> str:
    """Two-sided p-value of the pooled two-proportion z-test (``stats.two_proportion_z_test``):
    1 when the pooled variance is 0 (both groups all successes or all failures)."""
    pooled = f"(({successes_a} + {successes_b}) / ({trials_a} + {trials_b}))"
    variance = f"({pooled} * (1 - {pooled}) * (1 / {trials_a} + 1 / {trials_b}))"
    z = f"(({successes_a} / {trials_a} - {successes_b} / {trials_b}) / sqrt({variance}))"
    return f"if({variance} <= 0, 1., erfc(abs({z}) / sqrt(2)))"


COMPLETED = "was_completed = 1"
ABANDONED = "was_abandoned = 1"
HANDOFF = "had_handoff = 1"
TIMED = "started_at IS NOT NULL AND completed_at IS NOT NULL"
DURATION_US = "dateDiff('microsecond', started_at, completed_at)"
#: Mean duration in whole seconds over timed conversations, as the report rounds it.
AVG_DURATION_S = ratio(f"sumIf({DURATION_US}, {TIMED})", f"1000000 * countIf({TIMED})", 0)
OUTCOME = (
    "multiIf(was_completed = 1 AND had_handoff = 1, 'completed after handoff', "
    "was_completed = 1, 'completed', was_abandoned = 1, 'abandoned', "
    "had_handoff = 1, 'handed off', 'open')"
)


def over_conversations(
    select: str,
    tail: str = "",
    *,
    project: str | None = None,
    keep: str | None = None,
    **kwargs: Any,
) -> str:
    """``SELECT select FROM (conversations) tail``; ``project`` (and ``keep``, its WHERE) adds a
    per-conversation projection in between (one row per turn, per abandonment, ...)."""
    if "columns" not in kwargs:
        used = " ".join([select, tail, project or "", keep or ""])
        kwargs["columns"] = [c for c in COUNTED_COLUMNS if re.search(rf"\b{c}\b", used)]
    source = conversations(**kwargs)
    if project is not None:
        source = f"SELECT {project}\nFROM (\n    {indent(source)}\n)"
        if keep is not None:
            source += f"\nWHERE {keep}"
    body = f"SELECT {select}\nFROM (\n    {indent(source)}\n)"
    return body + (f"\n{tail}" if tail else "")


# ---- PromQL fragments ---------------------------------------------------------------------------

PROM_FILTERS = {
    "agent": 'agent=~"$agent"',
    "channel": 'channel=~"$channel"',
    "prompt_version": 'prompt_version=~"$prompt_version"',
    "model": 'model=~"$model"',
    "instance": 'instance=~"$instance"',
}


def series(metric: str, labels: Sequence[str], *extra: str) -> str:
    """``metric{...}`` matching the dashboard variables named in ``labels``, plus ``extra``."""
    matchers = [PROM_FILTERS[label] for label in labels] + list(extra)
    return metric + "{" + ",".join(matchers) + "}"


def summed(function: str, selector: str, window: str, by: str = "") -> str:
    """``sum by (by) (function(selector[window]))``, e.g. a rate or an increase per agent."""
    head = f"sum by ({by}) " if by else "sum"
    return f"{head}({function}({selector}[{window}]))"


def quantile(q: float, buckets: str, window: str) -> str:
    """The ``q`` quantile of a histogram's ``_bucket`` series over ``window``, all labels merged."""
    return f"histogram_quantile({q}, {summed('rate', buckets, window, 'le')})"
