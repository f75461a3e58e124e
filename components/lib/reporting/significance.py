"""Is one model or configuration really better than another? Three tests:

- a paired t-test over the folds of a K-fold run (both configurations saw the same folds; scipy.stats);
- McNemar's test on one test split: only the rows where exactly one model is right count. Exact
  (binomial) below 25 such rows, else the chi-square version with continuity correction
  (Edwards 1948), as is usual;
- a paired bootstrap of any metric on one test split (register's comparison with production): the
  rows resampled, both models scored on each resample.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

EXACT_BELOW = 25


def paired_t_test(first: list[float], second: list[float]) -> dict:
    """Two-sided paired t-test of first - second; n - 1 degrees of freedom."""
    differences = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    if len(differences) < 2:
        return {"test": "paired t-test", "folds": len(differences), "p_value": None, "note": "needs two folds or more"}
    if np.all(differences == differences[0]):  # no spread: t is infinite, or undefined when every difference is 0
        p_value = 1.0 if differences[0] == 0 else 0.0
        statistic = 0.0 if differences[0] == 0 else math.copysign(math.inf, differences[0])
    else:
        from scipy import stats  # here, not at the top: evaluate imports this module for the bootstrap, and scipy.stats takes a second

        result = stats.ttest_rel(first, second)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return {"test": "paired t-test", "folds": len(differences), "mean_difference": float(differences.mean()),
            "t": statistic, "p_value": p_value}  # fmt: skip


def mcnemar(gold: np.ndarray, first: np.ndarray, second: np.ndarray) -> dict:
    """McNemar's test of two models' predictions on the same rows."""
    from scipy import stats

    first_right, second_right = first == gold, second == gold
    only_first, only_second = int((first_right & ~second_right).sum()), int((~first_right & second_right).sum())
    discordant = only_first + only_second
    if discordant == 0:
        p_value, version = 1.0, "exact binomial"
    elif discordant < EXACT_BELOW:
        p_value, version = float(stats.binomtest(only_first, discordant, 0.5).pvalue), "exact binomial"
    else:
        statistic = (abs(only_first - only_second) - 1) ** 2 / discordant
        p_value, version = float(stats.chi2.sf(statistic, df=1)), "chi-square with continuity correction"
    return {"test": f"McNemar ({version})", "rows": len(gold), "only_first_right": only_first, "only_second_right": only_second,
            "p_value": p_value}  # fmt: skip


BOOTSTRAP_SAMPLES = 1000  # resamples of the test rows; the p-value's own error is about 0.007 at p = 0.05
BOOTSTRAP_SEED = 0  # fixed, so that the same test rows give the same verdict


def paired_bootstrap(first: Callable[[np.ndarray], float], second: Callable[[np.ndarray], float], rows: int, margin: float) -> dict:
    """Is `first` worse than `second` by more than `margin`, on the same rows? Each argument scores a
    model on the rows at the given indices (any metric where higher is better). The rows are resampled
    with replacement BOOTSTRAP_SAMPLES times, both models scored on each resample, and the p-value is
    the share of resamples where first - second is at least -margin (one-sided; H0: first is not
    worse by more than margin, Koehn 2004's paired bootstrap). The interval is the 2.5th to 97.5th
    percentile of the differences."""
    everything = np.arange(rows)
    observed = first(everything) - second(everything)
    differences = resampled(lambda indices: first(indices) - second(indices), rows)
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"test": "paired bootstrap", "rows": rows, "samples": BOOTSTRAP_SAMPLES, "difference": float(observed),
            "interval_95": [float(low), float(high)], "margin": margin,
            "p_value": float(np.mean(differences >= -margin))}  # fmt: skip


def two_sided_bootstrap(first: Callable[[np.ndarray], float], second: Callable[[np.ndarray], float], rows: int) -> dict:
    """Do `first` and `second` differ on the same rows? The paired bootstrap's two-sided p-value: twice the smaller
    share of resamples on either side of no difference (at most 1), with the 95% interval of the difference."""
    everything = np.arange(rows)
    differences = resampled(lambda indices: first(indices) - second(indices), rows)
    p_value = min(1.0, 2 * min(float(np.mean(differences >= 0)), float(np.mean(differences <= 0))))
    low, high = np.percentile(differences, [2.5, 97.5])
    observed = float(first(everything) - second(everything))
    return {"test": "paired bootstrap", "rows": rows, "samples": BOOTSTRAP_SAMPLES, "difference": observed,
            "interval_95": [float(low), float(high)], "p_value": p_value}  # fmt: skip


def bootstrap_interval(score: Callable[[np.ndarray], float], rows: int) -> list[float]:
    """The 95% percentile-bootstrap interval of `score` (row indices -> a metric on those rows)."""
    return [float(value) for value in np.percentile(resampled(score, rows), [2.5, 97.5])]


def resampled(statistic: Callable[[np.ndarray], float], rows: int) -> np.ndarray:
    """`statistic` on BOOTSTRAP_SAMPLES resamples (with replacement) of `rows` rows, drawn with BOOTSTRAP_SEED."""
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    return np.array([statistic(generator.integers(0, rows, rows)) for _ in range(BOOTSTRAP_SAMPLES)])
