"""evaluate for classifiers: test scores beside a majority-class baseline, predictions, pictures and a report.

Writes metrics.json (loss, accuracy, macro and weighted precision/recall/F1, per-class scores and
average precision, confusion matrix, and the same for the majority-class baseline),
predictions.parquet (text, the source file and row it came from, gold, predicted, confidence and
one probability column per class, for error analysis), and report.html with the confusion
matrix, precision-recall curves, a confidence histogram, the reliability diagram before and after
train's temperature scaling, and the training curves as pictures. Probabilities are calibrated with
the model's temperature (calibration.json); metrics.json has the expected calibration error before and
after it on the test split.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.lib.cli import StageResult
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import (
    CONFIDENCE_PICTURE,
    CONFUSION_MATRIX_PICTURE,
    COVERAGE_PICTURE,
    HISTORY_FILE,
    LABEL_ISSUES_KEY,
    LR_RANGE_TEST_PICTURE,
    METRICS_FILE,
    PRECISION_RECALL_PICTURE,
    PREDICTIONS_FILE,
    RELIABILITY_PICTURE,
    SLICE_COLUMN_PREFIX,
    SLICES_PICTURE,
    STATS_FILE,
    TOKENIZED_SCHEMA,
    TRAINING_CURVES_PICTURE,
    other_splits,
    read_split,
    slice_columns_in,
    split_file_name,
)
from components.lib.data.labels import read_labels
from components.lib.errors import UserError
from components.lib.modelling.abstention import answered_at, coverage_curve, read_min_confidence
from components.lib.modelling.calibration import calibration_summary, read_temperature, reliability_bins, softmax
from components.lib.modelling.families import load_model
from components.lib.modelling.inference import mean_cross_entropy, predict_logits
from components.lib.modelling.precision import scoring_setup
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.reporting.metrics import classification_metrics, headline, precision_recall_curve
from components.lib.reporting.plots import (
    confidence_histogram_png,
    confusion_matrix_png,
    coverage_png,
    precision_recall_png,
    reliability_png,
    slices_png,
    training_curves_png,
)
from components.lib.reporting.report import evaluation_html
from components.lib.reporting.slices import TEST_SLICE_COLUMNS, slice_scores, slices_of_test_split
from components.lib.reporting.tracking import publish_report
from components.lib.stage_outputs import CONFUSION_MATRIX_ARTIFACT, EVALUATION_ARTIFACT, EVALUATION_URI_OUTPUT, METRICS_ARTIFACT
from components.lib.storage.artifacts import made_from, staged_input, staged_output


def majority_class(data_uri: str, data_dir: Path, label_names: list[str]) -> int:
    """The train split's most frequent label, from the counts tokenize recorded; data tokenized before
    it recorded them has its train split's labels read instead."""
    counts = json.loads((data_dir / STATS_FILE).read_text())["splits"]["train"].get("class_counts")
    if counts is None:
        with staged_input(data_uri, only=[split_file_name("train")]) as (train_dir, _):
            labels = read_split(train_dir, "train", TOKENIZED_SCHEMA, columns=["label"]).column("label").to_numpy()
        return int(np.bincount(labels, minlength=len(label_names)).argmax())
    return int(np.argmax([counts[name] for name in label_names]))


def evaluate_classifier(*, model_uri: str, data_uri: str, output_uri: str, report_path: str, batch_size: int) -> StageResult:
    """Scores, predictions, pictures and the report of a classifier on the test split."""
    with staged_input(model_uri) as (model_dir, model_manifest), staged_input(data_uri, skip=other_splits("test")) as (data_dir, _):
        label_names = read_labels(data_dir)
        if read_labels(model_dir) != label_names:
            raise UserError(
                f"{model_uri}: the model's labels {read_labels(model_dir)} differ from the data's {label_names};"
                " evaluate it on data from the same preprocess run"
            )
        model = load_model(model_dir, model_uri)
        pad = pad_id(load_tokenizer(model_uri, str(model_dir)))
        device, precision = scoring_setup(model_dir)
        test = TokenizedSplit.load(data_dir, "test")
        logits = predict_logits(model.to(device), test, batch_size, device, pad, precision.autocast(device))
        metrics = classification_metrics(test.gold, logits.argmax(axis=1), label_names)
        metrics["loss"] = mean_cross_entropy(logits, test.gold)
        majority = majority_class(data_uri, data_dir, label_names)
        baseline = classification_metrics(test.gold, np.full(len(test), majority), label_names)
        baseline["predicts"] = label_names[majority]
        history = json.loads((model_dir / HISTORY_FILE).read_text()) if (model_dir / HISTORY_FILE).is_file() else {}
        temperature = read_temperature(model_dir, model_uri)
        probabilities = softmax(logits, temperature)
        metrics["calibration"] = calibration_summary(logits, test.gold, temperature)
        add_average_precision(metrics, test.gold, probabilities, label_names)
        metrics["coverage_curve"] = coverage_curve(probabilities, test.gold)
        min_confidence = read_min_confidence(model_dir, model_uri)
        if min_confidence is not None:
            metrics["abstention"] = {"min_confidence": min_confidence, **answered_at(probabilities, test.gold, min_confidence)}
        rows = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=[*TEST_SLICE_COLUMNS, *slice_columns_in(data_dir, "test")])
        slices, metrics["languages"] = slices_of_test_split(rows)
        metrics["slices"] = slice_scores(slices, test.gold, logits.argmax(axis=1), label_names)
        with staged_output(output_uri, extra=made_from(model_manifest)) as out:
            predictions = write_predictions(out / PREDICTIONS_FILE, rows, test.gold, probabilities, label_names)
            result = {"test": metrics, "baseline_majority_class": baseline, "model_uri": model_uri, "data_uri": data_uri,
                      "scored_in": precision.record()}  # fmt: skip
            (out / METRICS_FILE).write_text(json.dumps(result, indent=2) + "\n")
            pictures = draw_pictures(out, metrics, history, test.gold, probabilities, label_names)
            if metrics["calibration"]["rows"]:
                pictures.append(draw_reliability(out, logits, test.gold, metrics["calibration"]))
            if (model_dir / LR_RANGE_TEST_PICTURE).is_file():  # train ran the learning-rate range test
                pictures.append(Path(shutil.copyfile(model_dir / LR_RANGE_TEST_PICTURE, out / LR_RANGE_TEST_PICTURE)))
            lineage = model_manifest.get("lineage", {})
            heading = {
                "base model": lineage.get("base_model", "?"),
                "model": model_uri,
                "run": lineage.get("run_id") or "not recorded (train ran without --run_id)",
                "trained": readable_time(model_manifest.get("committed_at", "?")),
                "evaluated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "calibration": calibration_line(metrics["calibration"]),
                **({"abstention": abstention_line(metrics["abstention"])} if "abstention" in metrics else {}),
            }
            context = {"data": data_uri, "test rows": len(test), "baseline predicts": baseline["predicts"], **lineage}
            audit = json.loads((data_dir / STATS_FILE).read_text()).get(LABEL_ISSUES_KEY, {})
            mistakes = most_confident_mistakes(predictions)
            report = evaluation_html("Evaluation on the test split", heading, metrics, baseline, pictures, mistakes, context, audit)
            publish_report(report, out, report_path, model_dir, metrics, [out / METRICS_FILE, *pictures])
    scores = headline(metrics)
    return StageResult(
        summary={"stage": "evaluate", "output_uri": output_uri, "test": scores, "baseline": headline(baseline)},
        artifact_metadata={
            METRICS_ARTIFACT: {
                **scores,
                "loss": round(metrics["loss"], 6),
                "baseline_macro_f1": round(baseline["macro_f1"], 4),
                "baseline_accuracy": round(baseline["accuracy"], 4),
                **{key: round(value, 6) for key, value in metrics["calibration"].items() if key.startswith("ece_")},
                **{f"accuracy [{entry['slice']}]": round(entry["accuracy"], 4) for entry in metrics["slices"]},
            },
            CONFUSION_MATRIX_ARTIFACT: kfp_confusion_matrix(metrics, label_names),
        },
        parameters={
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "weighted_f1": metrics["weighted_f1"],
            EVALUATION_URI_OUTPUT: output_uri,
        },
        artifact_uri_parameters={EVALUATION_URI_OUTPUT: EVALUATION_ARTIFACT},
    )


def abstention_line(abstention: dict) -> str:
    return (
        f"abstains below confidence {abstention['min_confidence']:.4f}: answers {100 * abstention['coverage']:.1f}% of the"
        f" test rows, at accuracy {abstention['accuracy']:.4f}"
    )


def calibration_line(calibration: dict) -> str:
    if not calibration["rows"]:
        return f"temperature {calibration['temperature']:.3f} (no test rows to measure it on)"
    return (
        f"temperature {calibration['temperature']:.3f}; test expected calibration error"
        f" {calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after"
    )


def readable_time(manifest_time: str) -> str:
    """A manifest's commit time, '2025-01-31T09:15:02Z', as '2025-01-31 09:15:02 UTC'."""
    return manifest_time.replace("T", " ").replace("Z", " UTC")


def add_average_precision(metrics: dict, gold: np.ndarray, probabilities: np.ndarray, label_names: list[str]) -> None:
    """Each class's average precision (area under its precision-recall curve), None without test rows."""
    for index, name in enumerate(label_names):
        curve = precision_recall_curve(gold == index, probabilities[:, index])
        metrics["per_class"][name]["average_precision"] = curve[2] if curve else None


def draw_pictures(
    out: Path, metrics: dict, history: dict, gold: np.ndarray, probabilities: np.ndarray, label_names: list[str]
) -> list[Path]:
    """The report's pictures, saved beside it; the training curves only if the model kept its history."""
    matrix = metrics["confusion_matrix"]["rows_gold_columns_predicted"]
    confusion_matrix_png(matrix, label_names, out / CONFUSION_MATRIX_PICTURE, "test confusion matrix")
    precision_recall_png(gold, probabilities, label_names, out / PRECISION_RECALL_PICTURE)
    correct = probabilities.argmax(axis=1) == gold
    confidence_histogram_png(probabilities.max(axis=1), correct, len(label_names), out / CONFIDENCE_PICTURE)
    slices_png(metrics["slices"], out / SLICES_PICTURE)
    coverage_png(metrics["coverage_curve"], metrics.get("abstention"), out / COVERAGE_PICTURE)
    pictures = [out / CONFUSION_MATRIX_PICTURE, out / PRECISION_RECALL_PICTURE, out / CONFIDENCE_PICTURE, out / SLICES_PICTURE,
                out / COVERAGE_PICTURE]  # fmt: skip
    if training_curves_png(history, out / TRAINING_CURVES_PICTURE, "macro_f1"):
        pictures.append(out / TRAINING_CURVES_PICTURE)
    return pictures


def draw_reliability(out: Path, logits: np.ndarray, gold: np.ndarray, calibration: dict) -> Path:
    temperature = calibration["temperature"]
    before, after = reliability_bins(softmax(logits), gold), reliability_bins(softmax(logits, temperature), gold)
    reliability_png(before, after, temperature, (calibration["ece_before"], calibration["ece_after"]), out / RELIABILITY_PICTURE)
    return out / RELIABILITY_PICTURE


def write_predictions(path, rows: pa.Table, gold: np.ndarray, probabilities: np.ndarray, label_names: list[str]) -> pa.Table:
    """One row per test row; `source_row` names the file and row it came from (as preprocess wrote it)."""
    predicted = probabilities.argmax(axis=1)
    names = np.array(label_names, dtype=object)
    columns = {
        "text": rows.column("text"),
        "source_row": rows.column("source_row"),
        "gold": pa.array(names[gold].tolist()),
        "predicted": pa.array(names[predicted].tolist()),
        "correct": pa.array(predicted == gold),
        "confidence": pa.array(probabilities.max(axis=1)),
        **{f"prob_{name}": pa.array(probabilities[:, index]) for index, name in enumerate(label_names)},
        **{name: rows.column(name) for name in rows.column_names if name.startswith(SLICE_COLUMN_PREFIX)},
    }
    table = pa.table(columns)
    pq.write_table(table, path)
    return table


def most_confident_mistakes(predictions: pa.Table, count: int = 15) -> list[dict]:
    wrong = predictions.filter(pc.invert(predictions.column("correct")))
    order = np.argsort(-wrong.column("confidence").to_numpy())[:count]
    return wrong.take(pa.array(order, pa.int64())).select(["gold", "predicted", "confidence", "source_row", "text"]).to_pylist()


def kfp_confusion_matrix(metrics: dict, label_names: list[str]) -> dict:
    """The ClassificationMetrics metadata layout that the KFP UI draws."""
    rows = metrics["confusion_matrix"]["rows_gold_columns_predicted"]
    return {"confusionMatrix": {"annotationSpecs": [{"displayName": name} for name in label_names], "rows": [{"row": row} for row in rows]}}
