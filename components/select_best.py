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

import json

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import TUNING_RESULTS_FILE
from components.lib.reporting.trials import ranked_trials, write_csv
from components.lib.stage_outputs import BEST_TRIAL_OUTPUT, BEST_VALUE_OUTPUT, MODEL_ARTIFACT, MODEL_URI_OUTPUT, TUNING_ARTIFACT
from components.lib.storage.artifacts import staged_output


@takes_common_flags
def select_best(*, model_uris: list, tuning_uri: str, executor_input: str = "") -> StageResult:
    """Pick the trial with the best validation score; tabulate every trial.

    Args:
      model_uris: JSON list of model folders (local or s3://) written by train, one per trial.
      tuning_uri: Folder (local or s3://) for tuning_results.json and tuning_results.csv.
    """
    metric, ranked = ranked_trials(model_uris)
    best = ranked[0]
    with staged_output(tuning_uri) as out:
        (out / TUNING_RESULTS_FILE).write_text(
            json.dumps({"metric": metric, "best_trial": best["trial"], "trials": ranked}, indent=2) + "\n"
        )
        write_csv((out / TUNING_RESULTS_FILE).with_suffix(".csv"), ranked)
    return StageResult(
        summary={"stage": "select_best", "metric": metric, "best_trial": best["trial"], "best_value": best["value"], "trials": len(ranked)},
        artifact_metadata={TUNING_ARTIFACT: {"trials": len(ranked), "metric": metric, "best_trial": best["trial"]}},
        parameters={BEST_VALUE_OUTPUT: float(best["value"]), BEST_TRIAL_OUTPUT: int(best["trial"]), MODEL_URI_OUTPUT: best["model_uri"]},
        artifact_uris={MODEL_ARTIFACT: best["model_uri"]},
    )


if __name__ == "__main__":
    run_stage(select_best)
