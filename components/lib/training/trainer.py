"""The fine-tuning loop behind `components/train.py`.

Features: AdamW without decay on biases and norms, layer-wise learning-rate decay, linear /
cosine / cosine-with-restarts / constant schedules with warmup, gradient clipping and
accumulation, bf16/fp16 autocast (fp16 with a GradScaler), length-grouped dynamic padding,
class weights and label smoothing, encoder freezing, torch.compile, evaluation every epoch or N
steps, best weights by a chosen metric, early stopping, checkpoints every N steps and on SIGTERM
with exact resume, and DistributedDataParallel under torchrun.

Limits: every process evaluates the whole validation split (it is small, and this keeps early
stopping in step without extra messages); exact resume is exact on CPU, and on GPU up to
cuDNN/cuBLAS nondeterminism.

The loss of an optimizer step is the sum of per-row losses over every row of the step (all
micro-batches, all processes) divided by that row count. So accumulating k micro-batches, or
splitting a batch over k processes, computes the same update as one k-times-larger batch.
A task with another loss or validation subclasses `FineTuner` and overrides `loss_sum`, `loss_units`
and `evaluate` (`LanguageModelTuner` in lm_trainer.py: the unit of the loss is a predicted token
instead of a row); the task (components/lib/tasks/) names its tuner.

FineTuner is this module's loop over its parts: tuner_core.py (its inputs, optimizer, batch plan, precision,
freezing, banner and summary), tuner_evaluation.py (evaluation, best weights, early stopping),
tuner_checkpoints.py (resume, SIGTERM, the best weights back) and loop_parts.py (autocast's dtype, Progress).
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any, cast

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from components.lib.data.batching import TokenizedSplit, shard
from components.lib.training.loop_parts import (
    SIGTERM_EXIT_CODE,
    PlannedBatches,
    Progress,
    StopRequest,
    log,
    training_precision,
)
from components.lib.training.tuner_checkpoints import Checkpointing
from components.lib.training.tuner_core import TunerInputs, count_parameters
from components.lib.training.tuner_evaluation import EvaluationTracking

__all__ = [
    "SIGTERM_EXIT_CODE",
    "FineTuner",
    "PlannedBatches",
    "Progress",
    "StopRequest",
    "TunerInputs",
    "count_parameters",
    "distillation_loss_sum",
    "sample_training_rows",
    "seed_everything",
    "training_precision",
]


class FineTuner(EvaluationTracking, Checkpointing):
    """`FineTuner(TunerInputs(...))`; then `resume()`, `train()` and `load_best_weights()`."""

    def train(self) -> dict[str, Any]:
        if self.dist.is_main:
            for line in self.header_lines():
                log.info(line)
        stop = StopRequest()
        started = time.perf_counter()
        self.reporters.plan(self.total_steps, self.progress.global_step)
        bar = tqdm(
            total=self.total_steps,
            initial=self.progress.global_step,
            desc="train",
            unit="step",
            disable=not self.dist.is_main,
            mininterval=1.0,
            dynamic_ncols=True,
        )
        try:
            while self.progress.epoch < self.config.epochs and not self.finished() and not self.paused():
                self.run_epoch(self.progress.epoch, bar, stop)
                if self.progress.next_micro_batch >= self.micro_batches_per_epoch:
                    self.end_epoch()
            where = self.progress.epoch + self.progress.next_micro_batch / self.micro_batches_per_epoch
            if self.paused():
                self.pause()  # the open --logging_steps interval goes on in the next round, as in an uninterrupted run
            else:
                self.log_training_loss(where)  # the steps after the last full --logging_steps interval
                evaluations = self.progress.history["evaluations"]
                if not evaluations or evaluations[-1]["step"] != self.progress.global_step:
                    # Stopped by --max_steps between evaluations: judge the final weights too.
                    self.evaluate_and_track(where)
        finally:
            bar.close()
            stop.restore()
        elapsed = time.perf_counter() - started
        return self.summary(elapsed)

    def paused(self) -> bool:
        """--stop_after_epochs reached before the run's end (a successive-halving round)."""
        stop_after = self.config.stop_after_epochs
        return bool(stop_after) and self.progress.epoch >= stop_after and self.progress.epoch < self.config.epochs and not self.finished()

    def pause(self) -> None:
        """Checkpoint where the round ends, with no extra evaluation or loss line (an uninterrupted run has
        neither here, and resuming must match it); the round is judged by its best evaluation so far."""
        self.save_checkpoint()
        if self.dist.is_main:
            log.info("--stop_after_epochs %d: paused at step %d, checkpointed for a later round to resume",
                     self.config.stop_after_epochs, self.progress.global_step)  # fmt: skip

    def finished(self) -> bool:
        reached_max = bool(self.config.max_steps) and self.progress.global_step >= self.config.max_steps
        return reached_max or self.progress.stopped_early

    def run_epoch(self, epoch: int, bar: tqdm, stop: StopRequest) -> None:
        self.set_frozen(epoch < self.config.freeze_encoder_epochs)
        batches = self.plan(epoch)
        start = self.progress.next_micro_batch
        loader = self.loader([shard(batch, self.dist.rank, self.dist.world_size) for batch in batches[start:]], epoch)
        loader_iterator = iter(loader)
        accum = self.config.grad_accum_steps
        position = start
        while position < len(batches) and not self.finished():
            group = batches[position : position + accum]
            step_rows = sum(self.loss_units(batch) for batch in group)
            micro_batch_losses = []
            self.train_model.train()
            for index in range(len(group)):
                local_batch = next(loader_iterator)
                is_last = index == len(group) - 1
                # DDP's no_sync, reached through torch.compile's wrapper when compiled
                sync = contextlib.nullcontext() if is_last or not self.dist.enabled else cast(DDP, self.train_model).no_sync()
                with sync:
                    micro_batch_losses.append(self.forward_backward(local_batch, step_rows))
            position += len(group)
            self.optimizer_step()
            self.unsettled_losses.append((micro_batch_losses, step_rows))
            self.progress.next_micro_batch = position
            self.after_step(epoch + position / len(batches), bar)
            if self.dist.any(stop.requested):
                self.stop_for_a_retry()

    def loader(self, local_batches: list[np.ndarray], epoch: int) -> torch.utils.data.DataLoader:
        """Collate planned batches, in worker processes if asked. The loader gets its own seeded
        generator, so starting it never draws from the global RNG that dropout uses."""
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        return torch.utils.data.DataLoader(
            PlannedBatches(self.train_split, local_batches, self.pad_id),
            batch_size=None,
            shuffle=False,
            num_workers=self.config.num_workers,
            pin_memory=self.config.pin_memory and self.device.type == "cuda",
            generator=generator,
            persistent_workers=False,
        )

    def loss_units(self, rows: np.ndarray) -> int:
        """What a step's loss is the mean over: here rows, one loss each."""
        return len(rows)

    def forward_backward(self, batch: dict[str, torch.Tensor], step_rows: int) -> torch.Tensor:
        """One micro-batch's backward pass; returns its loss sum, left on the device (see settle_losses)."""
        self.samples_seen += len(batch["input_ids"])
        self.tokens_seen += int(batch["attention_mask"].sum())  # counted on the host copy: no wait for the device
        self.padded_tokens_seen += batch["input_ids"].numel()
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        with self.autocast():
            logits = self.train_model(batch["input_ids"], batch["attention_mask"])
        loss_sum = self.loss_sum(logits, batch)
        # DDP averages gradients over processes, so scale by world size to get the sum over loss units.
        self.scaler.scale(loss_sum * self.dist.world_size / step_rows).backward()
        return loss_sum.detach()

    def mean_loss(self, batch: dict[str, torch.Tensor], rows: np.ndarray) -> torch.Tensor:
        """One batch's mean training loss as a step weighs it (its loss summed over its loss units, divided by
        their number: rows for a classifier, predicted tokens for a language model): the LR range test's."""
        batch = {key: value.to(self.device) for key, value in batch.items()}
        with self.autocast():
            logits = self.model(batch["input_ids"], batch["attention_mask"])
        return self.loss_sum(logits, batch) / self.loss_units(rows)

    def loss_sum(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The micro-batch's loss summed over its loss units (`loss_units`): here cross-entropy over rows, with
        class weights and label smoothing, and distillation from a teacher's logits. A task with another
        loss subclasses the tuner and overrides this (lm_trainer.py, multilabel_trainer.py)."""
        logits = logits.float()
        loss_sum = torch.nn.functional.cross_entropy(
            logits, batch["labels"], weight=self.loss_weights, label_smoothing=self.config.label_smoothing, reduction="sum"
        )
        if "teacher_logits" in batch:
            loss_sum = distillation_loss_sum(
                logits, batch["teacher_logits"], loss_sum, self.config.distill_temperature, self.config.distill_alpha
            )
        return loss_sum

    def optimizer_step(self) -> None:
        if self.config.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.global_step += 1

    def after_step(self, epoch_progress: float, bar: tqdm) -> None:
        progress, config = self.progress, self.config
        step = progress.global_step
        bar.update(1)
        if step % config.logging_steps == 0 or step == 1:  # the first step too: where the curves start
            self.log_training_loss(epoch_progress)
            running = progress.epoch_loss_sum / progress.epoch_loss_steps
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{self.learning_rate():.2e}")
        if config.eval_every_steps and step % config.eval_every_steps == 0:
            self.evaluate_and_track(epoch_progress)
        if self.checkpoint_uri and config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
            self.save_checkpoint()

    def log_training_loss(self, epoch_progress: float) -> None:
        """Record the mean loss of the steps since the last record (not just the last step's batch)."""
        self.settle_losses()
        progress = self.progress
        if not progress.logging_loss_steps:
            return
        loss = progress.logging_loss_sum / progress.logging_loss_steps
        entry = {"step": progress.global_step, "epoch": round(epoch_progress, 4), "loss": loss, "learning_rate": self.learning_rate()}
        progress.history["steps"].append(entry)
        progress.logging_loss_sum, progress.logging_loss_steps = 0.0, 0
        if self.dist.is_main:
            self.reporters.log(progress.global_step, {"train/loss": loss, "train/learning_rate": entry["learning_rate"]})

    def end_epoch(self) -> None:
        self.settle_losses()
        progress = self.progress
        if not self.config.eval_every_steps:
            self.evaluate_and_track(float(progress.epoch + 1))
        latest = progress.history["evaluations"][-1] if progress.history["evaluations"] else {}
        progress.history["epochs"].append(
            {
                "epoch": progress.epoch + 1,
                "train_loss": progress.epoch_loss_sum / max(progress.epoch_loss_steps, 1),
                "learning_rate": self.learning_rate(),
                "validation": latest.get("validation", {}),
            }
        )
        progress.epoch += 1
        progress.next_micro_batch = 0
        progress.epoch_loss_sum, progress.epoch_loss_steps = 0.0, 0


def distillation_loss_sum(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, gold_loss_sum: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015), summed over rows: alpha x T^2 x KL(teacher || student),
    both softened by temperature T, plus (1 - alpha) x the loss on the gold labels. T^2 keeps the soft
    term's gradients on the same scale as the gold term's whatever T is (section 2 of the paper)."""
    student = torch.nn.functional.log_softmax(student_logits / temperature, dim=-1)
    teacher = torch.nn.functional.log_softmax(teacher_logits.float() / temperature, dim=-1)
    soft = torch.nn.functional.kl_div(student, teacher, log_target=True, reduction="sum")
    return alpha * temperature**2 * soft + (1 - alpha) * gold_loss_sum


def sample_training_rows(split: TokenizedSplit, count: int, seed: int) -> TokenizedSplit:
    """`count` rows of `split` drawn with `seed` (kept in file order), for smoke tests; 0 = all rows."""
    if not count:
        return split
    if count >= len(split):
        log.info("--max_train_samples %d: the training split has only %d rows; training on all of them", count, len(split))
        return split
    rows = np.sort(np.random.default_rng(seed).choice(len(split), size=count, replace=False))
    log.warning("--max_train_samples %d: training on %d of %d training rows (a sample drawn with --seed %d)",
                count, count, len(split), seed)  # fmt: skip
    return split.subset(rows)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
