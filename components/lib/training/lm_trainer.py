"""The training loop for causal language models: FineTuner's loop, schedules, accumulation, precision,
checkpoints, exact resume, DDP and early stopping, with a language model's loss and validation.

The unit of the loss is a predicted token: a step's loss is the summed next-token cross-entropy over
all its blocks (every micro-batch, every process) divided by the number of tokens predicted, so
accumulation and DDP give the same update as one large batch, as for classification's rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from components.lib.modelling.language_model import next_token_loss_sum, predicted_tokens, score_blocks
from components.lib.training.trainer import FineTuner


class LanguageModelTuner(FineTuner):
    def plan(self, epoch: int) -> list[np.ndarray]:
        """Each epoch reads the train split's tokens as one stream rotated by a seeded shift below the block
        size, cut into blocks of the same lengths: windows that start at other tokens every epoch (GPT
        training samples random windows for the same reason: fixed blocks are learnt by heart on a small
        corpus), yet the same number of steps, so the schedule holds and resume stays exact. The rotation
        joins the stream's end, an end-of-text, to its start: a document boundary like any other.
        Epoch 0 reads the blocks as tokenize cut them."""
        if not hasattr(self, "blocks"):
            self.blocks = self.train_split  # as loaded: the rotations are of this
        self.train_split = self.blocks.rotated(self.window_shift(epoch))
        return super().plan(epoch)

    def window_shift(self, epoch: int) -> int:
        block_size = int(self.blocks.lengths.max()) if len(self.blocks) else 1
        return int(np.random.default_rng([self.config.seed, epoch, 2]).integers(block_size)) if epoch else 0

    def class_weights(self) -> None:
        return None  # a vocabulary is not a set of classes to balance

    def loss_units(self, rows: np.ndarray) -> int:
        return predicted_tokens(self.train_split.lengths[rows])

    def loss_sum(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return next_token_loss_sum(logits, batch["input_ids"], batch["attention_mask"])

    def evaluate(self) -> dict[str, Any]:
        scores = score_blocks(self.model, self.validation, self.config.eval_batch_size, self.device, self.pad_id, self.autocast)
        return scores.metrics()

    def validation_summary(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {"loss": round(metrics["loss"], 6), "perplexity": round(metrics["perplexity"], 4),
                "next_token_accuracy": round(metrics["next_token_accuracy"], 4)}  # fmt: skip

    def validation_details(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"tokens": metrics["tokens"]}
