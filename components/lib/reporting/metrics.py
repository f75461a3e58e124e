"""Classification metrics, computed one way for validation, test, export checks and the registry gate."""

from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "weighted_f1": True, "macro_precision": True, "macro_recall": True, "loss": False,
                    "perplexity": False, "next_token_accuracy": True,
                    "micro_f1": True, "micro_precision": True, "micro_recall": True,  # multi-label's
                    "subset_accuracy": True, "hamming_loss": False}  # fmt: skip
LANGUAGE_MODEL_METRICS = ("loss", "perplexity", "next_token_accuracy")  # what a causal LM's evaluation reports


def confusion_matrix(gold: np.ndarray, predicted: np.ndarray, num_labels: int) -> np.ndarray:
    """Rows are gold labels, columns predicted labels."""
    return np.bincount(gold * num_labels + predicted, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def classification_metrics(gold: np.ndarray, predicted: np.ndarray, label_names: list[str]) -> dict:
    """Accuracy; macro and weighted precision, recall and F1; per-class scores; the confusion matrix.

    A class with no predictions has precision 0, and one with no gold rows recall 0 (as
    scikit-learn's `zero_division=0`).
    """
    gold = np.asarray(gold, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    matrix = confusion_matrix(gold, predicted, len(label_names))
    true_positive = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1).astype(float)
    precision, recall, f1 = precision_recall_f1(matrix)
    weights = support / support.sum() if support.sum() else np.zeros_like(support)
    return {
        "rows": int(len(gold)),
        "accuracy": float(true_positive.sum() / max(len(gold), 1)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
        "per_class": {
            name: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(support[index]),
            }
            for index, name in enumerate(label_names)
        },
        "confusion_matrix": {"labels": list(label_names), "rows_gold_columns_predicted": matrix.tolist()},
    }


def precision_recall_f1(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's precision, recall and F1 from a confusion matrix (rows gold), 0 where undefined."""
    true_positive = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1).astype(float)
    predicted_count = matrix.sum(axis=0).astype(float)
    precision = np.divide(true_positive, predicted_count, out=np.zeros_like(true_positive), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return precision, recall, f1


def precision_recall_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(precision, recall, average precision) of one class against the rest, over every threshold
    from the highest score down; None when the class has no positive rows. Tied scores form one
    threshold, and average precision is scikit-learn's (the step-wise area under the curve)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    positives = int(is_positive.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], is_positive[order]
    last_of_each_threshold = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    true_positives = np.cumsum(hits)[last_of_each_threshold]
    precision = true_positives / (last_of_each_threshold + 1)
    recall = true_positives / positives
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[1.0, precision], np.r_[0.0, recall], average_precision


def is_improvement(metric: str, candidate: float, best: float | None, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    if HIGHER_IS_BETTER[metric]:
        return candidate > best + min_delta
    return candidate < best - min_delta


def headline(metrics: dict) -> dict:
    """The few numbers people compare first."""
    return {key: round(metrics[key], 4) for key in ("accuracy", "macro_f1", "weighted_f1") if key in metrics}
