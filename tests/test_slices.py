"""Slices of the test split: how rows are cut, each slice's scores, and the gate's check on each slice."""

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import accuracy_score, f1_score

from components.lib.quality_gate import GateFlags
from components.lib.reporting.significance import bootstrap_interval
from components.lib.reporting.slices import SMALL_SLICE_ROWS, slice_scores, slices_of_test_split, split_slices
from components.lib.tasks.classification_gate import slice_refusal

LABELS = ["negative", "neutral", "positive"]


def test_rows_are_sliced_by_length_in_tokens_and_by_source_file_when_there_are_several():
    lengths = np.array([3, 15, 16, 31, 64, 200, 127])
    sources = ["a.csv:1", "a.csv:2", "b.csv:1", "a.csv:3", "b.csv:2", "b.csv:3", "a.csv:4"]
    slices = split_slices(lengths, sources)
    assert {name: rows.tolist() for name, rows in slices.items()} == {
        "tokens 0-15": [0, 1],
        "tokens 16-31": [2, 3],
        "tokens 64-127": [4, 6],
        "tokens 128+": [5],
        "source a.csv": [0, 1, 3, 6],
        "source b.csv": [2, 4, 5],
    }
    assert list(split_slices(lengths, ["a.csv:1"] * 7)) == ["tokens 0-15", "tokens 16-31", "tokens 64-127", "tokens 128+"]


def test_each_slices_scores_agree_with_scikit_learn_on_its_rows_and_small_slices_are_marked():
    rng = np.random.default_rng(1)
    gold, predicted = rng.integers(0, 3, 120), rng.integers(0, 3, 120)
    slices = {"big": np.arange(100), "small": np.arange(100, 120)}
    scores = {entry["slice"]: entry for entry in slice_scores(slices, gold, predicted, LABELS)}
    for name, rows in slices.items():
        assert scores[name]["accuracy"] == pytest.approx(accuracy_score(gold[rows], predicted[rows]))
        assert scores[name]["macro_f1"] == pytest.approx(
            f1_score(gold[rows], predicted[rows], average="macro", labels=np.unique(gold[rows]))
        )
        low, high = scores[name]["accuracy_95"]
        assert low <= scores[name]["accuracy"] <= high

        def sklearn_macro_f1(resample, rows=rows):
            return f1_score(gold[rows][resample], predicted[rows][resample], average="macro", labels=np.unique(gold[rows][resample]))

        assert scores[name]["macro_f1_95"] == pytest.approx(bootstrap_interval(sklearn_macro_f1, len(rows)))
    assert scores["small"]["small"] is True and scores["big"]["small"] is False and 20 < SMALL_SLICE_ROWS <= 100


def slice_table(texts: list[str]) -> pa.Table:
    return pa.table({"text": texts, "length": [12] * len(texts), "source_row": [f"a.csv:{index}" for index in range(len(texts))]})


def test_the_detected_language_is_a_slice_only_when_two_languages_each_have_enough_rows():
    english, spanish = "I really love this phone, the battery lasts all day", "Me encanta este teléfono, la batería dura todo el día"
    slices, languages = slices_of_test_split(slice_table([english] * 40 + [spanish] * SMALL_SLICE_ROWS))
    assert languages == {"en": 40, "es": SMALL_SLICE_ROWS}
    assert slices["detected language = en"].tolist() == list(range(40))
    assert slices["detected language = es"].tolist() == list(range(40, 40 + SMALL_SLICE_ROWS))
    slices, languages = slices_of_test_split(slice_table([english] * 40 + [spanish] * (SMALL_SLICE_ROWS - 1)))
    assert languages["es"] == SMALL_SLICE_ROWS - 1 and not any(name.startswith("detected language") for name in slices)


def flags(min_slice_rows: int) -> GateFlags:
    return GateFlags("", 0.0, True, 0.1, True, 0.0, significance=0.05, min_slice_rows=min_slice_rows, max_slice_regression=0.05)


def accuracy_on(gold, predicted):
    return lambda rows: float(np.mean(gold[rows] == predicted[rows]))


def test_a_slice_made_worse_is_refused_by_name_though_the_whole_test_split_is_within_the_margin():
    """Production is right on all 400 rows; the candidate errs on 30 of the 200 long ones: 0.075 worse overall, within
    --max_regression 0.1, but 0.15 worse on the long slice, far beyond --max_slice_regression 0.05."""
    gold = np.zeros(400, dtype=int)
    candidate = gold.copy()
    candidate[200:230] = 1
    slices = {"tokens 0-15": np.arange(200), "tokens 16-31": np.arange(200, 400)}
    comparison: dict = {}
    why = slice_refusal(accuracy_on(gold, candidate), accuracy_on(gold, gold), slices, flags(100), comparison)
    assert why is not None and why.startswith("on the test slice 'tokens 16-31' (200 rows) the candidate is more than")
    assert comparison["slice_level"] == 0.025 and [entry["slice"] for entry in comparison["slices"]] == list(slices)
    # The same candidate with slices too small to judge: no slice check.
    assert slice_refusal(accuracy_on(gold, candidate), accuracy_on(gold, gold), slices, flags(201), {}) is None


def test_make_runs_summary_names_the_weakest_slice_judged_and_the_abstention():
    from components.lib.data.contract import CLASSIFICATION
    from components.lib.tasks import task_named

    test = {"accuracy": 0.8, "macro_f1": 0.7, "abstention": {"min_confidence": 0.86, "coverage": 0.47, "accuracy": 0.979},
            "slices": [{"slice": "tokens 0-15", "rows": 129, "accuracy": 0.83, "small": False},
                       {"slice": "tokens 16-31", "rows": 209, "accuracy": 0.76, "small": False},
                       {"slice": "source b.csv", "rows": 9, "accuracy": 0.2, "small": True}]}  # fmt: skip
    evaluation = {"test": test, "baseline_majority_class": {"accuracy": 0.5, "macro_f1": 0.2}}
    export_report = {"parity": {"max_abs_logit_diff": 0.0, "argmax_agreement": 1.0, "rows": 10}, "models": {}}
    lines = task_named(CLASSIFICATION).summary_lines(evaluation, export_report)
    assert "weakest slice: tokens 16-31 (209 rows), accuracy 0.7600; all in report.html" in lines
    assert "abstains below confidence 0.8600: answers 47.0% of the test rows at accuracy 0.9790" in lines
