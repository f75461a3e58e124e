"""A multi-label model's decision thresholds (THRESHOLDS_FILE): one per label, tuned on validation by train,
carried by export and register, read by evaluate, predict and the model server. A label is predicted
when its probability (a sigmoid of its logit) is at least its threshold."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from components.lib.data.contract import THRESHOLDS_FILE
from components.lib.errors import UserError


def write_thresholds(folder: Path, label_names: list[str], thresholds: np.ndarray, notes: list[str], rows: int) -> None:
    by_label = {name: round(float(value), 6) for name, value in zip(label_names, thresholds)}
    (folder / THRESHOLDS_FILE).write_text(
        json.dumps({"by_label": by_label, "tuned_on": f"{rows} validation rows", "notes": notes}, indent=2) + "\n"
    )


def read_thresholds(folder: Path, label_names: list[str], where: str) -> np.ndarray | None:
    """The thresholds in label order; None for a folder without the file (a single-label classifier)."""
    path = folder / THRESHOLDS_FILE
    if not path.is_file():
        return None
    try:
        by_label = json.loads(path.read_text())["by_label"]
        values = np.array([float(by_label[name]) for name in label_names])
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{where}: {THRESHOLDS_FILE} is not thresholds train wrote for labels {label_names} ({error})") from None
    if not all(math.isfinite(value) and 0.0 <= value <= 1.0 for value in values):
        raise UserError(f"{where}: {THRESHOLDS_FILE} holds a threshold outside [0, 1]")
    return values


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def mean_binary_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """The mean over rows and labels, as evaluate reports it (no positive weights)."""
    if not len(logits):
        return float("nan")
    loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits).float(), torch.from_numpy(targets).float())
    return float(loss.item())
