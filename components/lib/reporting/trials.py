"""A sweep's trials, read back from the model folders train wrote: each one's best validation score and
configuration, ranked best first, and written as a table (select_best, select_survivors)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from components.lib.data.contract import TRAIN_SUMMARY_FILE, TRAINING_ARGS_FILE
from components.lib.errors import UserError
from components.lib.reporting.metrics import HIGHER_IS_BETTER
from components.lib.storage.artifacts import staged_input


def ranked_trials(model_uris: list) -> tuple[str, list[dict]]:
    """(the metric, every trial best first), the trials numbered in the order given; one metric for all, or one line."""
    if not model_uris:
        raise UserError("--model_uris: the list of trials is empty")
    trials = [describe_trial(index, uri) for index, uri in enumerate(model_uris)]
    metrics = {trial["metric"] for trial in trials}
    if len(metrics) != 1:
        raise UserError(
            f"--model_uris: the trials were judged by different metrics ({', '.join(sorted(metrics))}); give them one --metric_for_best"
        )
    metric = metrics.pop()
    return metric, sorted(trials, key=lambda trial: trial["value"], reverse=HIGHER_IS_BETTER[metric])


def describe_trial(index: int, uri: str) -> dict:
    with staged_input(uri, only=[TRAIN_SUMMARY_FILE, TRAINING_ARGS_FILE]) as (folder, manifest):
        lineage = manifest.get("lineage", {})
        summary = json.loads((folder / TRAIN_SUMMARY_FILE).read_text())
        arguments = json.loads((folder / TRAINING_ARGS_FILE).read_text())
    return {
        "trial": index,
        "trial_id": lineage.get("trial", ""),
        "metric": summary["best"]["metric"],
        "value": summary["best"]["value"],
        "best_step": summary["best"]["step"],
        "epochs_completed": summary.get("epochs_completed"),
        "stopped_early": summary.get("stopped_early"),
        "model_uri": uri,
        "config": arguments,
    }


def write_csv(path: Path, ranked: list[dict]) -> None:
    keys = sorted({key for trial in ranked for key in trial["config"]})
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "trial", ranked[0]["metric"], "best_step", *keys])
        for rank, trial in enumerate(ranked, start=1):
            writer.writerow([rank, trial["trial"], trial["value"], trial["best_step"], *(trial["config"].get(key) for key in keys)])
