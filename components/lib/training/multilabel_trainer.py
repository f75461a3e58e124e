"""The training loop for multi-label classifiers: FineTuner's loop with one sigmoid per label and binary
cross-entropy, the batch's label-set ids turned into 0/1 targets (components/lib/data/label_sets.py).

A row's loss is the mean of its labels' binary cross-entropies, so the unit of the loss stays the row
and accumulation and DDP give the same update as one large batch. `--class_weights balanced` weighs each
label's positives by its negatives over its positives in the train split (BCEWithLogitsLoss's
pos_weight); the thresholds tuned on validation afterwards put the decisions back where F1 is best.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from components.lib.modelling.thresholds import mean_binary_cross_entropy
from components.lib.reporting.multilabel_metrics import DEFAULT_THRESHOLD, headline, multilabel_metrics
from components.lib.training.trainer import FineTuner, TunerInputs


class MultiLabelTuner(FineTuner):
    def __init__(self, inputs: TunerInputs, *, membership: np.ndarray) -> None:
        self.membership = membership  # (label sets x labels) 0/1; set before FineTuner asks for class weights
        super().__init__(inputs)
        self.targets_by_set = torch.from_numpy(membership).to(self.device)

    def class_weights(self) -> torch.Tensor | None:
        if self.config.class_weights != "balanced":
            return None
        positives = self.membership[self.train_split.labels].sum(axis=0)
        negatives = len(self.train_split) - positives
        weights = np.divide(negatives, positives, out=np.ones_like(positives), where=positives > 0)
        return torch.tensor(weights, dtype=torch.float32).to(self.device)

    def loss_sum(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = self.targets_by_set[batch["labels"]]
        losses = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), targets, pos_weight=self.loss_weights, reduction="none"
        )
        return losses.mean(dim=1).sum()

    def validation_probabilities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.validation_logits().astype(np.float64)))

    def validation_targets(self) -> np.ndarray:
        return self.membership[self.validation.labels]

    def evaluate(self) -> dict[str, Any]:
        logits = self.validation_logits()
        gold = self.validation_targets()
        thresholds = np.full(len(self.label_names), DEFAULT_THRESHOLD)
        metrics = multilabel_metrics(gold, 1.0 / (1.0 + np.exp(-logits.astype(np.float64))), thresholds, self.label_names)
        metrics["loss"] = mean_binary_cross_entropy(logits, gold)
        return metrics

    def validation_summary(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {**headline(metrics), "loss": round(metrics["loss"], 6)}

    def validation_details(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"per_label_f1": {name: round(entry["f1"], 4) for name, entry in metrics["per_label"].items()}}
