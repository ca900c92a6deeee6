"""The few statistics ``compare`` and ``survival`` need, in pure Python (no SciPy at run time).

Everything here works on exact counts and returns unrounded floats; rounding for reports happens
in :mod:`analytics` with its one rounding rule. The tests check every function against
statsmodels, SciPy and lifelines on the same counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

#: Two-sided 95%: the normal quantile of 0.975 (1.959963984540054).
CONFIDENCE: Final = 0.95
Z_95: Final = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)
#: The level below which a difference is called significant.
ALPHA: Final = 1 - CONFIDENCE

_BETA_EPSILON: Final = 1e-15
_BETA_MAX_ITERATIONS: Final = 500
_BISECTION_STEPS: Final = 200


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes / trials`` (fractions, 0..1); ``None`` for no
    trials. Wilson, not the normal approximation: it stays inside 0..1 and keeps its coverage
    at rates near 0 or 100% and in small groups, which is where product decisions get made."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in 0..{trials}, got {successes}")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    center = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, center - half), min(1.0, center + half)


@dataclass(frozen=True)
class ZTest:
    """A two-proportion z-test: the statistic and its two-sided p-value."""

    z: float
    p_value: float


def two_proportion_z_test(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> ZTest | None:
    """Two-sided pooled two-proportion z-test of ``a`` against ``b`` (``None`` when a group is
    empty). Under H0 both groups share one rate, so the variance uses the pooled rate.

    When both groups are all successes or all failures the pooled variance is 0 and there is no
    evidence of a difference: ``z = 0, p = 1`` (statsmodels answers NaN there).
    """
    if trials_a <= 0 or trials_b <= 0:
        return None
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance <= 0:
        return ZTest(0.0, 1.0)
    z = (successes_a / trials_a - successes_b / trials_b) / math.sqrt(variance)
    return ZTest(z, math.erfc(abs(z) / math.sqrt(2)))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's evaluation of the incomplete beta function's continued fraction."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, _BETA_MAX_ITERATIONS + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < _BETA_EPSILON:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for Student's t distribution."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1 - front * _beta_continued_fraction(b, a, 1 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def student_t_quantile(probability: float, df: float) -> float:
    """The ``probability`` quantile of Student's t (by bisection on :func:`student_t_cdf`;
    called once per group, so clarity beats speed)."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if probability < 0.5:
        return -student_t_quantile(1 - probability, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < probability:
        low, high = high, high * 2
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if student_t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def mean_interval(
    count: int, total: float, total_squares: float, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float] | None:
    """The 95% Student-t interval of a mean, from the count, sum and sum of squares of the
    values, clipped to ``bounds`` (the values' own range); ``None`` below two values.

    Used for satisfaction: per-conversation scores are bounded, many-valued and not a
    proportion, so a t-interval of their mean is the standard, assumption-light choice.
    """
    if count < 2:
        return None
    mean = total / count
    variance = max(0.0, (total_squares - total * mean) / (count - 1))
    half = student_t_quantile(1 - ALPHA / 2, count - 1) * math.sqrt(variance / count)
    return max(bounds[0], mean - half), min(bounds[1], mean + half)


@dataclass(frozen=True)
class SurvivalStep:
    """One distinct duration of the Kaplan-Meier table."""

    turn: int
    at_risk: int
    abandoned: int
    censored: int
    survival: float


def kaplan_meier(durations: Iterable[tuple[int, bool, int]]) -> list[SurvivalStep]:
    """The Kaplan-Meier product-limit estimate from ``(duration, observed, count)`` triples
    (``observed``: the event happened at ``duration``; else censored there). One step per
    distinct duration, ascending; events at a duration count before its censorings, as usual."""
    events: dict[int, list[int]] = {}
    total = 0
    for duration, observed, count in durations:
        if count <= 0:
            continue
        tally = events.setdefault(duration, [0, 0])
        tally[0 if observed else 1] += count
        total += count
    steps = []
    at_risk, survival = total, 1.0
    for duration in sorted(events):
        ended, censored = events[duration]
        survival *= 1 - ended / at_risk
        steps.append(SurvivalStep(duration, at_risk, ended, censored, survival))
        at_risk -= ended + censored
    return steps
