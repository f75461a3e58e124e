"""train: fine-tune a text classifier (a transformer by default, or a CNN) on the tokenized train split,
or, for `--task causal_lm` data, train a causal language model (a GPT-2 from scratch, or a pretrained one).

    python -m components.train --data_uri runs/x/tokens --output_uri runs/x/model \\
        --base_model bundled://all-MiniLM-L6-v2

    # several GPUs on one node (DistributedDataParallel; the global batch is batch_size x N):
    torchrun --nproc_per_node 4 -m components.train --data_uri ... --output_uri ...

The device is chosen automatically: CUDA if present, else CPU. With `--checkpoint_uri` (a
run-stable local or s3:// prefix) it checkpoints every N steps and on SIGTERM, and a restart with
the same URI resumes exactly where it stopped. The output is a model folder (safetensors; a
Hugging Face folder for transformers) with the tokenizer, labels.json, model_type.json,
training_history.json and train_summary.json. See components/lib/training/trainer.py for the loop,
and components/lib/modelling/ for the model families.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import (
    CAUSAL_LM,
    HISTORY_FILE,
    LR_RANGE_TEST_FILE,
    LR_RANGE_TEST_PICTURE,
    TOKENIZED_SCHEMA,
    TOKENIZER_DIR,
    TRAIN_SUMMARY_FILE,
    TRAINING_ARGS_FILE,
    other_splits,
    read_split,
    require_output_of,
    task_of,
)
from components.lib.data.labels import LABELS_FILE, read_labels
from components.lib.errors import UserError
from components.lib.modelling.calibration import fit_calibration, write_calibration
from components.lib.modelling.classifier import ModelRequest
from components.lib.modelling.families import family
from components.lib.modelling.language_model import PRETRAINED, CausalLanguageModel
from components.lib.modelling.predictors import load_text_classifier
from components.lib.modelling.sources import load_tokenizer, local_model_source
from components.lib.reporting.metrics import LANGUAGE_MODEL_METRICS
from components.lib.reporting.plots import lr_range_test_png
from components.lib.storage.artifacts import read_manifest, staged_input, staged_output
from components.lib.training import checkpoint
from components.lib.training.distributed import Distributed
from components.lib.training.lm_trainer import LanguageModelTuner
from components.lib.training.lr_finder import RangeTest, lr_range_test
from components.lib.training.reporters import Reporters, parse_report_to
from components.lib.training.settings import TrainConfig, takes_settings
from components.lib.training.trainer import FineTuner, sample_training_rows, seed_everything

log = logging.getLogger("components.train")
TEACHER_BATCH_SIZE = 64
SEGMENT_PATTERN = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}\Z")


def train(
    *,
    data_uri: str,
    output_uri: str,
    base_model: str = "bundled://all-MiniLM-L6-v2",
    checkpoint_uri: str = "",
    run_id: str = "",
    trial: str = "",
    keep_checkpoints_after_training: bool = False,
    report_to: str = "tensorboard",
    processes: int = 1,
    expected_gpus: str = "",
    trust_remote_code: bool = False,
    executor_input: str = "",
    **settings,
) -> StageResult | None:
    """Train a classifier of the chosen family on the base model's token ids; keep the best weights.

    The training settings (model_type, epochs, learning_rate, ...) are declared once, in
    components/lib/training/settings.py; `takes_settings` (at the end of this file) makes them its flags.

    Args:
      data_uri: Folder (local or s3://) written by tokenize.
      output_uri: Folder (local or s3://) for the fine-tuned model.
      base_model: Hugging Face Hub id, local or s3:// folder, or bundled://all-MiniLM-L6-v2; as given to tokenize.
      checkpoint_uri: Run-stable folder (local or s3://) for checkpoints; a restart with the same URI resumes. Empty: none.
      run_id: Sub-folder of checkpoint_uri for this run; Kubeflow passes its run id, so a retried task finds its checkpoints.
      trial: Sub-folder of run_id for one trial of a sweep; empty outside sweeps.
      keep_checkpoints_after_training: Keep the checkpoints once the model is committed; by default they are removed (used only to resume).
      report_to: Comma-separated reporters: tensorboard, mlflow, wandb, or none.
      processes: Training processes on this node, one per GPU, under torchrun (DDP); 0 = one per visible GPU; 1 = plain.
      expected_gpus: GPUs this task asked the cluster for; fewer visible ones stop the stage at once. Empty: no check.
      trust_remote_code: Allow code shipped with a hub model to run. Off unless you trust its author.
      executor_input: Set by Kubeflow; leave empty when running by hand.
    """
    config = TrainConfig(**settings)
    config.check()
    require_output_of("tokenize", data_uri, "--data_uri")
    task = task_of(read_manifest(data_uri))
    config = settings_for_task(config, task)
    reporters_wanted = parse_report_to(report_to)
    check_visible_gpus(expected_gpus)
    relaunch_under_torchrun(processes)
    if checkpoint_uri:
        checkpoint_uri = storage.join(checkpoint_uri, *checkpoint_folders(run_id=run_id, trial=trial))
    distributed = Distributed.from_environment()
    needs_base_model = task != CAUSAL_LM or config.lm_size == PRETRAINED
    with (
        staged_input(data_uri, skip=other_splits("train", "validation")) as (data_dir, data_manifest),
        local_model_source(base_model) if needs_base_model else contextlib.nullcontext(None) as source,
        tempfile.TemporaryDirectory(prefix="train-") as scratch,
    ):
        tokenizer = load_tokenizer(str(data_dir / TOKENIZER_DIR), str(data_dir / TOKENIZER_DIR))
        seed_everything(config.seed)
        if task == CAUSAL_LM:
            label_names: list[str] = []
            model = language_model(config, base_model, source, tokenizer, trust_remote_code)
            tuner_class, train_split, validation = (
                LanguageModelTuner,
                TokenizedSplit.load_blocks(data_dir, "train"),
                TokenizedSplit.load_blocks(data_dir, "validation"),
            )
        else:
            label_names = read_labels(data_dir)
            request = ModelRequest(base_model, source, label_names, len(tokenizer), trust_remote_code, config.cnn_pretrained_embeddings)
            model = family(config.model_type).create(request)
            tuner_class, train_split, validation = (
                FineTuner,
                training_split(data_dir, config.teacher_uri, label_names),
                TokenizedSplit.load(data_dir, "validation"),
            )
        flags_to_match = {**config.resume_relevant(), "world_size": distributed.world_size}
        identity = checkpoint.identity(model, label_names, base_model, flags_to_match)
        work = Path(scratch)
        reporters = Reporters(reporters_wanted if distributed.is_main else [], work / "logs", asdict(config))
        tuner = tuner_class(
            config,
            model,
            label_names,
            sample_training_rows(train_split, config.max_train_samples, config.seed),
            validation,
            tokenizer.pad_token_id or 0,
            work,
            checkpoint_uri,
            identity,
            reporters,
            distributed,
        )
        range_test = find_learning_rate(tuner, config.lr_finder_steps, config.learning_rate) if config.lr_finder_steps else None
        resumed = tuner.resume()
        summary = tuner.train()
        reporters.close()
        summary["resumed_from_checkpoint"] = resumed
        summary["tracking"] = reporters.links
        summary["train_rows"] = {"used": len(tuner.train_split), "of": len(train_split)}  # fewer under --max_train_samples
        if not distributed.is_main:
            distributed.close()
            return None
        best = tuner.load_best_weights()
        if task != CAUSAL_LM:
            summary["calibration"] = calibrate(tuner)
        lineage = {
            **data_manifest.get("lineage", {}),
            "base_model": base_model,
            "model_type": model.model_type if task == CAUSAL_LM else config.model_type,
            **({"lm_size": config.lm_size} if task == CAUSAL_LM else {}),
            **({"teacher": config.teacher_uri} if config.teacher_uri else {}),
            **({"trial": trial} if trial else {}),
            **({"run_id": run_id} if run_id else {}),
        }
        with staged_output(output_uri, extra={"lineage": lineage, "best": best.get("value"), "metric": config.metric_for_best}) as out:
            model.save(out)
            shutil.copytree(data_dir / TOKENIZER_DIR, out, dirs_exist_ok=True)
            if task != CAUSAL_LM:
                write_calibration(out, summary["calibration"])
                shutil.copyfile(data_dir / LABELS_FILE, out / LABELS_FILE)
            (out / HISTORY_FILE).write_text(json.dumps(tuner.progress.history, indent=1) + "\n")
            (out / TRAIN_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            (out / TRAINING_ARGS_FILE).write_text(json.dumps({"base_model": base_model, **asdict(config)}, indent=2) + "\n")
            if range_test:
                (out / LR_RANGE_TEST_FILE).write_text(json.dumps(range_test.to_dict(), indent=1) + "\n")
                lr_range_test_png(range_test.learning_rates, range_test.losses, range_test.suggestion, out / LR_RANGE_TEST_PICTURE)
            if (work / "logs").is_dir():
                shutil.copytree(work / "logs", out / "logs")
    distributed.close()
    if checkpoint_uri and not keep_checkpoints_after_training:
        remove_checkpoints(checkpoint_uri)
    best_summary = {"metric": config.metric_for_best, "value": summary["best"]["value"], "step": summary["best"]["step"]}
    return StageResult(
        summary={
            "stage": "train",
            "output_uri": output_uri,
            "best": best_summary,
            "steps": summary["global_steps"],
            "samples_per_second": summary["training_samples_per_second"],
        },
        artifact_metadata={
            "model": {"base_model": base_model, "model_type": lineage["model_type"], "best_validation": best_summary, "labels": label_names}
        },
        parameters={"best_validation_value": float(summary["best"]["value"]), "model_uri": output_uri},
        artifact_uri_parameters={"model_uri": "model"},
    )


def settings_for_task(config: TrainConfig, task: str) -> TrainConfig:
    """Refuse settings the task has no use for; a causal LM takes perplexity for the default metric (and says so)."""
    if task != CAUSAL_LM:
        if config.metric_for_best in LANGUAGE_MODEL_METRICS[1:]:
            raise UserError(f"--metric_for_best {config.metric_for_best}: is for causal_lm data; this data is labelled for classification")
        return config
    for name, unusable in (("teacher_uri", config.teacher_uri), ("model_type", config.model_type != "transformer"),
                           ("label_smoothing", config.label_smoothing), ("curriculum", config.curriculum != "none")):  # fmt: skip
        if unusable:
            raise UserError(f"--{name}: not available for causal_lm data (a language model trained on fixed-size blocks)")
    if config.metric_for_best in LANGUAGE_MODEL_METRICS:
        return config
    if config.metric_for_best != TrainConfig.metric_for_best:
        raise UserError(f"--metric_for_best {config.metric_for_best}: causal_lm data has {', '.join(LANGUAGE_MODEL_METRICS)}")
    log.info("--metric_for_best: causal_lm data; the best weights are those of lowest validation perplexity")
    return dataclasses.replace(config, metric_for_best="perplexity")


def language_model(config: TrainConfig, base_model: str, source: str | None, tokenizer, trust_remote_code: bool) -> CausalLanguageModel:
    """A GPT-2 of --lm_size from scratch over the tokenizer's vocabulary, or --base_model's own causal LM."""
    if config.lm_size != PRETRAINED:
        block_size = tokenizer.model_max_length
        return CausalLanguageModel.from_scratch(config.lm_size, len(tokenizer), block_size, tokenizer.eos_token_id)
    model = CausalLanguageModel.pretrained(base_model, source, trust_remote_code)
    if model.vocab_size < len(tokenizer):
        raise UserError(
            f"--lm_size pretrained: {base_model} has {model.vocab_size} vocabulary entries, the tokenizer {len(tokenizer)};"
            " tokenize with --tokenizer base and the same --base_model"
        )
    return model


def calibrate(tuner: FineTuner) -> dict:
    """The temperature for calibrated probabilities, fitted on the validation split with the best weights."""
    calibration = fit_calibration(tuner.validation_logits(), tuner.validation.labels)
    if calibration["rows"]:
        log.info(
            "calibrated on %d validation rows: temperature %.3f, expected calibration error %.4f -> %.4f",
            calibration["rows"], calibration["temperature"], calibration["ece_before"], calibration["ece_after"],
        )  # fmt: skip
    if "note" in calibration:
        log.warning("calibration: %s", calibration["note"])
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


def find_learning_rate(tuner: FineTuner, steps: int, asked: float) -> RangeTest:
    range_test = lr_range_test(tuner, steps)
    log.warning("--lr_finder_steps %d: training at the range test's suggestion %.2e, not --learning_rate %s (lowest loss at %.2e; %s)",
                steps, range_test.suggestion, asked, range_test.lowest_loss_at, range_test.stopped_because)  # fmt: skip
    tuner.use_learning_rate(range_test.suggestion)
    return range_test


def remove_checkpoints(checkpoint_uri: str) -> None:
    """The model is committed, so the checkpoints (only for resuming) are dead weight: remove them."""
    folders, freed = checkpoint.remove_all(checkpoint_uri)
    if folders:
        log.info(
            "removed the checkpoints of this finished run from %s (%s), freeing %.1f MB; --keep_checkpoints_after_training keeps them",
            checkpoint_uri,
            ", ".join(folders),
            freed / 2**20,
        )


def checkpoint_folders(**names: str) -> list[str]:
    """The non-empty names, each refused unless it is one plain folder name (no '/', no '..')."""
    for flag, name in names.items():
        if name and not SEGMENT_PATTERN.match(name):
            raise UserError(f"--{flag} {name!r}: must be one folder name of letters, digits, '.', '_' or '-'")
    return [name for name in names.values() if name]


def check_visible_gpus(expected_gpus: str) -> None:
    """Stop before any work when the pod sees fewer GPUs than it asked for: training a GPU job on
    CPU for hours is worse than failing. (Text, not a number: on Kubeflow it is bound to the same
    STRING parameter as the pod's GPU limit.)"""
    if not expected_gpus:
        return
    if not expected_gpus.isdigit():
        raise UserError(f"--expected_gpus {expected_gpus!r}: must be a whole number")
    visible = torch.cuda.device_count()
    if visible < int(expected_gpus):
        raise UserError(
            f"--expected_gpus {expected_gpus}: this task sees {visible} GPU(s); the cluster did not apply the nvidia.com/gpu limit"
            " (gpu_count must be a string parameter on KFP >= 2.4) or the node has fewer GPUs"
        )


def relaunch_under_torchrun(processes: int) -> None:
    """Re-run this same command under torchrun with one process per GPU, unless already there."""
    if processes < 0:
        raise UserError(f"--processes: must not be negative, got {processes}")
    wanted = processes or max(torch.cuda.device_count(), 1)
    if wanted <= 1 or "WORLD_SIZE" in os.environ:
        return
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={wanted}",
        "-m",
        "components.train",
        *sys.argv[1:],
    ]
    os.execv(sys.executable, command)  # noqa: S606 - replaces this process with torchrun; argv is our own


takes_settings(train)

if __name__ == "__main__":
    run_stage(train)
