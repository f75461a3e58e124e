"""select_best: after a hyperparameter sweep, keep the trial with the best validation score.

    python -m components.select_best --model_uris '["runs/s/trial-0/model", "runs/s/trial-1/model"]' \\
        --tuning_uri runs/s/tuning

Each candidate is a model folder written by train; its train_summary.json holds its best
validation score (by its --metric_for_best) and training_args.json its configuration. The best
one's URI is the output parameter `model_uri`, and on Kubeflow the output Model `model` points at
that folder (the launcher records the URI; nothing is copied) for the sweep to release.
`tuning_uri` gets tuning_results.json and .csv with every configuration and its score, best first.
"""

from __future__ import annotations

import csv
import json

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import TRAIN_SUMMARY_FILE, TRAINING_ARGS_FILE, TUNING_RESULTS_FILE
from components.lib.errors import UserError
from components.lib.reporting.metrics import HIGHER_IS_BETTER
from components.lib.stage_outputs import BEST_TRIAL_OUTPUT, BEST_VALUE_OUTPUT, MODEL_ARTIFACT, MODEL_URI_OUTPUT, TUNING_ARTIFACT
from components.lib.storage.artifacts import read_manifest, staged_input, staged_output


@takes_common_flags
def select_best(*, model_uris: list, tuning_uri: str, executor_input: str = "") -> StageResult:
    """Pick the trial with the best validation score; tabulate every trial.

    Args:
      model_uris: JSON list of model folders (local or s3://) written by train, one per trial.
      tuning_uri: Folder (local or s3://) for tuning_results.json and tuning_results.csv.
    """
    if not model_uris:
        raise UserError("--model_uris: the list of trials is empty")
    trials = [describe_trial(index, uri) for index, uri in enumerate(model_uris)]
    metrics = {trial["metric"] for trial in trials}
    if len(metrics) != 1:
        raise UserError(
            f"--model_uris: the trials were judged by different metrics ({', '.join(sorted(metrics))}); give them one --metric_for_best"
        )
    metric = metrics.pop()
    ranked = sorted(trials, key=lambda trial: trial["value"], reverse=HIGHER_IS_BETTER[metric])
    best = ranked[0]
    read_manifest(best["model_uri"])  # committed, or one line; every later reader verifies its files
    with staged_output(tuning_uri) as out:
        (out / TUNING_RESULTS_FILE).write_text(
            json.dumps({"metric": metric, "best_trial": best["trial"], "trials": ranked}, indent=2) + "\n"
        )
        write_csv((out / TUNING_RESULTS_FILE).with_suffix(".csv"), ranked)
    return StageResult(
        summary={"stage": "select_best", "metric": metric, "best_trial": best["trial"], "best_value": best["value"], "trials": len(trials)},
        artifact_metadata={TUNING_ARTIFACT: {"trials": len(trials), "metric": metric, "best_trial": best["trial"]}},
        parameters={BEST_VALUE_OUTPUT: float(best["value"]), BEST_TRIAL_OUTPUT: int(best["trial"]), MODEL_URI_OUTPUT: best["model_uri"]},
        artifact_uris={MODEL_ARTIFACT: best["model_uri"]},
    )


def describe_trial(index: int, uri: str) -> dict:
    with staged_input(uri, only=[TRAIN_SUMMARY_FILE, TRAINING_ARGS_FILE]) as (folder, _):
        summary = json.loads((folder / TRAIN_SUMMARY_FILE).read_text())
        arguments = json.loads((folder / TRAINING_ARGS_FILE).read_text())
    return {
        "trial": index,
        "metric": summary["best"]["metric"],
        "value": summary["best"]["value"],
        "best_step": summary["best"]["step"],
        "stopped_early": summary.get("stopped_early"),
        "model_uri": uri,
        "config": arguments,
    }


def write_csv(path, ranked: list[dict]) -> None:
    keys = sorted({key for trial in ranked for key in trial["config"]})
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "trial", ranked[0]["metric"], "best_step", *keys])
        for rank, trial in enumerate(ranked, start=1):
            writer.writerow([rank, trial["trial"], trial["value"], trial["best_step"], *(trial["config"].get(key) for key in keys)])


if __name__ == "__main__":
    run_stage(select_best)
