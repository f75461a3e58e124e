"""select_survivors: one round of successive halving, between two rounds of a sweep's training.

    python -m components.select_survivors --trials '[{"trial_id": "trial-0", ...}, ...]' \\
        --model_uris '["runs/s/r0-trial-0/model", ...]' --keep 2 --stop_after_epochs 4 --round 0 \\
        --round_uri runs/s/round-0 [--checkpoint_uri s3://ckpt --run_id RUN]

The round's trials trained until they paused (train --stop_after_epochs); each model folder names
its trial (its manifest's lineage). The best `keep` by validation score go on: the output parameter
`survivors` is their items, as the next round's ParallelFor takes them, each to pause next at
`--stop_after_epochs` (0: train to the end). The others stop here, and their checkpoints, which
only a next round would resume, are removed. `round_uri` gets round_results.json and .csv.
"""

from __future__ import annotations

import json

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import ROUND_RESULTS_FILE
from components.lib.errors import UserError
from components.lib.reporting.trials import ranked_trials, write_csv
from components.lib.stage_outputs import ROUND_ARTIFACT, SURVIVORS_OUTPUT
from components.lib.storage.artifacts import staged_output
from components.lib.training import checkpoint
from components.lib.training.settings import PAUSE_FLAG


@takes_common_flags
def select_survivors(
    *,
    trials: list,
    model_uris: list,
    keep: int,
    stop_after_epochs: int,
    round: int,  # noqa: A002 - the word a user reads
    round_uri: str,
    checkpoint_uri: str = "",
    run_id: str = "",
    executor_input: str = "",
) -> StageResult:
    """Keep the round's best trials by validation score for the next round; stop the rest.

    Args:
      trials: JSON list of this round's trial items (each with its trial_id), as the round's ParallelFor took them.
      model_uris: JSON list of the model folders (local or s3://) the round's train tasks wrote, one per trial.
      keep: How many trials go on to the next round (at least 1).
      stop_after_epochs: Where the next round pauses them (train --stop_after_epochs); 0: they train to the end.
      round: This round's number, from 0, for the record.
      round_uri: Folder (local or s3://) for round_results.json and round_results.csv.
      checkpoint_uri: The trials' checkpoint root; the stopped trials' checkpoints under <run_id>/<trial_id> are removed. Empty: none.
      run_id: Sub-folder of checkpoint_uri for this run, as train was given it.
    """
    if keep < 1:
        raise UserError(f"--keep: must be at least 1, got {keep}")
    items = {item_id(item): item for item in trials}
    metric, ranked = ranked_trials(model_uris)
    unknown = sorted({trial["trial_id"] for trial in ranked} - set(items))
    if unknown or len(ranked) != len(items):
        raise UserError(f"--model_uris: the models are of trials {sorted(t['trial_id'] for t in ranked)}, --trials lists {sorted(items)}")
    survivors, stopped = ranked[:keep], ranked[keep:]
    for trial in stopped:
        if checkpoint_uri:
            checkpoint.remove_all(storage.join(checkpoint_uri, *checkpoint.run_folders(run_id=run_id, trial=trial["trial_id"])))
    record = {"round": round, "metric": metric, "kept": [t["trial_id"] for t in survivors], "stopped": [t["trial_id"] for t in stopped],
              "next_stop_after_epochs": stop_after_epochs, "trials": ranked}  # fmt: skip
    with staged_output(round_uri) as out:
        (out / ROUND_RESULTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
        write_csv((out / ROUND_RESULTS_FILE).with_suffix(".csv"), ranked)
    scores = {"kept": {t["trial_id"]: t["value"] for t in survivors}, "stopped": {t["trial_id"]: t["value"] for t in stopped}}
    return StageResult(
        summary={"stage": "select_survivors", "round": round, "metric": metric, **scores},
        artifact_metadata={ROUND_ARTIFACT: {"round": round, "metric": metric, "kept": len(survivors), "stopped": len(stopped)}},
        parameters={SURVIVORS_OUTPUT: [{**items[t["trial_id"]], PAUSE_FLAG: stop_after_epochs} for t in survivors]},
    )


def item_id(item) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("trial_id"), str):
        raise UserError(f"--trials: each item must be an object with a trial_id, got {item!r}")
    return item["trial_id"]


if __name__ == "__main__":
    run_stage(select_survivors)
