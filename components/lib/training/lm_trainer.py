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

from components.lib.data.batching import competence, predicted_tokens_in_contexts, split_into_contexts
from components.lib.modelling.language_model import next_token_loss_sum, predicted_tokens, score_blocks
from components.lib.training.trainer import FineTuner

CONTEXT_STEP = 8  # sequence-length warmup's lengths are multiples of this (a handful of shapes, each a whole number of tiles)


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

    def row_difficulty(self) -> np.ndarray | None:
        """--curriculum length here grows the context, not a pool of blocks (context_length); rarity is a pool."""
        return None if self.config.curriculum == "length" else super().row_difficulty()

    def context_length(self) -> int | None:
        """--curriculum length: the sequence length of this step's pieces (sequence-length warmup, Li et al. 2022,
        "The Stability-Efficiency Dilemma"): the block's --curriculum_start share at the first step, growing by
        --curriculum_pacing to the whole block over --curriculum_epochs, in multiples of CONTEXT_STEP. A function
        of the step alone, so a resumed run cuts alike. None: whole blocks."""
        config = self.config
        if config.curriculum != "length" or not config.curriculum_epochs:
            return None
        block = int(self.blocks.lengths.max()) if len(self.blocks) else 1
        share = competence(self.progress.global_step, config.curriculum_epochs * self.steps_per_epoch, config.curriculum_start,
                           config.curriculum_pacing)  # fmt: skip
        context = max(CONTEXT_STEP, int(share * block) // CONTEXT_STEP * CONTEXT_STEP)
        return None if context >= block else context

    def loss_units(self, rows: np.ndarray) -> int:
        context = self.context_length()
        lengths = self.train_split.lengths[rows]
        return predicted_tokens(lengths) if context is None else predicted_tokens_in_contexts(lengths, context)

    def forward_backward(self, batch: dict[str, torch.Tensor], step_rows: int) -> torch.Tensor:
        context = self.context_length()
        return super().forward_backward(batch if context is None else split_into_contexts(batch, context), step_rows)

    def mean_loss(self, batch: dict[str, torch.Tensor], rows: np.ndarray) -> torch.Tensor:
        context = self.context_length()
        return super().mean_loss(batch if context is None else split_into_contexts(batch, context), rows)

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
