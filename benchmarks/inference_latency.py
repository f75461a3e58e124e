"""Benchmark 3: inference latency at batch 1 and throughput at batch 32, PyTorch eager beside
onnxruntime fp32 and onnxruntime INT8, on one fine-tuned model, in one process.

    python -m benchmarks.inference_latency [--workdir build/bench]

The model: all-MiniLM-L6-v2 fine-tuned by the train stage on the review first sentences (tweet length; 4 epochs,
balanced class weights), exported by the export stage (onnxruntime's transformer fusion, then its
quantization pre-processing and dynamic INT8 quantization). Latency: 200 single rows; throughput: 20 batches of 32; both after warmup,
each engine on the same inputs. Test macro-F1 of each engine on the whole test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.common import BASE_MODEL, REPO, machine, markdown_table, prepare_datasets


def fine_tuned(workdir: Path, tokens: Path) -> tuple[Path, Path]:
    from components.export import export
    from components.train import train

    model, onnx = workdir / "inference" / "model", workdir / "inference" / "onnx"
    if not (model / "MANIFEST.json").exists():
        train(
            data_uri=str(tokens),
            output_uri=str(model),
            base_model=BASE_MODEL,
            epochs=4,
            batch_size=16,
            learning_rate=1e-4,
            class_weights="balanced",
            report_to="none",
        )
    if not (onnx / "MANIFEST.json").exists():
        export(model_uri=str(model), data_uri=str(tokens), output_uri=str(onnx), latency_runs=5)
    return model, onnx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "build" / "bench"))
    workdir = Path(parser.parse_args().workdir)

    from components.lib.data.batching import TokenizedSplit
    from components.lib.data.labels import read_labels
    from components.lib.modelling.families import load_model
    from components.lib.modelling.inference import predict_logits
    from components.lib.modelling.onnx_runtime import cpu_session, feeds, latency_batches, latency_ms, session_logits
    from components.lib.reporting.metrics import classification_metrics

    tokens = prepare_datasets(workdir)["first_sentences"]["tokens"]
    model_dir, onnx_dir = fine_tuned(workdir, tokens)
    labels = read_labels(model_dir)
    test = TokenizedSplit.load(tokens, "test")
    model = load_model(model_dir, str(model_dir)).eval()
    sessions = {"onnxruntime fp32": cpu_session(onnx_dir / "model.onnx"), "onnxruntime INT8": cpu_session(onnx_dir / "model.int8.onnx")}

    def eager(batch):
        with torch.inference_mode():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    engines = {
        "PyTorch eager": eager,
        **{name: (lambda batch, session=session: session.run(["logits"], feeds(batch))) for name, session in sessions.items()},
    }
    singles, batches = latency_batches(test, 0, 1, 200, seed=1), latency_batches(test, 0, 32, 20, seed=2)
    results = {"machine": machine(), "test_rows": len(test), "engines": {}}
    for name, run in engines.items():
        single = latency_ms(run, singles, warmup=10)
        throughput = latency_ms(run, batches, warmup=2)
        if name == "PyTorch eager":
            logits = predict_logits(model, test, 64, torch.device("cpu"), 0)
        else:
            logits = session_logits(sessions[name], test, 64, 0)
        metrics = classification_metrics(test.labels, logits.argmax(axis=1), labels)
        results["engines"][name] = {
            "batch_1_p50_ms": single["p50_ms"], "batch_1_p90_ms": single["p90_ms"],
            "batch_32_p50_ms": throughput["p50_ms"], "batch_32_rows_per_second": round(32 / throughput["p50_ms"] * 1000, 1),
            "test_macro_f1": round(metrics["macro_f1"], 4), "test_accuracy": round(metrics["accuracy"], 4),
        }  # fmt: skip
    eager_ms = results["engines"]["PyTorch eager"]["batch_1_p50_ms"]
    for entry in results["engines"].values():
        entry["batch_1_speedup_vs_eager"] = round(eager_ms / entry["batch_1_p50_ms"], 2)
    fp32, int8 = results["engines"]["onnxruntime fp32"], results["engines"]["onnxruntime INT8"]
    results["int8_minus_fp32_macro_f1_points"] = round(100 * (int8["test_macro_f1"] - fp32["test_macro_f1"]), 2)
    print(json.dumps(results))
    return 0


def markdown(results: dict) -> str:
    rows = [
        [
            name,
            entry["batch_1_p50_ms"],
            entry["batch_1_speedup_vs_eager"],
            entry["batch_32_rows_per_second"],
            entry["test_macro_f1"],
            entry["test_accuracy"],
        ]
        for name, entry in results["engines"].items()
    ]
    return (
        f"Machine: {results['machine']}. all-MiniLM-L6-v2 fine-tuned on review first sentences (tweet length); {results['test_rows']} test rows."
        f" INT8 minus fp32 test macro-F1: {results['int8_minus_fp32_macro_f1_points']} points.\n\n"
        + markdown_table(["engine", "batch 1 p50 ms", "speed-up vs eager", "batch 32 rows/s", "test macro-F1", "test accuracy"], rows)
    )


if __name__ == "__main__":
    sys.exit(main())
