"""The test split cut into slices, and a classifier's scores on each: evaluate reports them, register's
gate compares the candidate with production on each slice large enough to judge.

Slices: the length of each text in tokens (buckets at LENGTH_EDGES), its source file (when the test
rows come from more than one), each value of each --slice_columns column preprocess carried
("condition = Depression"; the MAX_VALUES_PER_COLUMN most frequent, the rest together), and the
detected language when the test split holds at least two of SMALL_SLICE_ROWS rows or more (one
language and a few misdetected short texts would be slices of noise). A slice smaller than
SMALL_SLICE_ROWS is kept, marked small: its interval says how little it shows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from components.lib.data.contract import SLICE_COLUMN_PREFIX
from components.lib.data.language import UNSURE, detect_languages
from components.lib.reporting.metrics import confusion_matrix, precision_recall_f1
from components.lib.reporting.significance import bootstrap_interval

LENGTH_EDGES = (16, 32, 64, 128)  # tokens; a bucket holds lengths from one edge up to the next
SMALL_SLICE_ROWS = 30  # below this many rows a slice's scores are mostly noise (at 30 rows accuracy's interval is +-0.18)
SLICE_METRICS = ("accuracy", "macro_f1")
MAX_VALUES_PER_COLUMN = 30  # a column of many values (an id, a free text) would make slices of a row or two each
MISSING_VALUE, OTHER_VALUES = "(missing)", "(other values)"
DETECTED_LANGUAGE = "detected language"  # its slices' column name, apart from a --slice_columns "language"
TEST_SLICE_COLUMNS = ["text", "length", "source_row"]  # what slices_of_test_split reads, besides the slice columns

log = logging.getLogger(__name__)


def length_bucket(length: int) -> str:
    low = max((edge for edge in LENGTH_EDGES if edge <= length), default=0)
    high = min((edge for edge in LENGTH_EDGES if edge > length), default=None)
    return f"tokens {low}+" if high is None else f"tokens {low}-{high - 1}"


def slices_of_test_split(table: pa.Table) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The slices of a test split read with TEST_SLICE_COLUMNS and its slice columns, and its rows per
    detected language: what evaluate reports and register's gate compares on."""
    languages = detect_languages(table.column("text").to_pylist())
    counts = dict(Counter(languages).most_common())
    columns = slice_values(table)
    if sum(count >= SMALL_SLICE_ROWS for language, count in counts.items() if language != UNSURE) >= 2:
        columns[DETECTED_LANGUAGE] = [language for language in languages]
    return split_slices(table.column("length").to_numpy(), table.column("source_row").to_pylist(), columns), counts


def split_slices(lengths: np.ndarray, source_rows: list[str], columns: dict[str, list[str | None]] | None = None) -> dict[str, np.ndarray]:
    """{slice name: the indices of its rows}: length buckets (short to long), source files, then the
    values of each of `columns` ({--slice_columns name: a value per row}), most rows first."""
    slices: dict[str, list[int]] = {}
    for index, length in sorted(enumerate(lengths.tolist()), key=lambda item: item[1]):
        slices.setdefault(length_bucket(length), []).append(index)
    sources: dict[str, list[int]] = {}
    for index, source_row in enumerate(source_rows):
        sources.setdefault(source_row.rpartition(":")[0] or source_row, []).append(index)
    if len(sources) > 1:
        slices.update({f"source {name}": rows for name, rows in sorted(sources.items())})
    for column, values in (columns or {}).items():
        slices.update(column_slices(column, values))
    return {name: np.array(sorted(rows)) for name, rows in slices.items()}


def column_slices(column: str, values: list[str | None]) -> dict[str, list[int]]:
    """{"column = value": its rows} for the MAX_VALUES_PER_COLUMN most frequent values, the rest under one name."""
    named = [MISSING_VALUE if value is None else value for value in values]
    counts = Counter(named)
    kept = {value for value, _ in counts.most_common(MAX_VALUES_PER_COLUMN)}
    if len(counts) > len(kept):
        log.warning(
            "slice column %r: %d values; the %d most frequent are slices of their own, the other %d rows are scored together as %r",
            column, len(counts), len(kept), sum(count for value, count in counts.items() if value not in kept), OTHER_VALUES,
        )  # fmt: skip
    rows: dict[str, list[int]] = {f"{column} = {value}": [] for value, _ in counts.most_common(MAX_VALUES_PER_COLUMN)}
    for index, value in enumerate(named):
        rows.setdefault(f"{column} = {value if value in kept else OTHER_VALUES}", []).append(index)
    return rows


def slice_values(table: pa.Table) -> dict[str, list[str | None]]:
    """{--slice_columns name: its value per row} of a split read with its slice columns."""
    carried = [name for name in table.column_names if name.startswith(SLICE_COLUMN_PREFIX)]
    return {name.removeprefix(SLICE_COLUMN_PREFIX): table.column(name).to_pylist() for name in carried}


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

    def macro_f1(rows: np.ndarray) -> float:  # called for each bootstrap resample: the F1s alone, from the confusion matrix
        matrix = confusion_matrix(gold[rows], predicted[rows], len(label_names))
        present = matrix.sum(axis=1) > 0
        return float(np.mean(precision_recall_f1(matrix)[2][present]))

    return macro_f1
