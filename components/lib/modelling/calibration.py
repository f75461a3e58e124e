"""Calibrated probabilities: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks") and the expected calibration error that measures it.

Train fits one temperature T on the validation split's logits, after training, with the best weights;
every reader of the model (evaluate, predict, export's copy, the registry and the model card's
snippet) turns logits into probabilities as softmax(logits / T). Dividing by T never changes which
class is largest, so accuracy and F1 are untouched; only the confidence moves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from components.lib.data.contract import CALIBRATION_FILE
from components.lib.errors import UserError

CALIBRATION_BINS = 15  # equal-width confidence bins, as in Guo et al.
TEMPERATURE_RANGE = (0.05, 20.0)  # searched on a log scale; a fit at either end is reported as such


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    exponent = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exponent / exponent.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits.astype(np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE that minimises the mean negative log-likelihood of `labels`."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)), bounds=(low, high), method="bounded")
    return float(math.exp(result.x))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per equal-width confidence bin: rows, mean confidence and accuracy (empty bins left out)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "rows": int(mask.sum()),
            "confidence": float(confidence[mask].mean()),
            "accuracy": float(correct[mask].mean()),
        }  # fmt: skip
        for b in range(bins)
        if (mask := index == b).any()
    ]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Sum over bins of (share of rows) x |accuracy - mean confidence|; 0 is perfectly calibrated."""
    gaps = [entry["rows"] * abs(entry["accuracy"] - entry["confidence"]) for entry in reliability_bins(probabilities, labels, bins)]
    return sum(gaps) / len(labels)


def calibration_summary(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """ECE and NLL of `logits` before (T = 1) and after dividing by `temperature` (none without rows)."""
    if not len(labels):
        return {"temperature": temperature, "rows": 0}
    before, after = softmax(logits), softmax(logits, temperature)
    return {
        "temperature": temperature,
        "rows": len(labels),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": negative_log_likelihood(logits, labels, 1.0),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
    }


def fit_calibration(logits: np.ndarray, labels: np.ndarray) -> dict:
    """What train writes to CALIBRATION_FILE: the temperature fitted on these (validation) rows, and how
    much it helped there. No rows: temperature 1 (probabilities as the model gives them), said so."""
    if not len(labels):
        return {"temperature": 1.0, "rows": 0, "note": "no validation rows: not calibrated"}
    temperature = fit_temperature(logits, labels)
    summary = {"fitted_on": "validation", **calibration_summary(logits, labels, temperature)}
    if not TEMPERATURE_RANGE[0] * 1.01 < temperature < TEMPERATURE_RANGE[1] / 1.01:
        summary["note"] = f"the fit stopped at the edge of {TEMPERATURE_RANGE}: the validation logits are degenerate"
    return summary


def write_calibration(folder: Path, calibration: dict) -> None:
    (folder / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2) + "\n")


def read_temperature(folder: Path, where: str) -> float:
    """The model's temperature; 1.0 for a model written before calibration existed (no file)."""
    path = folder / CALIBRATION_FILE
    if not path.is_file():
        return 1.0
    try:
        temperature = float(json.loads(path.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{where}: {CALIBRATION_FILE} is not a calibration train wrote ({error})") from None
    if not (math.isfinite(temperature) and temperature > 0):
        raise UserError(f"{where}: {CALIBRATION_FILE} holds temperature {temperature}; it must be a positive number")
    return temperature
