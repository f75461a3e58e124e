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
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import resource
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from components.lib.data.batching import TokenizedSplit, curriculum_epoch, plan_epoch, shard
from components.lib.errors import UserError
from components.lib.modelling.inference import mean_cross_entropy, predict_logits
from components.lib.reporting.metrics import classification_metrics, headline, is_improvement
from components.lib.training import checkpoint
from components.lib.training.distributed import Distributed
from components.lib.training.optim import build_scheduler, parameter_groups, warmup_steps
from components.lib.training.reporters import Reporters
from components.lib.training.settings import TrainConfig

SIGTERM_EXIT_CODE = 143
log = logging.getLogger("components.train")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: there oneDNN runs bf16 matmuls in hardware; elsewhere bf16 is emulated, and
    training in it is many times slower than fp32. torch 2.13 has no public probe; these private ones
    are what its own CPU dispatch consults (a torch without them reads as no native bf16)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None means fp32. `auto`: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("--precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX); it is emulated, many times slower than fp32")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16: needs a CUDA GPU; on CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU has no bf16; use fp16 or auto")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class PlannedBatches(torch.utils.data.Dataset):
    """Map-style dataset whose items are whole, already-planned batches."""

    def __init__(self, split: TokenizedSplit, batches: list[np.ndarray], pad_id: int) -> None:
        self.split, self.batches, self.pad_id = split, batches, pad_id

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.split.collate(self.batches[index], self.pad_id)


class StopRequest:
    """Set by SIGTERM (Kubernetes' notice before it kills a preempted pod); read between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = signal.signal(signal.SIGTERM, self.request)

    def request(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)


@dataclass
class Progress:
    """The plain-data part of a checkpoint: where the run is and what it has seen."""

    global_step: int = 0
    epoch: int = 0
    next_micro_batch: int = 0
    best_value: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    stopped_early: bool = False
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    interval_loss_sum: float = 0.0
    interval_loss_steps: int = 0
    logging_loss_sum: float = 0.0
    logging_loss_steps: int = 0
    history: dict[str, list] = field(default_factory=lambda: {"steps": [], "evaluations": [], "epochs": []})


class FineTuner:
    def __init__(
        self,
        config: TrainConfig,
        model: torch.nn.Module,  # a TextClassifierModel, or what the task's tuner trains
        label_names: list[str],
        train: TokenizedSplit,
        validation: TokenizedSplit,
        pad_id: int,
        work_dir: Path,
        checkpoint_uri: str,
        identity: dict[str, Any],
        reporters: Reporters,
        distributed: Distributed,
    ) -> None:
        self.config = config
        self.model = model.to(distributed.device)
        self.label_names = label_names
        self.train_split = train
        self.validation = validation
        self.pad_id = pad_id
        self.best_uri = checkpoint_uri or str(work_dir / "best-weights")
        self.checkpoint_uri = checkpoint_uri
        self.identity = identity
        self.reporters = reporters
        self.dist = distributed
        self.device = distributed.device
        self.dtype = autocast_dtype(config.precision, self.device)
        self.global_batch_size = config.batch_size * distributed.world_size
        self.said_rows_left_out = False  # plan() warns once when torchrun leaves rows out
        self.micro_batches_per_epoch = len(self.plan(0))
        self.steps_per_epoch = math.ceil(self.micro_batches_per_epoch / config.grad_accum_steps)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer, self.scheduler = self.optimizer_and_schedule()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
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
        counts = np.bincount(self.train_split.labels, minlength=len(self.label_names)).astype(float)
        weights = np.divide(counts.sum(), len(counts) * counts, out=np.zeros_like(counts), where=counts > 0)
        return torch.tensor(weights, dtype=torch.float32).to(self.device)

    def loss_units(self, rows: np.ndarray) -> int:
        """What a step's loss is the mean over: here rows, one loss each."""
        return len(rows)

    def plan(self, epoch: int) -> list[np.ndarray]:
        config = self.config
        if config.curriculum == "length" and epoch < config.curriculum_epochs:
            batches = curriculum_epoch(self.train_split.lengths, self.global_batch_size, config.seed, epoch,
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

    def resume(self) -> bool:
        if not self.checkpoint_uri:
            return False
        loaded = checkpoint.load_latest(self.checkpoint_uri, self.model, self.identity)
        if loaded is None:
            return False
        trainer_state, state = loaded
        self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        self.scaler.load_state_dict(trainer_state["scaler"])
        checkpoint.restore_rng_states(trainer_state["rng"])
        self.progress = Progress(**state["progress"])
        return True

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def set_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the encoder, and rebuild the DDP/compile wrappers if that changed."""
        if frozen == self.frozen:
            return
        for parameter in self.model.encoder_parameters():
            parameter.requires_grad_(not frozen)
        self.frozen = frozen
        self.train_model = self.dist.wrap(self.model)
        if self.config.compile:
            self.train_model = torch.compile(self.train_model, backend=self.config.compile_backend, dynamic=True)

    # ----- the loop ----------------------------------------------------------------------
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
            f"  device = {self.device}, precision = {self.precision_name()}",
            f"  parameters = {parameters:,}"
            + (f" ({head_only:,} trained in the first {config.freeze_encoder_epochs} epoch(s))" if config.freeze_encoder_epochs else ""),
        ]
        if self.progress.global_step:
            lines.append(f"  resuming at step {self.progress.global_step} (epoch {self.progress.epoch + 1})")
        return lines

    def train(self) -> dict[str, Any]:
        if self.dist.is_main:
            for line in self.header_lines():
                log.info(line)
        stop = StopRequest()
        started = time.perf_counter()
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
            while self.progress.epoch < self.config.epochs and not self.finished():
                self.run_epoch(self.progress.epoch, bar, stop)
                if self.progress.next_micro_batch >= self.micro_batches_per_epoch:
                    self.end_epoch()
            where = self.progress.epoch + self.progress.next_micro_batch / self.micro_batches_per_epoch
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
                sync = contextlib.nullcontext() if is_last or not self.dist.enabled else self.train_model.no_sync()
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

    def precision_name(self) -> str:
        return str(self.dtype or torch.float32).replace("torch.", "")

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

    # ----- evaluation, best weights, early stopping -------------------------------------
    def validation_logits(self) -> np.ndarray:
        return predict_logits(self.model, self.validation, self.config.eval_batch_size, self.device, self.pad_id, self.autocast)

    def evaluate(self) -> dict[str, Any]:
        logits = self.validation_logits()
        metrics = classification_metrics(self.validation.labels, logits.argmax(axis=1), self.label_names)
        metrics["loss"] = mean_cross_entropy(logits, self.validation.labels)
        return metrics

    def validation_summary(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The figures logged and shown at each evaluation."""
        return {**headline(metrics), "loss": round(metrics["loss"], 6)}

    def validation_details(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What the history keeps of an evaluation beside its summary."""
        return {"per_class_f1": {name: round(entry["f1"], 4) for name, entry in metrics["per_class"].items()}}

    def evaluate_and_track(self, epoch_progress: float) -> None:
        started = time.perf_counter()
        try:
            self.track_evaluation(epoch_progress)
        finally:
            self.seconds_not_training += time.perf_counter() - started

    def track_evaluation(self, epoch_progress: float) -> None:
        self.settle_losses()
        progress, config = self.progress, self.config
        metrics = self.evaluate()
        summary = self.validation_summary(metrics)
        record = {
            "step": progress.global_step,
            "epoch": round(epoch_progress, 4),
            "train_loss": progress.interval_loss_sum / max(progress.interval_loss_steps, 1),
            "learning_rate": self.learning_rate(),
            "validation": {**summary, **self.validation_details(metrics)},
        }
        progress.history["evaluations"].append(record)
        progress.interval_loss_sum, progress.interval_loss_steps = 0.0, 0
        value = metrics[config.metric_for_best]
        if is_improvement(config.metric_for_best, value, progress.best_value, config.early_stopping_min_delta):
            progress.best_value, progress.best_step = value, progress.global_step
            progress.evaluations_without_improvement = 0
            if self.dist.is_main:
                checkpoint.save_best(self.best_uri, self.model, progress.global_step, config.metric_for_best, value)
        else:
            progress.evaluations_without_improvement += 1
            if config.early_stopping_patience and progress.evaluations_without_improvement >= config.early_stopping_patience:
                progress.stopped_early = True
        if self.dist.is_main:
            self.reporters.log(progress.global_step, {f"validation/{key}": float(value) for key, value in summary.items()})
            tqdm.write(f"step {progress.global_step}: validation {summary}" + ("  (early stop)" if progress.stopped_early else ""))
        self.dist.barrier()

    # ----- checkpoints -------------------------------------------------------------------
    def stop_for_a_retry(self) -> None:
        """SIGTERM: checkpoint the step reached (when there is somewhere to put it) and exit for a retry."""
        if self.checkpoint_uri:
            self.save_checkpoint()
            message = "SIGTERM: checkpointed step %d; exiting with status %d so that the task is retried"
        else:
            message = "SIGTERM at step %d without --checkpoint_uri: nothing saved, a retry starts over; exiting with status %d"
        if self.dist.is_main:
            log.warning(message, self.progress.global_step, SIGTERM_EXIT_CODE)
        self.dist.close()
        raise SystemExit(SIGTERM_EXIT_CODE)

    def save_checkpoint(self) -> None:
        self.settle_losses()
        started = time.perf_counter()
        if self.dist.is_main:
            trainer_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
            }
            state = {"identity": self.identity, "progress": asdict(self.progress)}
            checkpoint.save(self.checkpoint_uri, self.progress.global_step, self.model, trainer_state, state, self.config.keep_checkpoints)
        self.dist.barrier()
        self.seconds_not_training += time.perf_counter() - started

    def load_best_weights(self) -> dict[str, Any]:
        if self.progress.best_step is None:
            raise UserError("no validation ran, so there are no best weights; check --epochs, --max_steps and --eval_every_steps")
        return checkpoint.load_best(self.best_uri, self.model)

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
            "precision": self.precision_name(),
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


def count_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


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
