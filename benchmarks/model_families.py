"""Benchmark 6: the model families side by side on the bundled reviews: test macro-F1, training time and
batch-1 latency of a fine-tuned MiniLM, a CNN, the CNN distilled from that MiniLM, and the CNN on
EDA-augmented training data.

    python -m benchmarks.model_families [--cnn_epochs 10] [--seed 42]

Every model goes through the pipeline's own stages (preprocess, tokenize, train, evaluate, export),
one after another in this process, on the reviews at 256 tokens. MiniLM trains with the stage's
defaults (4 epochs, lr 1e-4); the CNNs learn their embeddings from scratch, so they get more epochs
(`--cnn_epochs`) and lr 1e-3. Latency: onnxruntime fp32, batch 1, median of 50 runs over test rows,
from export's report. One seed: differences smaller than a few points of macro-F1 are within noise
on a test split of this size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BASE_MODEL, SAMPLE, machine, markdown_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn_epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    arguments = parser.parse_args()
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    with tempfile.TemporaryDirectory(prefix="bench-families-") as scratch:
        work = Path(scratch)
        for name, augment_factor in (("plain", 0), ("augmented", 2)):
            preprocess(input_uri=str(SAMPLE), output_uri=str(work / name / "data"), text_column="review", label_column="rating",
                       augment_factor=augment_factor, seed=arguments.seed)  # fmt: skip
            tokenize(data_uri=str(work / name / "data"), output_uri=str(work / name / "tokens"), base_model=BASE_MODEL)
        cnn = {"model_type": "cnn", "learning_rate": 1e-3, "epochs": arguments.cnn_epochs}
        rows = [
            measure("MiniLM fine-tuned", work, "plain", "minilm", {}, arguments.seed),
            measure("CNN", work, "plain", "cnn", cnn, arguments.seed),
            measure(
                "CNN distilled from the MiniLM",
                work,
                "plain",
                "distilled",
                {**cnn, "teacher_uri": str(work / "minilm" / "model")},
                arguments.seed,
            ),  # fmt: skip
            measure("CNN on augmented data (EDA x2)", work, "augmented", "cnn-augmented", cnn, arguments.seed),
        ]
        augmentation = json.loads((work / "augmented" / "data" / "stats.json").read_text())["augmentation"]
        baseline = json.loads((work / "minilm" / "evaluation" / "metrics.json").read_text())["baseline_majority_class"]
    result = {"machine": machine(), "seed": arguments.seed, "cnn_epochs": arguments.cnn_epochs, "rows": rows,
              "majority_class_macro_f1": round(baseline["macro_f1"], 4), "augmentation": augmentation}  # fmt: skip
    print(json.dumps(result))
    return 0


def measure(label: str, work: Path, data: str, name: str, flags: dict, seed: int) -> dict:
    from components.evaluate import evaluate
    from components.export import export
    from components.train import train

    tokens, folder = str(work / data / "tokens"), work / name
    train(data_uri=tokens, output_uri=str(folder / "model"), base_model=BASE_MODEL, report_to="none", seed=seed, **flags)
    evaluate(model_uri=str(folder / "model"), data_uri=tokens, output_uri=str(folder / "evaluation"))
    export(model_uri=str(folder / "model"), data_uri=tokens, output_uri=str(folder / "onnx"), quantize_int8=False, torchscript=False)
    test = json.loads((folder / "evaluation" / "metrics.json").read_text())["test"]
    summary = json.loads((folder / "model" / "train_summary.json").read_text())
    latency = json.loads((folder / "onnx" / "export_report.json").read_text())["models"]["fp32"]["latency"]["batch_1"]
    return {"model": label, "test_macro_f1": round(test["macro_f1"], 4), "test_accuracy": round(test["accuracy"], 4),
            "train_seconds": summary["seconds_this_process"], "batch_1_p50_ms": latency["p50_ms"]}  # fmt: skip


def markdown(result: dict) -> str:
    rows = [
        [row["model"], row["test_macro_f1"], row["test_accuracy"], row["train_seconds"], row["batch_1_p50_ms"]] for row in result["rows"]
    ]
    table = markdown_table(["model", "test macro-F1", "test accuracy", "train s", "batch-1 p50 ms (onnxruntime fp32)"], rows)
    augmentation = result["augmentation"]
    return (
        f"Machine: {result['machine']}. Bundled reviews at 256 tokens, seed {result['seed']}, one run each; the CNNs train"
        f" {result['cnn_epochs']} epochs at lr 1e-3, MiniLM 4 at 1e-4. Majority-class macro-F1:"
        f" {result['majority_class_macro_f1']}. Augmentation added {augmentation['rows_added']} rows to"
        f" {augmentation['rows_before']}.\n\n{table}"
    )


if __name__ == "__main__":
    sys.exit(main())
