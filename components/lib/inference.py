"""Batched inference of a PyTorch classifier over a tokenized split."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from components.lib.batching import TokenizedSplit, sorted_batches


def predict_logits(
    model, split: TokenizedSplit, batch_size: int, device: torch.device, pad_id: int, autocast=contextlib.nullcontext
) -> np.ndarray:
    """Logits for every row of `split`, in row order; rows are batched by length to pad little."""
    model.eval()
    logits = np.zeros((len(split), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for rows in sorted_batches(split.lengths, batch_size):
            batch = split.collate(rows, pad_id)
            with autocast():
                output = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
            logits[rows] = output.logits.float().cpu().numpy()
    return logits


def mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item())


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponent = np.exp(shifted)
    return exponent / exponent.sum(axis=1, keepdims=True)
