"""Multi-label scores: each label is a yes/no decision, the model's probability against that label's threshold.

- micro precision/recall/F1 count every (text, label) decision alike, so frequent labels weigh most;
- macro F1 is the mean of the per-label F1s (every label weighs alike), weighted F1 weighs them by support;
- subset accuracy: the share of texts whose whole predicted set is exactly right;
- Hamming loss: the share of (text, label) decisions that are wrong;
- per label: precision, recall, F1, support and average precision (the area under its precision-recall curve).
A label's F1 is 0 when it has neither gold nor predicted positives (scikit-learn's zero_division=0).

Thresholds are tuned per label on the validation split (`tune_thresholds`): the one of highest F1 there;
a label without validation positives keeps DEFAULT_THRESHOLD.
"""

from __future__ import annotations

import numpy as np

from components.lib.reporting.metrics import precision_recall_curve

DEFAULT_THRESHOLD = 0.5
HEADLINE = ("micro_f1", "macro_f1", "weighted_f1", "subset_accuracy", "hamming_loss")


def multilabel_metrics(gold: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray, label_names: list[str]) -> dict:
    """Scores of (rows x labels) 0/1 `gold` against `probabilities` cut at `thresholds`."""
    predicted = probabilities >= thresholds[None, :]
    positive = gold > 0.5
    tp = (predicted & positive).sum(axis=0).astype(float)
    fp = (predicted & ~positive).sum(axis=0).astype(float)
    fn = (~predicted & positive).sum(axis=0).astype(float)
    support = positive.sum(axis=0)
    f1 = safe_divide(2 * tp, 2 * tp + fp + fn)
    per_label = {}
    for index, name in enumerate(label_names):
        curve = precision_recall_curve(positive[:, index], probabilities[:, index])
        per_label[name] = {
            "precision": float(safe_divide(tp[index], tp[index] + fp[index])),
            "recall": float(safe_divide(tp[index], tp[index] + fn[index])),
            "f1": float(f1[index]),
            "support": int(support[index]),
            "threshold": float(thresholds[index]),
            "average_precision": curve[2] if curve else None,
        }
    micro_precision, micro_recall = safe_divide(tp.sum(), tp.sum() + fp.sum()), safe_divide(tp.sum(), tp.sum() + fn.sum())
    rows = len(gold)
    return {
        "rows": rows,
        "micro_precision": float(micro_precision),
        "micro_recall": float(micro_recall),
        "micro_f1": float(safe_divide(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())),
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "weighted_f1": float(safe_divide((f1 * support).sum(), support.sum())),
        "subset_accuracy": float((predicted == positive).all(axis=1).mean()) if rows else 0.0,
        "hamming_loss": float((predicted != positive).mean()) if rows else 0.0,
        "label_cardinality": {
            "gold": float(positive.sum(axis=1).mean()) if rows else 0.0,
            "predicted": float(predicted.sum(axis=1).mean()) if rows else 0.0,
        },  # fmt: skip
        "per_label": per_label,
    }


def headline(metrics: dict) -> dict:
    return {key: round(metrics[key], 4) for key in HEADLINE}


def safe_divide(numerator, denominator):
    return np.divide(numerator, denominator, out=np.zeros_like(np.asarray(numerator, dtype=float)), where=np.asarray(denominator) > 0)


def tune_thresholds(gold: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Per label, the threshold of highest F1 on these rows (ties: the highest threshold), and the labels
    (indices) without positive rows, which keep DEFAULT_THRESHOLD."""
    thresholds = np.full(gold.shape[1], DEFAULT_THRESHOLD, dtype=np.float64)
    untuned = []
    for index in range(gold.shape[1]):
        positive = gold[:, index] > 0.5
        if not positive.any():
            untuned.append(index)
            continue
        order = np.argsort(-probabilities[:, index], kind="stable")
        scores, hits = probabilities[order, index], positive[order]
        tp = np.cumsum(hits)
        predicted = np.arange(1, len(hits) + 1)
        f1 = 2 * tp / (predicted + positive.sum())
        # a cut between equal scores cannot be made: only the last row of each run of equal scores is a cut
        cuts = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
        best = cuts[np.argmax(f1[cuts])]
        thresholds[index] = float(scores[best])
    return thresholds, untuned


def frequency_baseline(label_counts: dict[str, int], rows: int, label_names: list[str]) -> list[str]:
    """The label-frequency baseline's answer for every text: the most frequent training labels, as many as
    give the highest micro-F1 on the training rows (a constant set; empty if no label is that common)."""
    counts = np.array([label_counts.get(name, 0) for name in label_names], dtype=float)
    order = np.argsort(-counts, kind="stable")
    best_size, best_f1 = 0, 0.0
    for size in range(1, len(order) + 1):
        chosen = counts[order[:size]]
        tp, fp, fn = chosen.sum(), (rows - chosen).sum(), counts.sum() - chosen.sum()
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best_f1:
            best_size, best_f1 = size, f1
    return [label_names[index] for index in sorted(order[:best_size])]
