"""evaluate for multi-label classifiers: test scores at the model's tuned thresholds beside the label-frequency
baseline, predictions and a report with a per-label picture.

metrics.json has micro/macro/weighted F1, subset accuracy, Hamming loss and per-label precision, recall,
F1, support, threshold and average precision (components/lib/reporting/multilabel_metrics.py), the mean
binary cross-entropy, and the same scores for the baseline, which answers every text with one constant set:
the most frequent training labels, as many as give the best training micro-F1. predictions.parquet has the
text, its source row, the gold and predicted sets ("a|b"), whether they match, and one probability per label.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.cli import StageResult
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import (
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    STATS_FILE,
    TOKENIZED_SCHEMA,
    TRAINING_CURVES_PICTURE,
    other_splits,
    read_split,
)
from components.lib.data.label_sets import SET_JOIN, label_counts, label_names_of, membership
from components.lib.data.labels import read_labels
from components.lib.errors import UserError
from components.lib.modelling.families import load_model
from components.lib.modelling.inference import predict_logits
from components.lib.modelling.precision import scoring_setup
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.modelling.thresholds import mean_binary_cross_entropy, read_thresholds, sigmoid
from components.lib.reporting.multilabel_metrics import frequency_baseline, headline, multilabel_metrics
from components.lib.reporting.plots import pyplot, save, training_curves_png
from components.lib.reporting.report import embedded_png, key_value_table, page_start, table
from components.lib.reporting.tracking import publish_report
from components.lib.stage_outputs import EVALUATION_ARTIFACT, EVALUATION_URI_OUTPUT, METRICS_ARTIFACT
from components.lib.storage.artifacts import made_from, staged_input, staged_output

PER_LABEL_PICTURE = "per_label_f1.png"
NO_LABEL = "(no label)"


def evaluate_multilabel(*, model_uri: str, data_uri: str, output_uri: str, report_path: str, batch_size: int) -> StageResult:
    with staged_input(model_uri) as (model_dir, model_manifest), staged_input(data_uri, skip=other_splits("test")) as (data_dir, _):
        set_keys = read_labels(data_dir)
        label_names = label_names_of(set_keys)
        if read_labels(model_dir) != label_names:
            raise UserError(f"{model_uri}: the model's labels {read_labels(model_dir)} differ from the data's {label_names};"
                            " evaluate it on data from the same preprocess run")  # fmt: skip
        thresholds = read_thresholds(model_dir, label_names, model_uri)
        if thresholds is None:
            raise UserError(f"{model_uri}: has no decision thresholds; it is not a multi-label model train wrote")
        device, precision = scoring_setup(model_dir)
        test = TokenizedSplit.load(data_dir, "test")
        model, pad = load_model(model_dir, model_uri).to(device), pad_id(load_tokenizer(model_uri, str(model_dir)))
        logits = predict_logits(model, test, batch_size, device, pad, precision.autocast(device))
        gold = membership(set_keys, label_names)[test.labels]
        probabilities = sigmoid(logits)
        metrics = multilabel_metrics(gold, probabilities, thresholds, label_names)
        metrics["loss"] = mean_binary_cross_entropy(logits, gold)
        baseline = baseline_scores(data_dir, gold, label_names)
        history = json.loads((model_dir / HISTORY_FILE).read_text()) if (model_dir / HISTORY_FILE).is_file() else {}
        with staged_output(output_uri, extra=made_from(model_manifest)) as out:
            rows = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=["text", "source_row"])
            write_predictions(out / PREDICTIONS_FILE, rows, gold, probabilities, thresholds, label_names)
            result = {"test": metrics, "baseline_label_frequency": baseline, "model_uri": model_uri, "data_uri": data_uri,
                      "scored_in": precision.record()}  # fmt: skip
            (out / METRICS_FILE).write_text(json.dumps(result, indent=2) + "\n")
            pictures = [per_label_png(metrics, baseline, out / PER_LABEL_PICTURE)]
            if training_curves_png(history, out / TRAINING_CURVES_PICTURE, "macro_f1"):
                pictures.append(out / TRAINING_CURVES_PICTURE)
            heading = {"base model": model_manifest.get("lineage", {}).get("base_model", "?"), "model": model_uri,
                       "evaluated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}  # fmt: skip
            report = report_html(heading, metrics, baseline, pictures, {"data": data_uri, "test rows": len(test)})
            publish_report(report, out, report_path, model_dir, metrics, [out / METRICS_FILE, *pictures])
    return stage_result(output_uri, metrics, baseline)


def baseline_scores(data_dir: Path, gold: np.ndarray, label_names: list[str]) -> dict:
    """The label-frequency baseline's test scores, from the training rows per label set tokenize recorded."""
    train = json.loads((data_dir / STATS_FILE).read_text())["splits"]["train"]
    answer = frequency_baseline(label_counts(train["class_counts"], label_names), train["rows"], label_names)
    constant = np.array([[1.0 if name in answer else 0.0 for name in label_names]] * len(gold)).reshape(len(gold), len(label_names))
    scores = multilabel_metrics(gold, constant, np.full(len(label_names), 0.5), label_names)
    return {**scores, "predicts": SET_JOIN.join(answer) or NO_LABEL}


def write_predictions(
    path: Path, rows: pa.Table, gold: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray, names: list[str]
) -> None:
    predicted = probabilities >= thresholds[None, :]

    def sets(matrix: np.ndarray) -> list[str]:
        return [label_set([name for name, on in zip(names, row) if on]) or NO_LABEL for row in matrix]

    columns = {
        "text": rows.column("text"),
        "source_row": rows.column("source_row"),
        "gold": pa.array(sets(gold > 0.5)),
        "predicted": pa.array(sets(predicted)),
        "correct": pa.array((predicted == (gold > 0.5)).all(axis=1)),
        **{f"prob_{name}": pa.array(probabilities[:, index]) for index, name in enumerate(names)},
    }
    pq.write_table(pa.table(columns), path)


def label_set(names: list[str]) -> str:
    """A set's spelling in predictions.parquet: its labels joined by SET_JOIN, in label order ("" for none)."""
    return SET_JOIN.join(names)


def per_label_png(metrics: dict, baseline: dict, path: Path) -> Path:
    """Each label's test F1 beside its support: where the model is good, and where data is thin."""
    plt = pyplot()
    names = list(metrics["per_label"])
    figure, axes = plt.subplots(figsize=(7, 1.2 + 0.32 * len(names)))
    positions = np.arange(len(names))
    axes.barh(positions, [metrics["per_label"][name]["f1"] for name in names], color="#4c72b0", label="model")
    axes.scatter(
        [baseline["per_label"][name]["f1"] for name in names], positions, color="#dd8452", zorder=3, label="label-frequency baseline"
    )
    axes.set_yticks(positions, [f"{name} ({metrics['per_label'][name]['support']})" for name in names])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("test F1 at the tuned threshold (label, test rows)")
    axes.legend(loc="lower right")
    save(figure, path)
    return path


def report_html(heading: dict, metrics: dict, baseline: dict, pictures: list[Path], context: dict) -> str:
    names = ("micro_f1", "macro_f1", "weighted_f1", "subset_accuracy", "hamming_loss", "micro_precision", "micro_recall")
    scores = table(
        ["metric", "model", f"baseline (always {baseline['predicts']})"], [[name, metrics[name], baseline[name]] for name in names]
    )
    per_label = table(
        ["label", "precision", "recall", "F1", "average precision", "threshold", "test rows"],
        [
            [name, e["precision"], e["recall"], e["f1"], e["average_precision"], e["threshold"], e["support"]]
            for name, e in metrics["per_label"].items()
        ],
    )
    return (
        page_start("Multi-label evaluation on the test split", heading)
        + f"""<h2>Test scores</h2>{scores}
<p>Each label is decided at its own threshold, tuned on the validation split by train.</p>
<h2>Per label</h2>{per_label}
{"".join(embedded_png(path) for path in pictures)}
<h2>Run</h2>{key_value_table(context)}
</body></html>
"""
    )


def stage_result(output_uri: str, metrics: dict, baseline: dict) -> StageResult:
    scores = headline(metrics)
    return StageResult(
        summary={"stage": "evaluate", "output_uri": output_uri, "test": scores, "baseline": headline(baseline)},
        artifact_metadata={
            METRICS_ARTIFACT: {**scores, "loss": round(metrics["loss"], 6), "baseline_micro_f1": round(baseline["micro_f1"], 4)}
        },
        parameters={key: metrics[key] for key in ("micro_f1", "macro_f1", "weighted_f1", "subset_accuracy")}
        | {EVALUATION_URI_OUTPUT: output_uri},
        artifact_uri_parameters={EVALUATION_URI_OUTPUT: EVALUATION_ARTIFACT},
    )
