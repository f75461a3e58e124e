"""train for multi-label classifiers: a model of the chosen family with one output per label, trained by
MultiLabelTuner on the label sets' 0/1 targets, then each label's threshold tuned on validation."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from components.lib.data.batching import TokenizedSplit
from components.lib.data.label_sets import label_names_of, membership
from components.lib.data.labels import read_labels, write_labels
from components.lib.errors import UserError
from components.lib.modelling.classifier import ModelRequest
from components.lib.modelling.families import family
from components.lib.modelling.thresholds import write_thresholds
from components.lib.reporting.multilabel_metrics import DEFAULT_THRESHOLD, tune_thresholds
from components.lib.tasks.base import TrainingRequest, TrainingSetup
from components.lib.training.multilabel_trainer import MultiLabelTuner
from components.lib.training.settings import TrainConfig

log = logging.getLogger("components.train")
METRICS = ("macro_f1", "micro_f1", "weighted_f1", "subset_accuracy", "hamming_loss", "loss")  # --metric_for_best's choices


def multilabel_settings(config: TrainConfig) -> TrainConfig:
    """Refuse what a set of independent yes/no decisions has no use for."""
    for name, unusable in (("teacher_uri", config.teacher_uri), ("label_smoothing", config.label_smoothing),
                           ("abstain_at_accuracy", config.abstain_at_accuracy),
                           ("abstain_at_coverage", config.abstain_at_coverage)):  # fmt: skip
        if unusable:
            raise UserError(f"--{name}: not available for multi-label data (one sigmoid and binary cross-entropy per label)")
    if config.metric_for_best not in METRICS:
        raise UserError(f"--metric_for_best {config.metric_for_best}: multi-label data has {', '.join(METRICS)}")
    return config


def multilabel_setup(request: TrainingRequest) -> TrainingSetup:
    config, data_dir = request.config, request.data_dir
    set_keys = read_labels(data_dir)
    label_names = label_names_of(set_keys)
    model_request = ModelRequest(request.base_model, request.base_model_source(), label_names, len(request.tokenizer),
                                 request.trust_remote_code, config.cnn_pretrained_embeddings)  # fmt: skip
    model = family(config.model_type).create(model_request)
    tuner = functools.partial(MultiLabelTuner, membership=membership(set_keys, label_names))
    return TrainingSetup(model, label_names, tuner, TokenizedSplit.load(data_dir, "train"), TokenizedSplit.load(data_dir, "validation"))


def tune_decision_thresholds(tuner: MultiLabelTuner, summary: dict) -> None:
    """Each label's threshold of highest validation F1, with the best weights."""
    thresholds, untuned = tune_thresholds(tuner.validation_targets(), tuner.validation_probabilities())
    notes = [f"label {tuner.label_names[index]!r} has no positive validation rows: threshold {DEFAULT_THRESHOLD}" for index in untuned]
    summary["thresholds"] = {"values": thresholds.tolist(), "notes": notes, "rows": len(tuner.validation)}
    shown = ", ".join(f"{name} {value:.3f}" for name, value in zip(tuner.label_names, thresholds))
    log.info("decision thresholds tuned on %d validation rows: %s", len(tuner.validation), shown)
    for note in notes:
        log.warning("thresholds: %s", note)


def save_multilabel_files(out: Path, data_dir: Path, summary: dict) -> None:
    label_names = label_names_of(read_labels(data_dir))
    write_labels(out, label_names)
    tuned = summary["thresholds"]
    write_thresholds(out, label_names, tuned["values"], tuned["notes"], tuned["rows"])
