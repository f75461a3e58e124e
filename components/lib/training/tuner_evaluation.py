"""FineTuner's evaluations: validation metrics (a task's tuner overrides `evaluate`, `validation_summary` and
`validation_details`), the history's record of each, the best weights by --metric_for_best, early stopping."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm import tqdm

from components.lib.modelling.inference import mean_cross_entropy, predict_logits
from components.lib.reporting.metrics import classification_metrics, headline, is_improvement
from components.lib.training import checkpoint
from components.lib.training.tuner_core import TunerCore


class EvaluationTracking(TunerCore):
    def validation_logits(self) -> np.ndarray:
        return predict_logits(self.model, self.validation, self.config.eval_batch_size, self.device, self.pad_id, self.autocast)

    def evaluate(self) -> dict[str, Any]:
        logits = self.validation_logits()
        metrics = classification_metrics(self.validation.gold, logits.argmax(axis=1), self.label_names)
        metrics["loss"] = mean_cross_entropy(logits, self.validation.gold)
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
