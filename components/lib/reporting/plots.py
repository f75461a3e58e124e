"""Pictures people would rather look at than read: the confusion matrix, precision-recall curves,
the confidence histogram and the training curves (a classifier's, and a language model's).

Every picture must read as well for a 15-step smoke run as for a long run: a series of few points
gets markers (a lone point is otherwise invisible), the step axis starts at 0, and losses and
learning rates start at 0, so a single value does not become a tiny range around itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.lib.reporting.metrics import precision_recall_curve

MARKERS_UP_TO = 40  # points in a series; above this, markers would hide the line
CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DPI = 100


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    pyplot().close(figure)


def confusion_matrix_png(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    """Counts, with each cell shaded by its share of the gold row (so recall reads off the diagonal)."""
    plt = pyplot()
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 1.0 * len(labels)
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
            axes.text(column, row, f"{counts[row, column]}\n{shares[row, column]:.0%}", ha="center", va="center", color=color, fontsize=10)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of gold row")
    save(figure, path)


def precision_recall_png(gold: np.ndarray, probabilities: np.ndarray, labels: list[str], path: Path) -> None:
    """One-vs-rest precision-recall curve of each class, its average precision in the legend."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 5))
    for index, name in enumerate(labels):
        curve = precision_recall_curve(gold == index, probabilities[:, index])
        if curve is None:
            axes.plot([], [], label=f"{name}: no test rows")
            continue
        precision, recall, average_precision = curve
        # Thicker lines first: curves that coincide (a perfect model's do) stay visible as stripes.
        width = 1.5 + 2.5 * (len(labels) - 1 - index) / max(len(labels) - 1, 1)
        axes.step(recall, precision, where="post", label=f"{name} (AP {average_precision:.3f})", linewidth=width)
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title("precision-recall per class (test, one vs rest)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    save(figure, path)


def confidence_histogram_png(confidence: np.ndarray, correct: np.ndarray, num_labels: int, path: Path) -> None:
    """How sure the model was of its predicted class, for right and wrong predictions apart."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(1 / num_labels, 1, 21)  # the predicted class's probability is at least 1/K
    axes.hist(
        [confidence[correct], confidence[~correct]],
        bins=bins,
        stacked=True,
        color=["tab:green", "tab:red"],
        label=[f"correct ({int(correct.sum())})", f"wrong ({int((~correct).sum())})"],
    )
    axes.set_xlim(1 / num_labels, 1)
    axes.set_xlabel("confidence (probability of the predicted class)")
    axes.set_ylabel("test rows")
    axes.set_title("confidence of the predictions (test)")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.legend(loc="upper left")
    save(figure, path)


def reliability_png(before: list[dict], after: list[dict], temperature: float, ece: tuple[float, float], path: Path) -> None:
    """Reliability diagrams before and after temperature scaling: in each confidence bin, the share of
    right predictions against the mean confidence; a calibrated model stays on the diagonal."""
    plt = pyplot()
    figure, panels = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    titles = (f"as trained (T = 1), ECE {ece[0]:.3f}", f"temperature {temperature:.2f}, ECE {ece[1]:.3f}")
    for axes, bins, title in zip(panels, (before, after), titles, strict=True):
        lows = [entry["low"] for entry in bins]
        widths = [entry["high"] - entry["low"] for entry in bins]
        confidence, accuracy = [entry["confidence"] for entry in bins], [entry["accuracy"] for entry in bins]
        axes.bar(lows, accuracy, width=widths, align="edge", edgecolor="black", alpha=0.7, label="accuracy")
        axes.plot(confidence, accuracy, "o", color="tab:red", label="bin's mean confidence")
        axes.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("confidence (probability of the predicted class)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("accuracy in the bin (test)")
    panels[0].legend(loc="upper left")
    save(figure, path)


def training_curves_png(history: dict, path: Path, metric: str) -> bool:
    """Loss, validation scores, learning rate and per-class validation F1 over the optimizer steps; False if no data."""
    steps, evaluations = history.get("steps", []), history.get("evaluations", [])
    if not steps and not evaluations:
        return False
    plt = pyplot()
    figure, ((loss_axes, score_axes), (rate_axes, class_axes)) = plt.subplots(2, 2, figsize=(11, 7.5))
    last_step = max(entry["step"] for entry in steps + evaluations)
    eval_steps = [entry["step"] for entry in evaluations]
    validation = [entry["validation"] for entry in evaluations]
    loss_panel(loss_axes, steps, evaluations, "cross-entropy", last_step)
    draw(score_axes, eval_steps, [scores.get(metric) for scores in validation], f"validation {metric}", marker="o", color="tab:green")
    draw(score_axes, eval_steps, [scores.get("accuracy") for scores in validation], "validation accuracy", marker="s", color="tab:gray")
    style(score_axes, "validation scores", "score", last_step, unit_range=True)
    learning_rate_panel(rate_axes, steps or evaluations, last_step)
    for index, name in enumerate(validation[0].get("per_class_f1", {}) if validation else []):
        # Hollow markers of different shapes: classes with equal scores stay distinguishable.
        marker = CLASS_MARKERS[index % len(CLASS_MARKERS)]
        draw(class_axes, eval_steps, [scores["per_class_f1"][name] for scores in validation], name, marker=marker, markerfacecolor="none")
    style(class_axes, "validation F1 per class", "F1", last_step, unit_range=True)
    for axes in (loss_axes, score_axes, rate_axes, class_axes):
        mark_epoch_ends(axes, steps + evaluations, last_step)
    save(figure, path)
    return True


def loss_panel(axes, steps: list[dict], evaluations: list[dict], unit: str, last_step: int) -> None:
    """Train loss per logged interval and validation loss at each evaluation."""
    draw(axes, [entry["step"] for entry in steps], [entry["loss"] for entry in steps], "train (mean per logged interval)")
    draw(axes, [entry["step"] for entry in evaluations], [entry["validation"]["loss"] for entry in evaluations], "validation", marker="o")
    style(axes, "loss", unit, last_step, from_zero=True)


def learning_rate_panel(axes, rated: list[dict], last_step: int) -> None:
    draw(axes, [entry["step"] for entry in rated], [entry["learning_rate"] for entry in rated], "learning rate", color="tab:purple")
    style(axes, "learning rate", "learning rate", last_step, from_zero=True)
    axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))


def language_model_curves_png(history: dict, path: Path) -> bool:
    """A causal LM's training: train and validation loss, validation perplexity (log axis) and the learning
    rate over the optimizer steps, epoch ends dotted; False if the history is empty."""
    steps, evaluations = history.get("steps", []), history.get("evaluations", [])
    if not steps and not evaluations:
        return False
    plt = pyplot()
    figure, (loss_axes, perplexity_axes, rate_axes) = plt.subplots(1, 3, figsize=(15, 4.5))
    last_step = max(entry["step"] for entry in steps + evaluations)
    eval_steps = [entry["step"] for entry in evaluations]
    validation = [entry["validation"] for entry in evaluations]
    loss_panel(loss_axes, steps, evaluations, "cross-entropy (nats per token)", last_step)
    perplexities = [scores["perplexity"] for scores in validation]
    draw(perplexity_axes, eval_steps, perplexities, "validation perplexity", marker="o", color="tab:green")
    if eval_steps:
        log_axis_in_plain_numbers(perplexity_axes)
    style(perplexity_axes, "validation perplexity", "perplexity (log scale)", last_step)
    learning_rate_panel(rate_axes, steps or evaluations, last_step)
    for axes in (loss_axes, perplexity_axes, rate_axes):
        mark_epoch_ends(axes, steps + evaluations, last_step)
    save(figure, path)
    return True


def log_axis_in_plain_numbers(axes) -> None:
    """A log y axis labelled 1.5, 2, 10, 100 rather than 1.5 x 10^0: perplexities often span less than a decade."""
    from matplotlib.ticker import LogFormatter

    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(LogFormatter())
    axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def mark_epoch_ends(axes, entries: list[dict], last_step: int) -> None:
    """Dotted vertical lines where epochs end, when the run had more than one and not too many."""
    timed = [entry for entry in entries if entry.get("epoch")]
    if not timed:
        return
    steps_per_epoch = timed[-1]["step"] / timed[-1]["epoch"]
    ends = np.arange(steps_per_epoch, last_step, steps_per_epoch)
    if 1 <= len(ends) <= 50:
        for step in ends:
            axes.axvline(step, color="gray", linestyle=":", linewidth=0.8)
        axes.set_xlabel("optimizer step (dotted: end of an epoch)")


def draw(axes, xs: list, ys: list, label: str, marker: str | None = None, **style_args) -> None:
    """A line, with markers when there are few points (one point alone has no line to show)."""
    if not xs:
        return
    axes.plot(xs, ys, label=label, marker=(marker or ".") if len(xs) <= MARKERS_UP_TO else None, markersize=7, **style_args)


def style(axes, title: str, ylabel: str, last_step: int, from_zero: bool = False, unit_range: bool = False) -> None:
    """Steps from 0 to a little past the last one; y from 0 where the quantity starts there, and
    0 to 1 for scores, with room for markers that sit on 0 or 1."""
    axes.set_title(title)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel(ylabel)
    axes.set_xlim(0, max(last_step, 1) * 1.05)
    axes.xaxis.get_major_locator().set_params(integer=True)
    if from_zero:
        high = axes.get_ylim()[1]
        axes.set_ylim(0, high * 1.08 if high > 0 else 1)
    if unit_range:
        axes.set_ylim(-0.03, 1.05)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=9, loc="best")


def lr_range_test_png(learning_rates: list[float], losses: list[float], suggestion: float, path: Path) -> None:
    """The range test's smoothed loss against the learning rate (log scale), with the suggestion marked."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    draw(axes, learning_rates, losses, "smoothed training loss")
    axes.axvline(suggestion, color="tab:green", linestyle="--", label=f"suggested {suggestion:.2e}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.set_title("learning-rate range test")
    axes.legend()
    save(figure, path)


def fold_scores_png(scores: dict[str, list[float]], path: Path) -> None:
    """Each configuration's held-out macro-F1, one point per fold, with its mean as a bar."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(max(4, 1.6 * len(scores)), 4))
    for position, values in enumerate(scores.values()):
        axes.bar(position, np.mean(values), color="tab:blue", alpha=0.3, width=0.6)
        axes.scatter(np.full(len(values), position) + np.linspace(-0.15, 0.15, len(values)), values, color="tab:blue", zorder=3)
    axes.set_xticks(range(len(scores)), list(scores))
    axes.set_ylim(0, 1)
    axes.set_ylabel("held-out fold macro-F1")
    axes.set_title("K-fold cross-validation: one point per fold, the bar is the mean")
    save(figure, path)


def slices_png(slices: list[dict], path: Path) -> None:
    """Test accuracy on each slice with its 95% interval; small slices in grey."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(slices) + 1.2))
    positions = np.arange(len(slices))[::-1]
    for position, entry in zip(positions, slices):
        low, high = entry["accuracy_95"]
        color = "tab:gray" if entry["small"] else "tab:blue"
        axes.errorbar(
            entry["accuracy"], position, xerr=[[entry["accuracy"] - low], [high - entry["accuracy"]]], fmt="o", color=color, capsize=3
        )
    axes.set_yticks(positions, [f"{entry['slice']} ({entry['rows']} rows)" for entry in slices])
    axes.set_xlim(0, 1)
    axes.set_xlabel("test accuracy, with its 95% bootstrap interval")
    axes.set_title("Accuracy by slice (grey: too few rows to judge)")
    save(figure, path)


def coverage_png(curve: list[dict], abstention: dict | None, path: Path) -> None:
    """Accuracy of the most confident rows against the share of rows answered; the model's threshold marked if it has one."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([point["coverage"] for point in curve], [point["accuracy"] for point in curve], marker=".", color="tab:blue")
    if abstention:
        axes.scatter([abstention["coverage"]], [abstention["accuracy"]], color="tab:red", zorder=3,
                     label=f"abstains below confidence {abstention['min_confidence']:.3f}")  # fmt: skip
        axes.legend(loc="lower left")
    axes.set_xlim(0, 1.02)
    axes.set_xlabel("coverage: share of test rows answered (the most confident first)")
    axes.set_ylabel("accuracy of the answered rows")
    axes.set_title("Coverage against accuracy (calibrated confidence)")
    save(figure, path)
