"""evaluate: score the fine-tuned model on the test split, beside a majority-class baseline.

    python -m components.evaluate --model_uri runs/x/model --data_uri runs/x/tokens --output_uri runs/x/evaluation

Writes metrics.json (loss, accuracy, macro and weighted precision/recall/F1, per-class scores,
confusion matrix, and the same for the majority-class baseline), predictions.parquet (text, gold,
predicted, confidence and one probability column per class, for error analysis), and report.html
with the confusion matrix and the training curves as pictures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from components.lib.artifacts import staged_input, staged_output
from components.lib.batching import TokenizedSplit
from components.lib.cli import StageResult, run_stage
from components.lib.contract import TOKENIZED_SCHEMA, read_split
from components.lib.errors import UserError
from components.lib.inference import mean_cross_entropy, predict_logits, softmax
from components.lib.labels import read_labels
from components.lib.metrics import classification_metrics, headline
from components.lib.modeling import load_classifier, load_tokenizer
from components.lib.plots import confusion_matrix_png, training_curves_png
from components.lib.report import evaluation_html

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.parquet"
REPORT_FILE = "report.html"


def evaluate(
    *,
    model_uri: str,
    data_uri: str,
    output_uri: str,
    report_path: str = "",
    batch_size: int = 64,
    executor_input: str = "",
) -> StageResult:
    """Score the model on the test split; write metrics, predictions and an HTML report.

    Args:
      model_uri: Folder (local or s3://) written by train.
      data_uri: Folder (local or s3://) written by tokenize; its test split is scored.
      output_uri: Folder (local or s3://) for metrics.json, predictions.parquet, report.html and the pictures.
      report_path: Also write the HTML report to this local file (Kubeflow's HTML artifact). Empty: only in output_uri.
      batch_size: Rows per inference batch.
      executor_input: Set by Kubeflow; leave empty when running by hand.
    """
    with staged_input(model_uri) as (model_dir, model_manifest), staged_input(data_uri) as (data_dir, _):
        label_names = read_labels(data_dir)
        if read_labels(model_dir) != label_names:
            raise UserError(
                f"{model_uri}: the model's labels {read_labels(model_dir)} differ from the data's {label_names};"
                " evaluate it on data from the same preprocess run"
            )
        model = load_classifier(model_uri, str(model_dir), label_names)
        pad_id = load_tokenizer(model_uri, str(model_dir)).pad_token_id or 0
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        test = TokenizedSplit.load(data_dir, "test")
        logits = predict_logits(model.to(device), test, batch_size, device, pad_id)
        metrics = classification_metrics(test.labels, logits.argmax(axis=1), label_names)
        metrics["loss"] = mean_cross_entropy(logits, test.labels)
        majority = int(np.bincount(TokenizedSplit.load(data_dir, "train").labels, minlength=len(label_names)).argmax())
        baseline = classification_metrics(test.labels, np.full(len(test), majority), label_names)
        baseline["predicts"] = label_names[majority]
        history = json.loads((model_dir / "training_history.json").read_text()) if (model_dir / "training_history.json").is_file() else {}
        with staged_output(output_uri, extra={"lineage": model_manifest.get("lineage", {})}) as out:
            texts = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=["text"]).column("text")
            predictions = write_predictions(out / PREDICTIONS_FILE, texts, test.labels, logits, label_names)
            result = {"test": metrics, "baseline_majority_class": baseline, "model_uri": model_uri, "data_uri": data_uri}
            (out / METRICS_FILE).write_text(json.dumps(result, indent=2) + "\n")
            pictures = [out / "confusion_matrix.png"]
            confusion_matrix_png(
                metrics["confusion_matrix"]["rows_gold_columns_predicted"], label_names, pictures[0], "test confusion matrix"
            )
            if training_curves_png(history, out / "training_curves.png", "macro_f1"):
                pictures.append(out / "training_curves.png")
            context = {
                "model": model_uri,
                "data": data_uri,
                "test rows": len(test),
                "baseline predicts": baseline["predicts"],
                **model_manifest.get("lineage", {}),
            }
            report = evaluation_html(
                "Evaluation on the test split", metrics, baseline, pictures, most_confident_mistakes(predictions), context
            )
            (out / REPORT_FILE).write_text(report)
            if report_path:
                Path(report_path).parent.mkdir(parents=True, exist_ok=True)
                Path(report_path).write_text(report)
    scores = headline(metrics)
    return StageResult(
        summary={"stage": "evaluate", "output_uri": output_uri, "test": scores, "baseline": headline(baseline)},
        artifact_metadata={
            "metrics": {
                **scores,
                "loss": round(metrics["loss"], 6),
                "baseline_macro_f1": round(baseline["macro_f1"], 4),
                "baseline_accuracy": round(baseline["accuracy"], 4),
            },
            "confusion_matrix": kfp_confusion_matrix(metrics, label_names),
        },
        parameters={
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "weighted_f1": metrics["weighted_f1"],
            "evaluation_uri": output_uri,
        },
        artifact_uri_parameters={"evaluation_uri": "evaluation"},
    )


def write_predictions(path, texts: pa.ChunkedArray, gold: np.ndarray, logits: np.ndarray, label_names: list[str]) -> pa.Table:
    probabilities = softmax(logits)
    predicted = probabilities.argmax(axis=1)
    names = np.array(label_names, dtype=object)
    columns = {
        "text": texts,
        "gold": pa.array(names[gold].tolist()),
        "predicted": pa.array(names[predicted].tolist()),
        "correct": pa.array(predicted == gold),
        "confidence": pa.array(probabilities.max(axis=1)),
        **{f"prob_{name}": pa.array(probabilities[:, index]) for index, name in enumerate(label_names)},
    }
    table = pa.table(columns)
    pq.write_table(table, path)
    return table


def most_confident_mistakes(predictions: pa.Table, count: int = 15) -> list[dict]:
    wrong = predictions.filter(pc.invert(predictions.column("correct")))
    order = np.argsort(-wrong.column("confidence").to_numpy())[:count]
    return wrong.take(pa.array(order, pa.int64())).select(["gold", "predicted", "confidence", "text"]).to_pylist()


def kfp_confusion_matrix(metrics: dict, label_names: list[str]) -> dict:
    """The ClassificationMetrics metadata layout that the KFP UI draws."""
    rows = metrics["confusion_matrix"]["rows_gold_columns_predicted"]
    return {"confusionMatrix": {"annotationSpecs": [{"displayName": name} for name in label_names], "rows": [{"row": row} for row in rows]}}


if __name__ == "__main__":
    run_stage(evaluate)
