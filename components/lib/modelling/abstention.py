"""Abstention: a classifier answers only when its calibrated confidence (the highest class probability)
is at least `min_confidence`, and abstains otherwise, still giving its probabilities.

Train chooses the threshold on the validation split, after calibration, for a target: the lowest
confidence that keeps the accuracy of the answered rows at or above --abstain_at_accuracy (answering as
many rows as it can), or the one that answers --abstain_at_coverage of the rows. It is kept in the
calibration file (CALIBRATION_FILE, key ABSTENTION_KEY), which export and register carry; evaluate,
predict, the model server and the card read it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from components.lib.data.contract import CALIBRATION_FILE
from components.lib.errors import UserError

ABSTENTION_KEY = "abstention"
COVERAGE_GRID = tuple(round(0.05 * step, 2) for step in range(1, 21))  # the coverage curve's points


def answered_by_confidence(probabilities: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' confidences, most confident first, and the accuracy of the k most confident rows for each k."""
    confidence = probabilities.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (probabilities.argmax(axis=1) == gold)[order]
    return confidence[order], np.cumsum(correct) / np.arange(1, len(gold) + 1)


def choose_min_confidence(probabilities: np.ndarray, gold: np.ndarray, accuracy: float, coverage: float) -> dict:
    """The threshold for a target accuracy (the most rows answered while their accuracy holds) or coverage,
    with what it gives on these rows. No row reaching the accuracy: the highest confidence, said so."""
    confidences, accuracies = answered_by_confidence(probabilities, gold)
    if accuracy:
        reaching = np.nonzero(accuracies >= accuracy)[0]
        last = int(reaching.max()) if len(reaching) else 0
        target = f"accuracy {accuracy}"
    else:
        last = max(math.ceil(coverage * len(gold)) - 1, 0)
        target = f"coverage {coverage}"
    min_confidence = float(confidences[last])
    chosen = {"min_confidence": min_confidence, "target": target, **answered_at(probabilities, gold, min_confidence)}
    if accuracy and not len(reaching):
        chosen["note"] = f"no share of the validation rows reaches accuracy {accuracy}: it answers only the most confident"
    return chosen


def answered_at(probabilities: np.ndarray, gold: np.ndarray, min_confidence: float) -> dict:
    """Coverage (share of rows answered) and the accuracy of the answered rows at a threshold."""
    answered = probabilities.max(axis=1) >= min_confidence
    right = probabilities.argmax(axis=1) == gold
    return {"rows": len(gold), "coverage": float(answered.mean()), "accuracy": float(right[answered].mean()) if answered.any() else 0.0}


def coverage_curve(probabilities: np.ndarray, gold: np.ndarray) -> list[dict]:
    """Accuracy of the most confident rows at each coverage of COVERAGE_GRID."""
    _, accuracies = answered_by_confidence(probabilities, gold)
    return [{"coverage": share, "accuracy": float(accuracies[max(math.ceil(share * len(gold)) - 1, 0)])} for share in COVERAGE_GRID]


def read_min_confidence(folder: Path, where: str) -> float | None:
    """The model's abstention threshold; None when it has none (trained without a target, or before abstention existed)."""
    path = folder / CALIBRATION_FILE
    if not path.is_file():
        return None
    abstention = json.loads(path.read_text()).get(ABSTENTION_KEY)
    if abstention is None:
        return None
    try:
        value = float(abstention["min_confidence"])
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{where}: {CALIBRATION_FILE} holds an abstention train did not write ({error})") from None
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{where}: {CALIBRATION_FILE} holds min_confidence {value}, outside [0, 1]")
    return value
