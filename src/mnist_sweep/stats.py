"""The statistics that say whether a difference is beyond noise: pure functions, no I/O.

* :func:`mcnemar` - McNemar's exact (binomial) test on two models' paired predictions of the
  same images: only the images one model gets right and the other wrong (the *discordant*
  pairs) carry information, and under "equally good" each falls either way with probability 1/2.
* :func:`bootstrap_difference` - a percentile bootstrap CI of the accuracy difference of such a
  pair, with a fixed seed (the same inputs give the same interval on every machine).
* :func:`welch` - Welch's t-test (unequal variances) of two sets of per-seed scores, with the CI
  of the difference of their means.
* :func:`mean_interval` - the mean of per-seed scores, their standard deviation and the
  Student-t 95% CI of the mean.

scipy's ``special`` functions give the Student-t distribution; everything else is numpy and
:mod:`math`. Nothing here knows Keras, Optuna or MLflow.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
"""The significance level everything here reports against unless told otherwise."""
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


# --------------------------------------------------------------------------- the Student-t distribution


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (any real ``df`` > 0)."""
    from scipy.special import stdtr

    return float(stdtr(df, t))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


# --------------------------------------------------------------------------- paired predictions


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of model A against model B on the same images.

    ``a_only``: images A classified right and B wrong; ``b_only``: the reverse. ``p_value`` is
    two-sided: the chance of a split at least this uneven if both models were equally good.
    """

    a_only: int
    b_only: int
    n: int
    a_correct: int
    b_correct: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.a_only + self.b_only

    @property
    def difference(self) -> float:
        """Accuracy of A minus accuracy of B (exactly ``(a_only - b_only) / n``)."""
        return (self.a_only - self.b_only) / self.n if self.n else 0.0

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def binomial_two_sided(k: int, n: int) -> float:
    """Two-sided exact binomial p-value of ``k`` successes in ``n`` fair coin flips.

    Computed on integers (``math.comb``), so it is exact up to the final division, for any n.
    """
    if n == 0:
        return 1.0
    low = min(k, n - k)
    if 2 * low == n:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(low + 1))
    return min(1.0, (2 * tail) / (1 << n))


def correct_flags(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Which of ``labels`` ``predicted`` (class indices, or (n, classes) scores) got right."""
    predicted = np.asarray(predicted)
    if predicted.ndim == 2:
        predicted = np.argmax(predicted, axis=1)
    labels = np.asarray(labels)
    if predicted.shape != labels.shape:
        raise ValueError(f"{predicted.shape[0]} predictions for {labels.shape[0]} labels")
    return np.asarray(predicted == labels)


def mcnemar(a_predicted: np.ndarray, b_predicted: np.ndarray, labels: np.ndarray) -> McNemar:
    """McNemar's exact test of A's predictions against B's on the same ``labels``."""
    return mcnemar_flags(correct_flags(a_predicted, labels), correct_flags(b_predicted, labels))


def mcnemar_flags(a_right: np.ndarray, b_right: np.ndarray) -> McNemar:
    """The same test from which images each model got right (two boolean arrays, same images)."""
    a, b = np.asarray(a_right, dtype=bool), np.asarray(b_right, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"{a.shape[0]} and {b.shape[0]} images: the predictions are not paired")
    return mcnemar_counts(
        a_only=int(np.sum(a & ~b)), b_only=int(np.sum(~a & b)), n=len(a), a_correct=int(a.sum()), b_correct=int(b.sum())
    )


def mcnemar_counts(*, a_only: int, b_only: int, n: int, a_correct: int, b_correct: int) -> McNemar:
    """The same test from the counts alone."""
    if a_only < 0 or b_only < 0 or a_only + b_only > n:
        raise ValueError(f"discordant counts {a_only} and {b_only} do not fit {n} images")
    return McNemar(
        a_only=a_only,
        b_only=b_only,
        n=n,
        a_correct=a_correct,
        b_correct=b_correct,
        p_value=binomial_two_sided(a_only, a_only + b_only),
    )


@dataclass(frozen=True)
class Interval:
    """A confidence interval of a difference (or of a mean), at ``level``."""

    estimate: float
    low: float
    high: float
    level: float = 1 - ALPHA

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def bootstrap_difference(
    test: McNemar, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 1 - ALPHA
) -> Interval:
    """Percentile bootstrap CI of A's accuracy minus B's, resampling images with replacement.

    Each image contributes +1 (only A right), -1 (only B right) or 0, so resampling n images is
    one multinomial draw of those three counts: exactly the image bootstrap, at O(resamples) cost.
    """
    n = test.n
    if n == 0:
        return Interval(0.0, 0.0, 0.0, level)
    rng = np.random.default_rng(seed)
    probabilities = [test.a_only / n, test.b_only / n, max(0.0, 1 - test.discordant / n)]
    draws = rng.multinomial(n, probabilities, size=resamples)
    differences = (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return Interval(test.difference, float(low), float(high), level)


# --------------------------------------------------------------------------- per-seed scores


@dataclass(frozen=True)
class SeedSummary:
    """Per-seed scores of one configuration: their mean, standard deviation and the CI of the mean."""

    values: tuple[float, ...]
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def n(self) -> int:
        return len(self.values)


def mean_interval(values: Sequence[float], *, level: float = 1 - ALPHA) -> SeedSummary:
    """Mean, sample standard deviation (n - 1) and Student-t CI of the mean of ``values``.

    With one value the standard deviation is 0 and the interval is that value: one seed says
    nothing about the spread.
    """
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("no values")
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return SeedSummary(vals, mean, 0.0, mean, mean)
    std = statistics.stdev(vals)
    half = t_quantile(1 - (1 - level) / 2, len(vals) - 1) * std / math.sqrt(len(vals))
    return SeedSummary(vals, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of mean(A) - mean(B), with its CI."""

    difference: float
    t: float
    df: float
    p_value: float
    interval: Interval

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def welch(a: Sequence[float], b: Sequence[float], *, level: float = 1 - ALPHA) -> Welch:
    """Welch's unequal-variance t-test of two samples (each of at least 2 values).

    When both samples have no spread at all, equal means give p = 1 and different ones p = 0.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's test needs at least 2 values per side, got {len(a)} and {len(b)}")
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    var_a, var_b = statistics.variance(a), statistics.variance(b)
    se2_a, se2_b = var_a / len(a), var_b / len(b)
    se2 = se2_a + se2_b
    difference = mean_a - mean_b
    if se2 == 0:
        p = 1.0 if difference == 0 else 0.0
        t = math.copysign(math.inf, difference) if difference else 0.0
        return Welch(difference, t, math.inf, p, Interval(difference, difference, difference, level))
    se = math.sqrt(se2)
    df = se2**2 / (se2_a**2 / (len(a) - 1) + se2_b**2 / (len(b) - 1))
    t = difference / se
    p = min(1.0, 2 * t_cdf(-abs(t), df))
    half = t_quantile(1 - (1 - level) / 2, df) * se
    return Welch(difference, t, df, p, Interval(difference, difference - half, difference + half, level))
