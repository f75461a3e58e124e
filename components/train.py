"""train: fine-tune a text classifier (a transformer by default, or a CNN) on the tokenized train split,
or, for `--task causal_lm` data, train a causal language model (a GPT-2 from scratch, or a pretrained one).
The task (read from the data's lineage; components/lib/tasks/) builds the model and names the loop.

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
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import BASE_MODEL, TRUST_REMOTE_CODE, takes_common_flags
from components.lib.data.contract import (
    HISTORY_FILE,
    LR_RANGE_TEST_FILE,
    LR_RANGE_TEST_PICTURE,
    TOKENIZER_DIR,
    TRAIN_SUMMARY_FILE,
    TRAINING_ARGS_FILE,
    other_splits,
    require_output_of,
)
from components.lib.errors import USER_ERROR_FILE_ENV, USER_ERROR_PREFIX, UserError
from components.lib.modelling.sources import load_tokenizer, local_model_source, pad_id
from components.lib.reporting.plots import lr_range_test_png
from components.lib.stage_outputs import BEST_VALIDATION_VALUE_OUTPUT, MODEL_ARTIFACT, MODEL_URI_OUTPUT
from components.lib.storage.artifacts import read_manifest, staged_input, staged_output
from components.lib.tasks import task_for
from components.lib.tasks.base import TrainingRequest
from components.lib.training import checkpoint
from components.lib.training.distributed import NODES_VARIABLE, NPROC_PER_NODE_VARIABLE, Distributed, node_count
from components.lib.training.lr_finder import RangeTest, lr_range_test
from components.lib.training.reporters import Reporters, parse_report_to
from components.lib.training.settings import TrainConfig, takes_settings
from components.lib.training.trainer import FineTuner, TunerInputs, sample_training_rows, seed_everything
from components.lib.training.trainjob_status import StatusServer, TrainJobStatus

log = logging.getLogger("components.train")


@takes_common_flags
def train(
    *,
    data_uri: str,
    output_uri: str,
    base_model: str = BASE_MODEL.default,
    checkpoint_uri: str = "",
    run_id: str = "",
    trial: str = "",
    keep_checkpoints_after_training: bool = False,
    report_to: str = "tensorboard",
    processes: int = 1,
    expected_gpus: str = "",
    trust_remote_code: bool = TRUST_REMOTE_CODE.default,
    executor_input: str = "",
    **settings,
) -> StageResult | None:
    """Train a classifier of the chosen family on the base model's token ids; keep the best weights.

    The training settings (model_type, epochs, learning_rate, ...) are declared once, in
    components/lib/training/settings.py; `takes_settings` (at the end of this file) makes them its flags.

    Args:
      data_uri: Folder (local or s3://) written by tokenize.
      output_uri: Folder (local or s3://) for the fine-tuned model.
      checkpoint_uri: Run-stable folder (local or s3://) for checkpoints; a restart with the same URI resumes. Empty: none.
      run_id: Sub-folder of checkpoint_uri for this run; Kubeflow passes its run id, so a retried task finds its checkpoints.
      trial: Sub-folder of run_id for one trial of a sweep; empty outside sweeps.
      keep_checkpoints_after_training: Keep the checkpoints once the model is committed; by default they are removed (used only to resume).
      report_to: Comma-separated reporters: tensorboard, mlflow, wandb, or none.
      processes: Training processes on this node, one per GPU, under torchrun (DDP); 0 = one per visible GPU; 1 = plain.
      expected_gpus: GPUs this task asked the cluster for; fewer visible ones stop the stage at once. Empty: no check.
    """
    config = TrainConfig(**settings)
    config.check()
    require_output_of("tokenize", data_uri, "--data_uri")
    task = task_for(read_manifest(data_uri), data_uri)
    config = task.training_settings(config)
    reporters_wanted = parse_report_to(report_to)
    check_visible_gpus(expected_gpus)
    if config.stop_after_epochs and not checkpoint_uri:
        raise UserError("--stop_after_epochs: a paused run resumes from its checkpoint; give --checkpoint_uri")
    relaunch_under_torchrun(processes)
    if checkpoint_uri:
        checkpoint_uri = storage.join(checkpoint_uri, *checkpoint.run_folders(run_id=run_id, trial=trial))
    distributed = Distributed.from_environment()
    with (
        staged_input(data_uri, skip=other_splits("train", "validation")) as (data_dir, data_manifest),
        local_model_source(base_model) if task.needs_base_model(config) else contextlib.nullcontext(None) as source,
        tempfile.TemporaryDirectory(prefix="train-") as scratch,
    ):
        tokenizer = load_tokenizer(str(data_dir / TOKENIZER_DIR), str(data_dir / TOKENIZER_DIR))
        seed_everything(config.seed)
        setup = task.training_setup(TrainingRequest(config, base_model, source, tokenizer, data_dir, trust_remote_code))
        model, label_names, train_split = setup.model, setup.label_names, setup.train_split
        flags_to_match = {**config.resume_relevant(), "world_size": distributed.world_size}
        identity = checkpoint.identity(model, label_names, base_model, flags_to_match)
        work = Path(scratch)
        status_server = StatusServer.from_environment() if distributed.is_main else None
        trainjob_status = TrainJobStatus(status_server) if status_server else None
        reporters = Reporters(reporters_wanted if distributed.is_main else [], work / "logs", asdict(config), trainjob_status)
        tuner = setup.tuner_class(
            TunerInputs(
                config=config,
                model=model,
                label_names=label_names,
                train=sample_training_rows(train_split, config.max_train_samples, config.seed),
                validation=setup.validation,
                pad_id=pad_id(tokenizer),
                work_dir=work,
                checkpoint_uri=checkpoint_uri,
                identity=identity,
                reporters=reporters,
                distributed=distributed,
            )
        )
        range_test = find_learning_rate(tuner, config.lr_finder_steps, config.learning_rate) if config.lr_finder_steps else None
        resumed = tuner.resume()
        summary = tuner.train()
        reporters.close()
        summary["resumed_from_checkpoint"] = resumed
        summary["paused"] = tuner.paused()
        summary["tracking"] = reporters.links
        summary["train_rows"] = {"used": len(tuner.train_split), "of": len(train_split)}  # fewer under --max_train_samples
        if not distributed.is_main:
            distributed.close()
            return None
        best = tuner.load_best_weights()
        task.after_training(tuner, summary)
        lineage = {
            **data_manifest.get("lineage", {}),
            "base_model": base_model,
            **task.model_lineage(config, model),
            **({"teacher": config.teacher_uri} if config.teacher_uri else {}),
            **({"trial": trial} if trial else {}),
            **({"run_id": run_id} if run_id else {}),
        }
        with staged_output(output_uri, extra={"lineage": lineage, "best": best.get("value"), "metric": config.metric_for_best}) as out:
            model.save(out)
            shutil.copytree(data_dir / TOKENIZER_DIR, out, dirs_exist_ok=True)
            task.save_model_files(out, data_dir, summary)
            (out / HISTORY_FILE).write_text(json.dumps(tuner.progress.history, indent=1) + "\n")
            (out / TRAIN_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            (out / TRAINING_ARGS_FILE).write_text(json.dumps({"base_model": base_model, **asdict(config)}, indent=2) + "\n")
            if range_test:
                (out / LR_RANGE_TEST_FILE).write_text(json.dumps(range_test.to_dict(), indent=1) + "\n")
                lr_range_test_png(range_test.learning_rates, range_test.losses, range_test.suggestion, out / LR_RANGE_TEST_PICTURE)
            if (work / "logs").is_dir():
                shutil.copytree(work / "logs", out / "logs")
    distributed.close()
    if checkpoint_uri and not keep_checkpoints_after_training and not summary["paused"]:
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
            MODEL_ARTIFACT: {
                "base_model": base_model,
                "model_type": lineage["model_type"],
                "best_validation": best_summary,
                "labels": label_names,
            }
        },
        parameters={BEST_VALIDATION_VALUE_OUTPUT: float(summary["best"]["value"]), MODEL_URI_OUTPUT: output_uri},
        artifact_uri_parameters={MODEL_URI_OUTPUT: MODEL_ARTIFACT},
    )


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
    """Re-run this same command under torchrun, unless already there: with one process per GPU of this
    node alone (`--standalone`), or as one node of several when PET_NNODES says so (module docstring of
    components/lib/training/distributed.py): torchrun then reads PET_NNODES, PET_NODE_RANK,
    PET_MASTER_ADDR and PET_MASTER_PORT itself, and PET_NPROC_PER_NODE unless --processes is given."""
    if processes < 0:
        raise UserError(f"--processes: must not be negative, got {processes}")
    if "WORLD_SIZE" in os.environ:
        return
    nodes = node_count()
    wanted = processes or max(torch.cuda.device_count(), 1)
    if nodes == 1 and wanted <= 1:
        return
    if nodes == 1:
        placement = ["--standalone", f"--nproc_per_node={wanted}"]
    else:
        per_node_from_trainer = not processes and NPROC_PER_NODE_VARIABLE in os.environ
        placement = [] if per_node_from_trainer else [f"--nproc_per_node={wanted}"]
        log.info("training as one of %d nodes (%s=%s), under torchrun", nodes, NODES_VARIABLE, os.environ[NODES_VARIABLE])
    command = [sys.executable, "-m", "torch.distributed.run", *placement, "-m", "components.train", *sys.argv[1:]]
    sys.exit(run_torchrun(command))


def run_torchrun(command: list[str]) -> int:
    """torchrun's exit status, or the workers' user error as this stage's own (torchrun turns a worker's
    exit 2 into 1): each worker leaves its error line in a file named by USER_ERROR_FILE_ENV. SIGTERM
    (preemption) is passed on, so that the workers checkpoint."""
    with tempfile.TemporaryDirectory(prefix="train-torchrun-") as folder:
        error_file = Path(folder) / "user-error"
        process = subprocess.Popen(command, env={**os.environ, USER_ERROR_FILE_ENV: str(error_file)})  # noqa: S603 - our own argv
        previous = signal.signal(signal.SIGTERM, lambda number, _: process.send_signal(number))
        try:
            status = process.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
        if status != 0 and error_file.is_file():
            raise UserError(error_file.read_text().splitlines()[0].removeprefix(USER_ERROR_PREFIX))
    return status if status >= 0 else 128 - status


takes_settings(train)

if __name__ == "__main__":
    run_stage(train)
