"""A classical multi-label baseline: TF-IDF and one logistic regression per label.

    python -m benchmarks.multilabel_baseline [PARQUET]

`tfidf_one_vs_rest` fits word 1-2-gram TF-IDF (sublinear tf, terms in at least 2 training texts) and
scikit-learn's OneVsRestClassifier(LogisticRegression) on the training texts, and scores the test texts
as the multi-label task does (components/lib/reporting/multilabel_metrics.py): each label's threshold is
the one of highest F1 on validation (`tune_thresholds`; 0.5 for a label without validation positives),
and `multilabel_metrics` gives micro-, macro- and weighted-F1, subset accuracy, Hamming loss and the
per-label scores. With validation texts, C is the one of C_GRID whose model, its thresholds tuned on
validation, has the highest validation micro-F1 (the first of equals); without them C is 1 and every
threshold 0.5.

The command runs it on data/sample/foldoc/foldoc.parquet (`text`, and `labels` joined by "|"), split
80/10/10 at random with SPLIT_SEED, and prints the scores and the seconds taken.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from benchmarks.common import REPO
from components.lib.reporting.multilabel_metrics import DEFAULT_THRESHOLD, HEADLINE, multilabel_metrics, tune_thresholds

FOLDOC = REPO / "data" / "sample" / "foldoc" / "foldoc.parquet"
LABEL_DELIMITER = "|"
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
DEFAULT_C = 1.0
SPLIT_SEED = 42  # the pipeline's default split_seed
SPLIT = (0.8, 0.1, 0.1)


def tfidf_one_vs_rest(
    train_texts: list[str],
    train_label_sets: list[set[str]],
    test_texts: list[str],
    test_label_sets: list[set[str]],
    label_names: list[str],
    validation_texts: list[str] | None = None,
    validation_label_sets: list[set[str]] | None = None,
) -> dict:
    """Test scores (multilabel_metrics' dict) of TF-IDF + one-vs-rest logistic regression, with `C`, the
    validation micro-F1 of each C tried (`validation_micro_f1`, empty without validation) and the notes
    of threshold tuning (`threshold_notes`)."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    train_features = vectorizer.fit_transform(train_texts)
    train_gold = label_matrix(train_label_sets, label_names)
    test_gold = label_matrix(test_label_sets, label_names)
    thresholds, notes, validation_micro_f1 = np.full(len(label_names), DEFAULT_THRESHOLD), [], {}
    if validation_texts is None:
        model = fit(train_features, train_gold, DEFAULT_C)
        chosen_c = DEFAULT_C
    else:
        validation_features = vectorizer.transform(validation_texts)
        validation_gold = label_matrix(validation_label_sets, label_names)
        best = None
        for c in C_GRID:
            candidate = fit(train_features, train_gold, c)
            probabilities = candidate.predict_proba(validation_features)
            candidate_thresholds, candidate_notes = tune_thresholds(validation_gold, probabilities)
            score = multilabel_metrics(validation_gold, probabilities, candidate_thresholds, label_names)["micro_f1"]
            validation_micro_f1[c] = score
            if best is None or score > best[0]:
                best = (score, c, candidate, candidate_thresholds, candidate_notes)
        _, chosen_c, model, thresholds, notes = best
    scores = multilabel_metrics(test_gold, model.predict_proba(vectorizer.transform(test_texts)), thresholds, label_names)
    return scores | {
        "C": chosen_c,
        "validation_micro_f1": validation_micro_f1,
        "threshold_notes": notes,
        "features": len(vectorizer.vocabulary_),
    }


def fit(features, gold: np.ndarray, c: float) -> OneVsRestClassifier:
    return OneVsRestClassifier(LogisticRegression(C=c, class_weight=None, max_iter=1000)).fit(features, gold)


def label_matrix(label_sets: list[set[str]], label_names: list[str]) -> np.ndarray:
    """(rows x labels) 0/1; a label outside `label_names` is a mistake."""
    column = {name: index for index, name in enumerate(label_names)}
    matrix = np.zeros((len(label_sets), len(label_names)), dtype=np.int64)
    for row, labels in enumerate(label_sets):
        for label in labels:
            if label not in column:
                raise ValueError(f"row {row}: label {label!r} is not one of {label_names}")
            matrix[row, column[label]] = 1
    return matrix


def seeded_split(rows: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, validation and test: a random 80/10/10 split."""
    order = np.random.default_rng(seed).permutation(rows)
    train_end = round(rows * SPLIT[0])
    validation_end = train_end + round(rows * SPLIT[1])
    return order[:train_end], order[train_end:validation_end], order[validation_end:]


def main(path: Path = FOLDOC) -> None:
    table = pq.read_table(path, columns=["text", "labels"])
    texts = table.column("text").to_pylist()
    label_sets = [set(labels.split(LABEL_DELIMITER)) for labels in table.column("labels").to_pylist()]
    label_names = sorted(set().union(*label_sets))
    train, validation, test = seeded_split(len(texts))
    print(
        f"{path.name}: {len(texts)} rows, {len(label_names)} labels; train {len(train)}, validation {len(validation)}, test {len(test)} (seed {SPLIT_SEED})"
    )

    def pick(indices: np.ndarray, values: list) -> list:
        return [values[index] for index in indices]

    start = time.perf_counter()
    scores = tfidf_one_vs_rest(
        pick(train, texts),
        pick(train, label_sets),
        pick(test, texts),
        pick(test, label_sets),
        label_names,
        pick(validation, texts),
        pick(validation, label_sets),
    )
    seconds = time.perf_counter() - start
    print(f"TF-IDF word 1-2-grams ({scores['features']} features) + one-vs-rest logistic regression, C {scores['C']:g}")
    print("validation micro-F1 by C: " + ", ".join(f"{c:g} {f1:.4f}" for c, f1 in scores["validation_micro_f1"].items()))
    print("test " + ", ".join(f"{key} {scores[key]:.4f}" for key in HEADLINE))
    print(
        f"test label cardinality: gold {scores['label_cardinality']['gold']:.3f}, predicted {scores['label_cardinality']['predicted']:.3f}"
    )
    for note in scores["threshold_notes"]:
        print(f"note: {note}")
    print("test F1 per label (support, threshold):")
    for name, label in sorted(scores["per_label"].items(), key=lambda item: -item[1]["support"]):
        print(f"  {name:<17} {label['f1']:.4f}  ({label['support']}, {label['threshold']:.3f})")
    print(f"seconds: {seconds:.1f} (fit {len(scores['validation_micro_f1']) or 1} models, tune thresholds, score)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDOC)
