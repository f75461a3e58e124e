"""Benchmark 6: the model families side by side on two real datasets: test macro-F1, training time and
batch-1 latency of a fine-tuned MiniLM, a CNN, the CNN distilled from that MiniLM, and the CNN on
EDA-augmented training data; and, for each, the expected calibration error on test before and after
the temperature that train fits on validation.

    python -m benchmarks.model_families [--cnn_epochs 10] [--seed 42] [--datasets reviews,vader_tweets]

The datasets: the bundled drug reviews (979 rows, at 256 tokens) and the 4,200 human-rated tweets that
the vaderSentiment package ships (benchmarks/vader_tweets.py, at 128 tokens). Every model goes through
the pipeline's own stages (preprocess, tokenize, train, evaluate, export), one after another in this
process. MiniLM trains with the stage's defaults (4 epochs, lr 1e-4); the CNNs learn their embeddings
from scratch, so they get more epochs (`--cnn_epochs`) and lr 1e-3. Latency: onnxruntime fp32,
batch 1, median of 50 runs over test rows, from export's report. One seed: on test splits of a few
hundred rows, differences of a few points of macro-F1 are within noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks import vader_tweets
from benchmarks.common import BASE_MODEL, SAMPLE, machine, markdown_table
from benchmarks.common import DATASETS as DATASETS_BY_KEY
from components.lib.data.contract import EXPORT_REPORT_FILE, METRICS_FILE, TRAIN_SUMMARY_FILE

# Each dataset: what it is, and how preprocess and tokenize read it (the source is found at run time).
DATASETS = {
    "reviews": {"name": "bundled drug reviews", "text_column": "review", "label_column": "rating", "max_length": 256},
    "vader_tweets": {"name": DATASETS_BY_KEY["vader_tweets"], "max_length": vader_tweets.MAX_LENGTH, **vader_tweets.PREPROCESS_OPTIONS},
}
AUGMENT_FACTOR = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn_epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated keys of DATASETS")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-families-") as scratch:
        work = Path(scratch)
        results = {key: compare_families(key, work / key, arguments) for key in arguments.datasets.split(",")}
    print(json.dumps({"machine": machine(), "seed": arguments.seed, "cnn_epochs": arguments.cnn_epochs, "datasets": results}))
    return 0


def source_of(key: str, work: Path) -> Path:
    return SAMPLE if key == "reviews" else vader_tweets.fetch_tweets(work / "source")


def compare_families(key: str, work: Path, arguments: argparse.Namespace) -> dict:
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    spec = DATASETS[key]
    reading = {name: value for name, value in spec.items() if name not in ("name", "max_length")}
    source = source_of(key, work)
    for data, augment_factor in (("plain", 0), ("augmented", AUGMENT_FACTOR)):
        preprocess(
            input_uri=str(source), output_uri=str(work / data / "data"), augment_factor=augment_factor, seed=arguments.seed, **reading
        )
        tokenize(
            data_uri=str(work / data / "data"), output_uri=str(work / data / "tokens"), base_model=BASE_MODEL, max_length=spec["max_length"]
        )
    cnn = {"model_type": "cnn", "learning_rate": 1e-3, "epochs": arguments.cnn_epochs}
    distilled = {**cnn, "teacher_uri": str(work / "minilm" / "model")}
    rows = [
        measure("MiniLM fine-tuned", work, "plain", "minilm", {}, arguments.seed),
        measure("CNN", work, "plain", "cnn", cnn, arguments.seed),
        measure("CNN distilled from the MiniLM", work, "plain", "distilled", distilled, arguments.seed),
        measure(f"CNN on augmented data (EDA x{AUGMENT_FACTOR})", work, "augmented", "cnn-augmented", cnn, arguments.seed),
    ]
    splits = json.loads((work / "plain" / "data" / "stats.json").read_text())["splits"]
    augmentation = json.loads((work / "augmented" / "data" / "stats.json").read_text())["augmentation"]
    baseline = json.loads((work / "minilm" / "evaluation" / "metrics.json").read_text())["baseline_majority_class"]
    return {"name": spec["name"], "max_length": spec["max_length"], "rows": rows, "split_rows": {split: counts["rows"] for split, counts in splits.items()},
            "majority_class_macro_f1": round(baseline["macro_f1"], 4), "augmentation": augmentation}  # fmt: skip


def measure(label: str, work: Path, data: str, name: str, flags: dict, seed: int) -> dict:
    from components.evaluate import evaluate
    from components.export import export
    from components.train import train

    tokens, folder = str(work / data / "tokens"), work / name
    train(data_uri=tokens, output_uri=str(folder / "model"), base_model=BASE_MODEL, report_to="none", seed=seed, **flags)
    evaluate(model_uri=str(folder / "model"), data_uri=tokens, output_uri=str(folder / "evaluation"))
    export(model_uri=str(folder / "model"), data_uri=tokens, output_uri=str(folder / "onnx"), quantize_int8=False, torchscript=False)
    test = json.loads((folder / "evaluation" / METRICS_FILE).read_text())["test"]
    summary = json.loads((folder / "model" / TRAIN_SUMMARY_FILE).read_text())
    latency = json.loads((folder / "onnx" / EXPORT_REPORT_FILE).read_text())["models"]["fp32"]["latency"]["batch_1"]
    calibration = test["calibration"]
    return {"model": label, "test_macro_f1": round(test["macro_f1"], 4), "test_accuracy": round(test["accuracy"], 4),
            "train_seconds": summary["seconds_this_process"], "batch_1_p50_ms": latency["p50_ms"],
            "temperature": round(calibration["temperature"], 3), "test_ece_before": round(calibration["ece_before"], 4),
            "test_ece_after": round(calibration["ece_after"], 4)}  # fmt: skip


def markdown(result: dict) -> str:
    sections = [
        f"Machine: {result['machine']}. Seed {result['seed']}, one run each; the CNNs train {result['cnn_epochs']} epochs at"
        " lr 1e-3, MiniLM 4 at 1e-4."
    ]
    for dataset in result["datasets"].values():
        rows = [
            [row["model"], row["test_macro_f1"], row["test_accuracy"], row["train_seconds"], row["batch_1_p50_ms"], row["temperature"],
             f"{row['test_ece_before']:.4f} -> {row['test_ece_after']:.4f}"]
            for row in dataset["rows"]
        ]  # fmt: skip
        header = ["model", "test macro-F1", "test accuracy", "train s", "batch-1 p50 ms (onnxruntime fp32)", "temperature",
                  "test ECE before -> after"]  # fmt: skip
        augmentation = dataset["augmentation"]
        splits = ", ".join(f"{split} {count}" for split, count in dataset["split_rows"].items())
        sections.append(
            f"**{dataset['name']}**, at {dataset['max_length']} tokens; splits {splits}; majority-class"
            f" macro-F1 {dataset['majority_class_macro_f1']}; augmentation added {augmentation['rows_added']} rows to"
            f" {augmentation['rows_before']}.\n\n{markdown_table(header, rows)}"
        )
    return "\n\n".join(sections)


if __name__ == "__main__":
    sys.exit(main())
