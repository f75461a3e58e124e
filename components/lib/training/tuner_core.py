"""What FineTuner is made of before its loop runs: its inputs (`TunerInputs`), the optimizer and schedule,
class weights, each epoch's batch plan, autocast, encoder freezing, the step losses not yet read off the
device, and the run's banner and summary. The evaluation and checkpoint mixins build on this."""

from __future__ import annotations

import dataclasses
import math
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from components.lib.data.batching import TokenizedSplit, curriculum_epoch, mean_token_rarity, plan_epoch
from components.lib.modelling.classifier import TrainableModel
from components.lib.training.distributed import Distributed
from components.lib.training.loop_parts import Progress, log, training_precision
from components.lib.training.optim import build_scheduler, parameter_groups, warmup_steps
from components.lib.training.reporters import Reporters
from components.lib.training.settings import TrainConfig


@dataclass(frozen=True)
class TunerInputs:
    """What a tuner trains, on what, and where it keeps its checkpoints and reports."""

    config: TrainConfig
    model: TrainableModel  # a TextClassifierModel, or what the task's tuner trains (a CausalLanguageModel)
    label_names: list[str]
    train: TokenizedSplit
    validation: TokenizedSplit
    pad_id: int
    work_dir: Path  # the best weights go here when there is no checkpoint_uri
    checkpoint_uri: str  # "" for none: no resume, no checkpoints
    identity: dict[str, Any]  # what a checkpoint must match to be resumed (checkpoint.identity)
    reporters: Reporters
    distributed: Distributed


class TunerCore:
    def __init__(self, inputs: TunerInputs) -> None:
        config, distributed = inputs.config, inputs.distributed
        self.config = config
        self.model = inputs.model.to(distributed.device)
        self.label_names = inputs.label_names
        self.train_split = inputs.train
        self.validation = inputs.validation
        self.pad_id = inputs.pad_id
        self.best_uri = inputs.checkpoint_uri or str(inputs.work_dir / "best-weights")
        self.checkpoint_uri = inputs.checkpoint_uri
        self.identity = inputs.identity
        self.reporters = inputs.reporters
        self.dist = distributed
        self.device = distributed.device
        self.precision = training_precision(config.precision, self.device)
        self.global_batch_size = config.batch_size * distributed.world_size
        self.said_rows_left_out = False  # plan() warns once when torchrun leaves rows out
        self.micro_batches_per_epoch = len(self.plan(0))
        self.steps_per_epoch = math.ceil(self.micro_batches_per_epoch / config.grad_accum_steps)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer, self.scheduler = self.optimizer_and_schedule()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.dtype == torch.float16)
        self.loss_weights = self.class_weights()
        self.progress = Progress()
        self.frozen: bool | None = None
        self.train_model: torch.nn.Module = self.model
        self.samples_seen = 0
        self.tokens_seen = 0
        self.padded_tokens_seen = 0
        self.seconds_not_training = 0.0  # evaluation and checkpoints, left out of the training throughput
        self.unsettled_losses: list[tuple[list[torch.Tensor], int]] = []  # (micro-batch loss sums, rows) of steps not yet in Progress

    # ----- setup -------------------------------------------------------------------------
    def optimizer_and_schedule(self):
        config = self.config
        optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.learning_rate, config.weight_decay, config.layerwise_lr_decay),
            lr=config.learning_rate,
            fused=True,  # one kernel over all parameters, on CPU as on GPU: a quarter of foreach's step time here
        )
        warmup = warmup_steps(self.total_steps, config.warmup_steps, config.warmup_ratio)
        return optimizer, build_scheduler(optimizer, config.scheduler, self.total_steps, warmup, config.num_cycles)

    def use_learning_rate(self, learning_rate: float) -> None:
        """Train at `learning_rate` instead of --learning_rate (the range test's suggestion)."""
        self.config = dataclasses.replace(self.config, learning_rate=learning_rate)
        self.optimizer, self.scheduler = self.optimizer_and_schedule()

    def class_weights(self) -> torch.Tensor | None:
        """With --class_weights balanced, each class weighted by rows / (classes x its rows); else None."""
        if self.config.class_weights != "balanced":
            return None
        counts = np.bincount(self.train_split.gold, minlength=len(self.label_names)).astype(float)
        weights = np.divide(counts.sum(), len(counts) * counts, out=np.zeros_like(counts), where=counts > 0)
        return torch.tensor(weights, dtype=torch.float32).to(self.device)

    def row_difficulty(self) -> np.ndarray | None:
        """Each train row's difficulty for a pool curriculum, easiest lowest: its length in tokens (--curriculum
        length) or the mean rarity of its tokens (rarity); None where the curriculum is not a pool of rows."""
        if self.config.curriculum == "rarity":
            return mean_token_rarity(self.train_split)
        return self.train_split.lengths.astype(np.float64)

    def plan(self, epoch: int) -> list[np.ndarray]:
        config = self.config
        if config.curriculum != "none" and epoch < config.curriculum_epochs and (difficulty := self.row_difficulty()) is not None:
            batches = curriculum_epoch(difficulty, self.global_batch_size, config.seed, epoch,
                                       config.curriculum_epochs, config.curriculum_start, config.curriculum_pacing)  # fmt: skip
        else:
            batches = plan_epoch(self.train_split.lengths, self.global_batch_size, config.seed, epoch, config.group_by_length)
        # Every process needs at least one row of each batch; a last batch smaller than the
        # number of processes is dropped (only ever under torchrun), and said.
        kept = [batch for batch in batches if len(batch) >= self.dist.world_size]
        if len(kept) < len(batches) and self.dist.is_main and not self.said_rows_left_out:
            self.said_rows_left_out = True
            dropped = sum(len(batch) for batch in batches) - sum(len(batch) for batch in kept)
            log.warning(
                "%d row(s) per epoch left out: a last batch smaller than the %d processes cannot be shared", dropped, self.dist.world_size
            )
        return kept

    def autocast(self):
        return self.precision.autocast(self.device)()

    def set_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the encoder, and rebuild the DDP/compile wrappers if that changed."""
        if frozen == self.frozen:
            return
        for parameter in self.model.encoder_parameters():
            parameter.requires_grad_(not frozen)
        self.frozen = frozen
        self.train_model = self.dist.wrap(self.model)
        if self.config.compile:
            compiled = torch.compile(self.train_model, backend=self.config.compile_backend, dynamic=True)
            self.train_model = cast(torch.nn.Module, compiled)  # compiling a module gives a module (an OptimizedModule)

    def learning_rate(self) -> float:
        return float(self.scheduler.get_last_lr()[-1])

    def settle_losses(self) -> None:
        """Add the losses of the steps since the last call to Progress's sums, with one wait for the device.

        Reading a loss on the host makes it wait for the GPU to finish; once per step, the host could
        not queue the next step's kernels while the GPU ran this one. So losses stay on the device
        until a sum is read (logging, evaluation, checkpoint, end of epoch). Each step's loss is the
        same float, added in the same order, as when it was read at once: resume stays exact.
        """
        if not self.unsettled_losses:
            return
        values = iter(torch.stack([loss for losses, _ in self.unsettled_losses for loss in losses]).tolist())
        progress = self.progress
        for losses, step_rows in self.unsettled_losses:
            step_loss = self.dist.sum(sum(next(values) for _ in losses)) / step_rows
            progress.epoch_loss_sum += step_loss
            progress.epoch_loss_steps += 1
            progress.interval_loss_sum += step_loss
            progress.interval_loss_steps += 1
            progress.logging_loss_sum += step_loss
            progress.logging_loss_steps += 1
        self.unsettled_losses.clear()

    # ----- what the run says about itself ------------------------------------------------
    def header_lines(self) -> list[str]:
        """What this run is about to do, in the spirit of the Hugging Face Trainer's banner."""
        config, dist = self.config, self.dist
        parameters = count_parameters(self.model)
        head_only = parameters - sum(parameter.numel() for parameter in self.model.encoder_parameters())
        lines = [
            "***** Running training *****",
            f"  training rows = {len(self.train_split)}, validation rows = {len(self.validation)}",
            f"  epochs = {config.epochs}" + (f" (stopping at --max_steps {config.max_steps})" if config.max_steps else ""),
            f"  batch size per device = {config.batch_size}, processes = {dist.world_size}, "
            f"gradient accumulation steps = {config.grad_accum_steps}, "
            f"rows per optimizer step = {self.global_batch_size * config.grad_accum_steps}",
            f"  optimization steps = {self.total_steps} ({self.steps_per_epoch} per epoch)",
            f"  device = {self.device}, precision = {self.precision.name} ({self.precision.reason})",
            f"  parameters = {parameters:,}"
            + (f" ({head_only:,} trained in the first {config.freeze_encoder_epochs} epoch(s))" if config.freeze_encoder_epochs else ""),
        ]
        if self.progress.global_step:
            lines.append(f"  resuming at step {self.progress.global_step} (epoch {self.progress.epoch + 1})")
        return lines

    def all_processes_per_second(self, count_here: int, seconds: float) -> float | None:
        """A rate for the whole job from this process's count (every process does the same share)."""
        return round(count_here * self.dist.world_size / seconds, 2) if seconds > 0 else None

    def summary(self, elapsed: float) -> dict[str, Any]:
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        training_seconds = elapsed - self.seconds_not_training
        summary = {
            "global_steps": self.progress.global_step,
            "epochs_completed": self.progress.epoch,
            "stopped_early": self.progress.stopped_early,
            "best": {"metric": self.config.metric_for_best, "value": self.progress.best_value, "step": self.progress.best_step},
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "precision": self.precision.name,
            "precision_reason": self.precision.reason,
            "seconds_this_process": round(elapsed, 2),
            "seconds_evaluating_and_checkpointing": round(self.seconds_not_training, 2),
            "samples_per_second_this_process": self.all_processes_per_second(self.samples_seen, elapsed),
            "training_samples_per_second": self.all_processes_per_second(self.samples_seen, training_seconds),
            "tokens_seen": self.tokens_seen * self.dist.world_size,
            "tokens_per_second": self.all_processes_per_second(self.tokens_seen, training_seconds),
            "padded_tokens_per_second": self.all_processes_per_second(self.padded_tokens_seen, training_seconds),
            "padding_share": round(1 - self.tokens_seen / self.padded_tokens_seen, 4) if self.padded_tokens_seen else None,
            "mean_padded_length": round(self.padded_tokens_seen / self.samples_seen, 1) if self.samples_seen else None,
            "peak_rss_mb": round(peak_rss_mb, 1),
        }
        if self.device.type == "cuda":
            summary["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return summary


def count_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())
