"""The statistics module against values computed by hand (and, where a formula has no closed form, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnist_sweep import stats


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        (1, 6, 2 * (1 + 6) / 64),  # C(6,0) + C(6,1) = 7 of 2^6, both tails
        (5, 6, 2 * (1 + 6) / 64),  # the same split the other way round
        (0, 10, 2 / 1024),
        (3, 6, 1.0),  # an even split is no evidence at all
        (0, 0, 1.0),  # no discordant pair
        (2, 5, 1.0),  # 2 * (1 + 5 + 10) / 32 = 1: as even as 5 flips can be
        (0, 1, 1.0),
        (1, 10, 2 * (1 + 10) / 1024),
    ],
)
def test_exact_binomial_p_values(k: int, n: int, expected: float) -> None:
    assert stats.binomial_two_sided(k, n) == pytest.approx(expected, abs=1e-15)


def test_mcnemar_counts_only_the_discordant_pairs() -> None:
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    a = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 0])  # right on 8
    b = np.array([0, 1, 2, 0, 0, 0, 0, 0, 8, 0])  # right on 4: 3 of them A also has
    result = stats.mcnemar(a, b, labels)
    assert (result.a_only, result.b_only, result.discordant) == (5, 1, 6)
    assert (result.a_correct, result.b_correct, result.n) == (8, 4, 10)
    assert result.difference == pytest.approx(0.4)
    assert result.p_value == pytest.approx(14 / 64)
    assert not result.significant()
    probabilities = np.eye(10)[a]  # class scores are read as their argmax
    assert stats.mcnemar(probabilities, b, labels) == result


def test_five_images_of_ten_thousand_are_noise() -> None:
    result = stats.mcnemar_counts(a_only=30, b_only=25, n=10_000, a_correct=9705, b_correct=9700)
    assert result.p_value == pytest.approx(sum(math.comb(55, i) for i in range(26)) * 2 / 2**55)
    assert 0.5 < result.p_value < 0.7
    lopsided = stats.mcnemar_counts(a_only=40, b_only=10, n=10_000, a_correct=9730, b_correct=9700)
    assert lopsided.p_value < 0.001


def test_bootstrap_interval_is_fixed_by_its_seed_and_brackets_the_difference() -> None:
    test = stats.mcnemar_counts(a_only=30, b_only=25, n=10_000, a_correct=9705, b_correct=9700)
    first = stats.bootstrap_difference(test)
    assert first == stats.bootstrap_difference(test)
    assert first.estimate == pytest.approx(0.0005)
    assert first.low < 0 < first.high  # 5 images either way: the interval holds no difference too
    # The bootstrap's spread matches the paired difference's standard error, sqrt(b + c) / n.
    se = math.sqrt(55) / 10_000
    assert first.half_width == pytest.approx(1.96 * se, rel=0.1)
    assert stats.bootstrap_difference(test, seed=1) != first


def test_bootstrap_of_identical_or_always_better_models_has_no_width() -> None:
    same = stats.mcnemar_counts(a_only=0, b_only=0, n=100, a_correct=90, b_correct=90)
    assert stats.bootstrap_difference(same) == stats.Interval(0.0, 0.0, 0.0)
    always = stats.mcnemar_counts(a_only=100, b_only=0, n=100, a_correct=100, b_correct=0)
    assert (stats.bootstrap_difference(always).low, stats.bootstrap_difference(always).high) == (1.0, 1.0)


def test_student_t_against_closed_forms() -> None:
    # df = 1 is the Cauchy distribution; df = 2 has CDF 1/2 + t / (2 sqrt(2 + t^2)).
    assert stats.t_cdf(1.0, 1) == pytest.approx(0.75)
    assert stats.t_cdf(2.0, 2) == pytest.approx(0.5 + 2 / (2 * math.sqrt(6)))
    assert stats.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475))
    assert stats.t_quantile(0.975, 1e9) == pytest.approx(1.959964, abs=1e-6)


def test_mean_interval_by_hand() -> None:
    summary = stats.mean_interval([0.97, 0.98])
    assert summary.mean == pytest.approx(0.975)
    assert summary.std == pytest.approx(math.sqrt(0.00005))
    half = math.tan(math.pi * 0.475) * math.sqrt(0.00005) / math.sqrt(2)  # t(0.975, 1) * s / sqrt(n)
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(0.975 - half), pytest.approx(0.975 + half))
    one = stats.mean_interval([0.9])
    assert (one.mean, one.std, one.ci_low, one.ci_high) == (0.9, 0.0, 0.9, 0.9)
    with pytest.raises(ValueError):
        stats.mean_interval([])


def test_welch_by_hand() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]
    result = stats.welch(a, b)
    # var(a) = 5/3, var(b) = 20/3; se^2 = 5/12 + 20/12 = 25/12
    assert result.difference == -2.5
    assert result.t == pytest.approx(-2.5 / math.sqrt(25 / 12))
    assert result.df == pytest.approx((25 / 12) ** 2 / ((5 / 12) ** 2 / 3 + (20 / 12) ** 2 / 3))
    from scipy import stats as scipy_stats

    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert result.p_value == pytest.approx(float(reference.pvalue))
    assert result.interval.low < -2.5 < result.interval.high
    assert result.interval.half_width == pytest.approx(stats.t_quantile(0.975, result.df) * math.sqrt(25 / 12))


def test_welch_without_spread_and_with_too_few_seeds() -> None:
    assert stats.welch([0.9, 0.9], [0.9, 0.9]).p_value == 1.0
    assert stats.welch([0.91, 0.91], [0.9, 0.9]).p_value == 0.0
    assert stats.welch([0.97, 0.975, 0.972], [0.95, 0.951, 0.949]).significant()
    with pytest.raises(ValueError):
        stats.welch([0.9], [0.8, 0.7])
