"""The significance tests against values worked out by hand or from tables."""

import math

import numpy as np
import pytest

from components.lib.reporting.significance import mcnemar, paired_bootstrap, paired_t_test, two_sided_bootstrap


def test_the_paired_t_test_matches_the_table():
    """Differences 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), t = 3 / (sqrt(2.5) / sqrt(5)) = 4.243, 4 dof -> p = 0.0132."""
    result = paired_t_test([2, 4, 6, 8, 10], [1, 2, 3, 4, 5])
    assert result["t"] == pytest.approx(4.2426, abs=1e-4) and result["p_value"] == pytest.approx(0.01324, abs=1e-4)
    assert paired_t_test([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])["p_value"] == 1.0


@pytest.mark.parametrize("sign", [1, -1])
def test_identical_non_zero_differences_are_as_significant_as_can_be(sign):
    """Every fold differs by the same amount: no spread, t is infinite and p is 0, not the 1 of no difference."""
    first = [0.5, 0.75, 0.25, 0.625]  # binary fractions: every difference is exactly 0.125
    result = paired_t_test(first, [value - sign * 0.125 for value in first])
    assert result["p_value"] == 0.0 and result["t"] == sign * math.inf
    assert result["mean_difference"] == sign * 0.125


def test_mcnemar_is_exact_for_few_disagreements_and_chi_square_for_many():
    gold = np.zeros(100, dtype=int)
    first, second = gold.copy(), gold.copy()
    second[:10] = 1  # only the first model is right on 10 rows
    first[10:12] = 1  # only the second on 2
    exact = mcnemar(gold, first, second)
    assert exact["test"] == "McNemar (exact binomial)" and exact["p_value"] == pytest.approx(0.03857, abs=1e-5)
    second[:30] = 1  # rows 10 and 11 now wrong for both: 28 against 0, (|28 - 0| - 1)^2 / 28 = 26.04, 1 dof
    many = mcnemar(gold, first, second)
    assert many["test"] == "McNemar (chi-square with continuity correction)"
    assert many["p_value"] == pytest.approx(math.erfc(math.sqrt(27**2 / 28 / 2)), rel=1e-9) == pytest.approx(3.35e-7, rel=0.01)
    assert mcnemar(gold, first, first)["p_value"] == 1.0


def accuracy_on(gold: np.ndarray, predicted: np.ndarray):
    return lambda indices: float(np.mean(gold[indices] == predicted[indices]))


def test_the_paired_bootstrap_agrees_with_the_normal_approximation_for_a_mean_difference():
    """Accuracy is a mean of per-row 0/1, so the difference of two is a mean of per-row d in {-1, 0, 1}: here 40 rows
    of -1 and 20 of +1 in 400, mean -0.05, standard error sqrt((60/400 - 0.05^2) / 400) = 0.0192. So the interval is
    -0.05 +- 1.96 * 0.0192 and P(difference >= 0) = 1 - Phi(0.05 / 0.0192) = 0.0046."""
    gold = np.zeros(400, dtype=int)
    first, second = gold.copy(), gold.copy()
    first[:40] = 1  # only the second model is right
    second[40:60] = 1  # only the first model is right
    result = paired_bootstrap(accuracy_on(gold, first), accuracy_on(gold, second), 400, margin=0.0)
    standard_error = math.sqrt((60 / 400 - 0.05**2) / 400)
    assert result["difference"] == pytest.approx(-0.05)
    assert result["interval_95"] == pytest.approx([-0.05 - 1.96 * standard_error, -0.05 + 1.96 * standard_error], abs=0.006)
    assert result["p_value"] == pytest.approx(0.0046, abs=0.004)
    # A margin as wide as the difference is not exceeded: about half the resamples fall either side of it.
    assert paired_bootstrap(accuracy_on(gold, first), accuracy_on(gold, second), 400, margin=0.05)["p_value"] == pytest.approx(
        0.5, abs=0.06
    )


def test_the_paired_bootstrap_of_one_model_against_itself_is_never_significant():
    gold = np.arange(50) % 3
    predicted = (gold + (np.arange(50) % 4 == 0)) % 3
    result = paired_bootstrap(accuracy_on(gold, predicted), accuracy_on(gold, predicted), 50, margin=0.0)
    assert result["difference"] == 0.0 and result["interval_95"] == [0.0, 0.0] and result["p_value"] == 1.0


def test_the_two_sided_bootstrap_doubles_the_smaller_tail_and_is_1_for_no_difference():
    gold = np.zeros(400, dtype=int)
    first, second = gold.copy(), gold.copy()
    first[:40] = 1
    second[40:60] = 1
    one_sided = paired_bootstrap(accuracy_on(gold, first), accuracy_on(gold, second), 400, margin=0.0)["p_value"]  # P(d >= 0)
    assert two_sided_bootstrap(accuracy_on(gold, first), accuracy_on(gold, second), 400)["p_value"] == pytest.approx(2 * one_sided)
    assert two_sided_bootstrap(accuracy_on(gold, first), accuracy_on(gold, first), 400)["p_value"] == 1.0
