"""Pictures people would rather look at than read: the confusion matrix and the training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    """Counts, with each cell shaded by its share of the gold row (so recall reads off the diagonal)."""
    plt = pyplot()
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.9 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(title)
    for row in range(len(labels)):
        for column in range(len(labels)):
            color = "white" if shares[row, column] > 0.5 else "black"
            axes.text(column, row, f"{counts[row, column]}\n{shares[row, column]:.0%}", ha="center", va="center", color=color, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of gold row")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def training_curves_png(history: dict, path: Path, metric: str) -> bool:
    """Training loss per logged step and validation loss and `metric` per evaluation; False if no data."""
    steps, evaluations = history.get("steps", []), history.get("evaluations", [])
    if not steps and not evaluations:
        return False
    plt = pyplot()
    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(10, 3.8))
    if steps:
        loss_axes.plot([entry["step"] for entry in steps], [entry["loss"] for entry in steps], label="train (per step)", alpha=0.7)
    if evaluations:
        eval_steps = [entry["step"] for entry in evaluations]
        loss_axes.plot(eval_steps, [entry["validation"]["loss"] for entry in evaluations], "o-", label="validation")
        metric_axes.plot(
            eval_steps, [entry["validation"].get(metric) for entry in evaluations], "o-", color="tab:green", label=f"validation {metric}"
        )
        metric_axes.plot(
            eval_steps, [entry["validation"].get("accuracy") for entry in evaluations], "s--", color="tab:gray", label="validation accuracy"
        )
    loss_axes.set_xlabel("optimizer step")
    loss_axes.set_ylabel("cross-entropy")
    loss_axes.set_title("loss")
    loss_axes.legend()
    metric_axes.set_xlabel("optimizer step")
    metric_axes.set_title("validation scores")
    metric_axes.set_ylim(0, 1)
    metric_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
