"""onnxruntime sessions on CPU: logits over a tokenized split, a classifier of raw texts, and latency."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from components.lib.data.batching import TokenizedSplit, sorted_batches
from components.lib.modelling.inference import TextClassifier, text_classifier


def cpu_session(path: Path, threads: int = 0):
    """A CPU session with every graph optimization on; `threads=0` lets onnxruntime choose."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds(batch: dict) -> dict[str, np.ndarray]:
    return {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}


def session_logits(session, split: TokenizedSplit, batch_size: int, pad_id: int) -> np.ndarray:
    logits = np.zeros((len(split), 0), dtype=np.float32)  # no rows, no columns: as predict_logits answers
    for rows in sorted_batches(split.lengths, batch_size):
        output = session.run(["logits"], feeds(split.collate(rows, pad_id)))[0]
        if not logits.shape[1]:
            logits = np.zeros((len(split), output.shape[1]), dtype=np.float32)
        logits[rows] = output
    return logits


def onnx_text_classifier(folder: Path, manifest: dict, where: str, model_file: str) -> TextClassifier:
    """An exported model folder (or a registry version) as a TextClassifier, cleaning texts as its training did."""
    session = cpu_session(folder / model_file)
    return text_classifier(folder, manifest, where, lambda split, batch_size, pad_id: session_logits(session, split, batch_size, pad_id))


def latency_ms(run_batch, batches: list[dict], warmup: int = 3) -> dict[str, float]:
    """Median and 90th percentile milliseconds of `run_batch` over `batches` (after warmup)."""
    for batch in batches[:warmup]:
        run_batch(batch)
    timings = []
    for batch in batches:
        started = time.perf_counter()
        run_batch(batch)
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(float(np.percentile(timings, 50)), 3),
        "p90_ms": round(float(np.percentile(timings, 90)), 3),
        "runs": len(timings),
    }


def latency_batches(split: TokenizedSplit, pad_id: int, batch_size: int, count: int, seed: int = 0) -> list[dict]:
    """`count` batches of real rows drawn at random, each padded to its longest row."""
    rng = np.random.default_rng(seed)
    size = min(batch_size, len(split))
    return [split.collate(rng.choice(len(split), size=size, replace=False), pad_id) for _ in range(count)]
