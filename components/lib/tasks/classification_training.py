"""train for classifiers: the model of the chosen family over the data's labels, the training split (with a
teacher's logits when distilling), the settings classification refuses, and the calibration fitted after."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import TOKENIZED_SCHEMA, read_split
from components.lib.data.labels import LABELS_FILE, read_labels
from components.lib.errors import UserError
from components.lib.modelling.abstention import ABSTENTION_KEY, choose_min_confidence
from components.lib.modelling.calibration import fit_calibration, softmax, write_calibration
from components.lib.modelling.classifier import ModelRequest
from components.lib.modelling.families import family
from components.lib.modelling.predictors import load_text_classifier
from components.lib.reporting.metrics import LANGUAGE_MODEL_METRICS
from components.lib.storage.artifacts import staged_input
from components.lib.tasks.base import TrainingRequest, TrainingSetup
from components.lib.training.settings import TrainConfig
from components.lib.training.trainer import FineTuner

log = logging.getLogger("components.train")
TEACHER_BATCH_SIZE = 64


def classifier_settings(config: TrainConfig) -> TrainConfig:
    """Refuse a language model's metrics as the metric for the best weights."""
    if config.metric_for_best in LANGUAGE_MODEL_METRICS[1:]:
        raise UserError(f"--metric_for_best {config.metric_for_best}: is for causal_lm data; this data is labelled for classification")
    if config.abstain_at_accuracy and config.abstain_at_coverage:
        raise UserError("--abstain_at_accuracy and --abstain_at_coverage: give one target for abstention, not both")
    return config


def classifier_setup(request: TrainingRequest, tuner_class: type[FineTuner] = FineTuner) -> TrainingSetup:
    """A new model of --model_type over the data's labels, trained by `tuner_class` on the train split."""
    config, data_dir = request.config, request.data_dir
    label_names = read_labels(data_dir)
    model_request = ModelRequest(request.base_model, request.base_model_source(), label_names, len(request.tokenizer),
                                 request.trust_remote_code, config.cnn_pretrained_embeddings)  # fmt: skip
    model = family(config.model_type).create(model_request)
    train_split = training_split(data_dir, config.teacher_uri, label_names)
    return TrainingSetup(model, label_names, tuner_class, train_split, TokenizedSplit.load(data_dir, "validation"))


def save_classifier_files(out: Path, data_dir: Path, summary: dict) -> None:
    write_calibration(out, summary["calibration"])
    shutil.copyfile(data_dir / LABELS_FILE, out / LABELS_FILE)


def calibrate(tuner: FineTuner) -> dict:
    """The temperature for calibrated probabilities, fitted on the validation split with the best weights;
    and the abstention threshold, when a target was given, chosen on the calibrated probabilities."""
    logits = tuner.validation_logits()
    calibration = fit_calibration(logits, tuner.validation.gold)
    if calibration["rows"]:
        log.info(
            "calibrated on %d validation rows: temperature %.3f, expected calibration error %.4f -> %.4f",
            calibration["rows"], calibration["temperature"], calibration["ece_before"], calibration["ece_after"],
        )  # fmt: skip
    if "note" in calibration:
        log.warning("calibration: %s", calibration["note"])
    config = tuner.config
    if (config.abstain_at_accuracy or config.abstain_at_coverage) and calibration["rows"]:
        probabilities = softmax(logits, calibration["temperature"])
        chosen = choose_min_confidence(probabilities, tuner.validation.gold, config.abstain_at_accuracy, config.abstain_at_coverage)
        calibration[ABSTENTION_KEY] = chosen
        log.info("abstention for %s: below confidence %.4f; on validation it answers %.1f%% of rows at accuracy %.4f",
                 chosen["target"], chosen["min_confidence"], 100 * chosen["coverage"], chosen["accuracy"])  # fmt: skip
        if "note" in chosen:
            log.warning("abstention: %s", chosen["note"])
    elif config.abstain_at_accuracy or config.abstain_at_coverage:
        log.warning("abstention: no validation rows to choose a threshold on; the model never abstains")
    return calibration


def training_split(data_dir: Path, teacher_uri: str, label_names: list[str]) -> TokenizedSplit:
    """The training split; with a teacher, its logits for every row, computed once here rather than once
    per epoch. The teacher reads the texts with its own tokenizer, so it need not share the student's."""
    split = TokenizedSplit.load(data_dir, "train")
    if not teacher_uri:
        return split
    started = time.perf_counter()
    with staged_input(teacher_uri) as (folder, manifest):
        teacher = load_text_classifier(folder, manifest, teacher_uri)
        if teacher.labels != label_names:
            raise UserError(f"--teacher_uri {teacher_uri}: the teacher's labels {teacher.labels} differ from the data's {label_names}")
        texts = read_split(data_dir, "train", TOKENIZED_SCHEMA, columns=["text"]).column("text").to_pylist()
        log.info("distillation: computing the teacher's logits for %d training rows, once (teacher: %s)", len(texts), teacher_uri)
        logits = teacher.logits(teacher.encode(texts), TEACHER_BATCH_SIZE)
    log.info("distillation: the teacher's logits took %.1f s", time.perf_counter() - started)
    return dataclasses.replace(split, teacher_logits=logits.astype(np.float32))
