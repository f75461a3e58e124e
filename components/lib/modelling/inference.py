"""Batched inference of a classifier: over a tokenized split, and over raw texts cleaned as in training."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from components.lib.data.batching import TokenizedSplit, sorted_batches
from components.lib.data.label_sets import SET_JOIN
from components.lib.data.labels import read_labels
from components.lib.data.textclean import TextCleaning
from components.lib.modelling.abstention import read_min_confidence
from components.lib.modelling.calibration import read_temperature, softmax
from components.lib.modelling.families import load_model
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.modelling.thresholds import read_thresholds, sigmoid

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def predict_logits(
    model: torch.nn.Module,
    split: TokenizedSplit,
    batch_size: int,
    device: torch.device,
    pad_id: int,
    autocast=contextlib.nullcontext,
) -> np.ndarray:
    """Logits for every row of `split`, in row order; rows are batched by length to pad little.
    `model` is any module from (input_ids, attention_mask) to logits: a model family's, or its TorchScript."""
    model.eval()
    logits = np.zeros((len(split), 0), dtype=np.float32)
    with torch.inference_mode():
        for rows in sorted_batches(split.lengths, batch_size):
            batch = split.collate(rows, pad_id)
            with autocast():
                output = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            if not logits.shape[1]:
                logits = np.zeros((len(split), output.shape[1]), dtype=np.float32)
            logits[rows] = output.float().cpu().numpy()
    return logits


def mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item())


@dataclass
class TextClassifier:
    """Raw texts in, label probabilities out: each text cleaned as the training data was, then
    tokenized with the model's own tokenizer, which truncates as in training. A single-label model's
    probabilities are a softmax over its classes; a multi-label model's (one with `thresholds`) one
    sigmoid per label, each label predicted at or above its threshold."""

    labels: list[str]
    cleaning: TextCleaning
    encoder: Tokenizer  # the one saved with the model, set to pad nothing
    pad_id: int
    logits: Callable[[TokenizedSplit, int], np.ndarray]  # (split, batch size) -> logits in row order
    temperature: float  # train's calibration: probabilities are softmax(logits / temperature)
    thresholds: np.ndarray | None = None  # multi-label: each label's decision threshold
    min_confidence: float | None = None  # abstain below this highest probability (modelling/abstention.py); None: never
    unknown_id: int | None = None  # the tokenizer's unknown token, if it has one (the model server counts them)

    @property
    def multi_label(self) -> bool:
        return self.thresholds is not None

    def encode(self, texts: list[str]) -> TokenizedSplit:
        encodings = self.encoder.encode_batch_fast([self.cleaning.clean(text) for text in texts])
        return TokenizedSplit.from_token_lists([encoding.ids for encoding in encodings], np.zeros(len(texts), dtype=np.int64))

    def probabilities(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.probabilities_of(self.encode(texts), batch_size)

    def probabilities_of(self, split: TokenizedSplit, batch_size: int) -> np.ndarray:
        """The probabilities of texts already encoded (what the model server does, to count their tokens first)."""
        logits = self.logits(split, batch_size)
        return sigmoid(logits) if self.multi_label else softmax(logits, self.temperature)

    def abstained(self, probabilities: np.ndarray) -> np.ndarray | None:
        """Which texts the model abstains on (its highest probability below min_confidence); None: it never abstains."""
        return None if self.min_confidence is None else probabilities.max(axis=1) < self.min_confidence

    def answers(self, probabilities: np.ndarray) -> list[str]:
        """Each text's answer: the most probable class, or (multi-label) its labels joined by SET_JOIN, "" for none."""
        if self.thresholds is None:  # not multi-label
            return [self.labels[index] for index in probabilities.argmax(axis=1)]
        chosen = probabilities >= self.thresholds[None, :]
        return [SET_JOIN.join(name for name, on in zip(self.labels, row) if on) for row in chosen]


def text_classifier(folder: Path, manifest: dict, where: str, logits: Callable[[TokenizedSplit, int, int], np.ndarray]) -> TextClassifier:
    """A TextClassifier for a model folder; `logits(split, batch_size, pad_id)` runs the model."""
    tokenizer = load_tokenizer(where, str(folder))
    encoder = tokenizer.backend_tokenizer
    encoder.no_padding()
    pad = pad_id(tokenizer)
    return TextClassifier(
        labels=read_labels(folder),
        cleaning=TextCleaning.from_lineage(manifest.get("lineage", {}), where),
        encoder=encoder,
        pad_id=pad,
        logits=lambda split, batch_size: logits(split, batch_size, pad),
        temperature=read_temperature(folder, where),
        thresholds=read_thresholds(folder, read_labels(folder), where),
        min_confidence=read_min_confidence(folder, where),
        unknown_id=tokenizer.unk_token_id,
    )


def torch_text_classifier(folder: Path, manifest: dict, where: str) -> TextClassifier:
    """The PyTorch model that train writes, as a TextClassifier (on the GPU if there is one)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(folder, where).to(device)
    return text_classifier(
        folder, manifest, where, lambda split, batch_size, pad_id: predict_logits(model, split, batch_size, device, pad_id)
    )
