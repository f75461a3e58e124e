"""The test split cut into slices, and a classifier's scores on each: evaluate reports them, register's
gate compares the candidate with production on each slice large enough to judge.

Slices: the length of each text in tokens (buckets at LENGTH_EDGES), and its source file (when the test
rows come from more than one). A slice smaller than SMALL_SLICE_ROWS is kept, marked small: its
interval says how little it shows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from components.lib.reporting.metrics import classification_metrics
from components.lib.reporting.significance import bootstrap_interval

LENGTH_EDGES = (16, 32, 64, 128)  # tokens; a bucket holds lengths from one edge up to the next
SMALL_SLICE_ROWS = 30  # below this many rows a slice's scores are mostly noise (at 30 rows accuracy's interval is +-0.18)
SLICE_METRICS = ("accuracy", "macro_f1")


def length_bucket(length: int) -> str:
    low = max((edge for edge in LENGTH_EDGES if edge <= length), default=0)
    high = min((edge for edge in LENGTH_EDGES if edge > length), default=None)
    return f"tokens {low}+" if high is None else f"tokens {low}-{high - 1}"


def split_slices(lengths: np.ndarray, source_rows: list[str]) -> dict[str, np.ndarray]:
    """{slice name: the indices of its rows}, length buckets first (short to long), then source files."""
    slices: dict[str, list[int]] = {}
    for index, length in sorted(enumerate(lengths.tolist()), key=lambda item: item[1]):
        slices.setdefault(length_bucket(length), []).append(index)
    sources: dict[str, list[int]] = {}
    for index, source_row in enumerate(source_rows):
        sources.setdefault(source_row.rpartition(":")[0] or source_row, []).append(index)
    if len(sources) > 1:
        slices.update({f"source {name}": rows for name, rows in sorted(sources.items())})
    return {name: np.array(sorted(rows)) for name, rows in slices.items()}


def slice_scores(slices: dict[str, np.ndarray], gold: np.ndarray, predicted: np.ndarray, label_names: list[str]) -> list[dict]:
    """Accuracy and macro-F1 on each slice, each with a 95% bootstrap interval; macro-F1 over the classes the
    slice holds (a class absent from it would count as F1 0)."""
    scores = []
    for name, rows in slices.items():
        entry: dict = {"slice": name, "rows": len(rows), "small": len(rows) < SMALL_SLICE_ROWS}
        for metric in SLICE_METRICS:
            score = slice_scorer(gold[rows], predicted[rows], label_names, metric)
            entry[metric] = score(np.arange(len(rows)))
            entry[f"{metric}_95"] = bootstrap_interval(score, len(rows))
        scores.append(entry)
    return scores


def slice_scorer(gold: np.ndarray, predicted: np.ndarray, label_names: list[str], metric: str) -> Callable[[np.ndarray], float]:
    """A function from row indices to `metric` on those rows, macro-F1 over the classes among their gold labels."""
    if metric == "accuracy":
        return lambda rows: float(np.mean(gold[rows] == predicted[rows])) if len(rows) else float("nan")

    def macro_f1(rows: np.ndarray) -> float:
        present = np.unique(gold[rows])
        per_class = classification_metrics(gold[rows], predicted[rows], label_names)["per_class"]
        return float(np.mean([per_class[label_names[label]]["f1"] for label in present]))

    return macro_f1
