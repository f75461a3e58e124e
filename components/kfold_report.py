"""kfold_report: the scores of a K-fold cross-validation, per configuration, and whether the first two
configurations really differ.

    python -m components.kfold_report --evaluation_uris '["runs/x/lr-1e-4.fold0/evaluation", ...]' --report_uri runs/x/kfold

Each evaluation folder is evaluate's output for one (configuration, fold) model; train recorded which
in its lineage (`trial`: `<configuration>.fold<k>`). For every configuration: the held-out fold's
macro-F1 (the cross-validation estimate, taken at the best checkpoint, which that same fold chose, so
slightly optimistic) and the test split's, as mean and standard deviation over folds. Between the
first two configurations: a paired t-test over the folds' held-out scores, and McNemar's test on the
test split between their fold ensembles (the task's: the mean of the K models' probabilities for a
classifier, a majority vote per label for a multi-label model).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import KFOLD_PICTURE, KFOLD_RESULTS_FILE, METRICS_FILE, PREDICTIONS_FILE, TRAIN_SUMMARY_FILE
from components.lib.errors import UserError
from components.lib.reporting.plots import fold_scores_png
from components.lib.reporting.significance import mcnemar, paired_t_test, two_sided_bootstrap
from components.lib.stage_outputs import KFOLD_ARTIFACT
from components.lib.storage.artifacts import staged_input, staged_output
from components.lib.tasks import task_for

TRIAL_PATTERN = re.compile(r"^(?P<config>[A-Za-z0-9_-]+)\.fold(?P<fold>\d+)\Z")


@takes_common_flags
def kfold_report(*, evaluation_uris: list, report_uri: str, executor_input: str = "") -> StageResult:
    """Tabulate a K-fold run per configuration, and test the first two against each other.

    Args:
      evaluation_uris: JSON list of folders (local or s3://) written by evaluate, one per configuration and fold.
      report_uri: Folder (local or s3://) for kfold_results.json and kfold_scores.png.
    """
    if not evaluation_uris:
        raise UserError("--evaluation_uris: the list is empty")
    runs = [read_fold(uri) for uri in evaluation_uris]
    by_config: dict[str, list[dict]] = defaultdict(list)
    for run in sorted(runs, key=lambda run: (run["config"], run["fold"])):
        by_config[run["config"]].append(run)
    check_same_folds(by_config)
    configs = {name: summarize(folds) for name, folds in by_config.items()}
    results = {"configurations": configs, "comparison": compare(by_config) if len(by_config) >= 2 else None}
    with staged_output(report_uri) as out:
        (out / KFOLD_RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        fold_scores_png({name: [run["held_out_macro_f1"] for run in folds] for name, folds in by_config.items()}, out / KFOLD_PICTURE)
    headline = {
        name: f"{entry['held_out_macro_f1']['mean']:.4f} +- {entry['held_out_macro_f1']['std']:.4f}" for name, entry in configs.items()
    }
    summary = {"stage": "kfold_report", "held_out_macro_f1": headline, "report_uri": report_uri}
    if results["comparison"]:
        summary["p_values"] = {test["test"]: test["p_value"] for test in results["comparison"]["tests"]}
    return StageResult(summary=summary, artifact_metadata={KFOLD_ARTIFACT: {"configurations": len(configs)}})


def read_fold(uri: str) -> dict:
    with staged_input(uri, only=[METRICS_FILE, PREDICTIONS_FILE]) as (folder, manifest):
        trial = str(manifest.get("lineage", {}).get("trial", ""))
        match = TRIAL_PATTERN.match(trial)
        if not match:
            raise UserError(f"{uri}: its model was not trained as a fold of a K-fold run (trial {trial!r}, expected <config>.fold<k>)")
        metrics = json.loads((folder / METRICS_FILE).read_text())
        predictions = pq.read_table(folder / PREDICTIONS_FILE)
    with staged_input(metrics["model_uri"], only=[TRAIN_SUMMARY_FILE]) as (model_folder, _):
        best = json.loads((model_folder / TRAIN_SUMMARY_FILE).read_text())["best"]
    if best["metric"] != "macro_f1":
        raise UserError(f"{metrics['model_uri']}: trained with --metric_for_best {best['metric']}; a K-fold run compares macro_f1")
    return {
        "config": match["config"], "fold": int(match["fold"]), "evaluation_uri": uri, "held_out_macro_f1": float(best["value"]),
        "test_macro_f1": float(metrics["test"]["macro_f1"]), "predictions": predictions, "task": task_for(manifest, uri),
    }  # fmt: skip


def check_same_folds(by_config: dict[str, list[dict]]) -> None:
    folds = {name: [run["fold"] for run in runs] for name, runs in by_config.items()}
    first_name, first = next(iter(folds.items()))
    for name, seen in folds.items():
        if seen != first or len(set(seen)) != len(seen):
            raise UserError(
                f"--evaluation_uris: configuration {name} has folds {seen}, {first_name} has {first}; each needs every fold once"
            )


def summarize(runs: list[dict]) -> dict:
    def spread(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "folds": values}

    return {
        "held_out_macro_f1": spread([run["held_out_macro_f1"] for run in runs]),
        "test_macro_f1": spread([run["test_macro_f1"] for run in runs]),
    }


def compare(by_config: dict[str, list[dict]]) -> dict:
    (first_name, first), (second_name, second) = list(by_config.items())[:2]
    t_test = paired_t_test([run["held_out_macro_f1"] for run in first], [run["held_out_macro_f1"] for run in second])
    task = first[0]["task"]
    gold = np.array(first[0]["predictions"].column("gold").to_pylist(), dtype=str)

    def ensemble(runs: list[dict]) -> np.ndarray:
        return np.array(task.fold_ensemble([run["predictions"] for run in runs]), dtype=str)

    first_answers, second_answers = ensemble(first), ensemble(second)
    bootstrap = two_sided_bootstrap(accuracy_on(gold, first_answers), accuracy_on(gold, second_answers), len(gold))
    bootstrap["test"] = "paired bootstrap of test accuracy"
    return {"first": first_name, "second": second_name, "tests": [t_test, mcnemar(gold, first_answers, second_answers), bootstrap]}


def accuracy_on(gold: np.ndarray, answers: np.ndarray):
    return lambda rows: float(np.mean(gold[rows] == answers[rows]))


if __name__ == "__main__":
    run_stage(kfold_report)
