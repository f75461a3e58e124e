"""Successive halving's plan and its selection between rounds (the local run of a whole halving sweep is in
tests/test_local_run.py): the rounds a config gives, the configs refused, and select_survivors on model folders."""

import json

import pytest

from components.lib.errors import UserError
from components.lib.storage.artifacts import staged_output
from components.select_survivors import select_survivors
from pipelines.config import load_config
from pipelines.fan_out import resolved_parameters
from pipelines.sweep import Round, halving_rounds, sweep_rounds


def test_each_round_keeps_a_third_and_pauses_three_times_later_until_the_last_trains_to_the_end():
    assert halving_rounds(9, 3, 1, 9) == (Round(9, 1), Round(3, 3), Round(1, 0))
    assert halving_rounds(8, 2, 1, 8) == (Round(8, 1), Round(4, 2), Round(2, 4), Round(1, 0))
    # The next pause would reach --epochs: the survivors train to the end in that round.
    assert halving_rounds(6, 3, 1, 3) == (Round(6, 1), Round(2, 0))
    assert halving_rounds(2, 3, 1, 4) == (Round(2, 1), Round(1, 0))  # at least one trial goes on


def halving_config(tmp_path, overrides: list[str]):
    path = tmp_path / "config.yaml"
    path.write_text("parameters: {source_uri: data/sample/vader_tweets, epochs: 3, checkpoint_root: runs/checkpoints, registry_uri: runs/r, model_name: m}\n"
                    "sweep: {method: grid, strategy: halving, eta: 3, min_epochs: 1,"
                    " space: {learning_rate: [1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3]}}\n")  # fmt: skip
    return load_config(str(path), overrides)


def test_the_first_rounds_items_pause_where_the_plan_says(tmp_path):
    config = halving_config(tmp_path, [])
    assert sweep_rounds(config) == (Round(6, 1), Round(2, 0))
    items = resolved_parameters(config, "sweep")["sweep_configs"]
    assert [item["stop_after_epochs"] for item in items] == [1] * 6
    assert sweep_rounds(halving_config(tmp_path, ["sweep.strategy=all"])) == ()
    assert "stop_after_epochs" not in resolved_parameters(halving_config(tmp_path, ["sweep.strategy=all"]), "sweep")["sweep_configs"][0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sweep.strategy=hyperband", "sweep.strategy: 'hyperband' is not one of all, halving"),
        ("sweep.eta=1", "sweep.eta: must be at least 2"),
        ("sweep.min_epochs=3", "sweep.min_epochs: must be at least 1 and below epochs (3)"),
        ("sweep.space={epochs: [1, 2]}", "epochs cannot be swept with strategy halving"),
        ("checkpoint_root=", "sweep.strategy halving: trials resume from their checkpoints between rounds; set checkpoint_root"),
    ],
)
def test_a_halving_sweep_that_cannot_stop_trials_early_is_refused(override, message, tmp_path):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sweep_rounds(halving_config(tmp_path, [override]))


def paused_trial(root, trial_id: str, value: float) -> str:
    with staged_output(str(root / trial_id), extra={"lineage": {"trial": trial_id}}) as out:
        (out / "train_summary.json").write_text(
            json.dumps({"best": {"metric": "macro_f1", "value": value, "step": 10}, "epochs_completed": 1})
        )
        (out / "training_args.json").write_text(json.dumps({"learning_rate": value}))
    return str(root / trial_id)


def test_select_survivors_keeps_the_best_and_removes_only_the_stopped_trials_checkpoints(tmp_path):
    items = [{"trial": index, "trial_id": f"trial-{index}", "learning_rate": 0.1 * index, "stop_after_epochs": 1} for index in range(3)]
    uris = [paused_trial(tmp_path / "models", f"trial-{index}", value) for index, value in enumerate([0.5, 0.8, 0.2])]
    for index in range(3):
        (tmp_path / "checkpoints" / "run" / f"trial-{index}" / "step-00000010").mkdir(parents=True)
    result = select_survivors(trials=items, model_uris=uris[::-1], keep=1, stop_after_epochs=0, round=0, round_uri=str(tmp_path / "round"),
                              checkpoint_uri=str(tmp_path / "checkpoints"), run_id="run")  # fmt: skip
    assert result.parameters["survivors"] == [{**items[1], "stop_after_epochs": 0}]  # the item as given, pausing next at the end
    assert sorted(path.name for path in (tmp_path / "checkpoints" / "run").iterdir() if any(path.iterdir())) == ["trial-1"]
    record = json.loads((tmp_path / "round" / "round_results.json").read_text())
    assert record["kept"] == ["trial-1"] and record["stopped"] == ["trial-0", "trial-2"]


def test_select_survivors_refuses_models_of_other_trials_than_the_round_lists(tmp_path):
    items = [{"trial": 0, "trial_id": "trial-0"}, {"trial": 1, "trial_id": "trial-1"}]
    uris = [paused_trial(tmp_path, "trial-0", 0.5), paused_trial(tmp_path, "trial-7", 0.9)]
    with pytest.raises(
        UserError, match=r"--model_uris: the models are of trials \['trial-0', 'trial-7'\], --trials lists \['trial-0', 'trial-1'\]"
    ):
        select_survivors(trials=items, model_uris=uris, keep=1, stop_after_epochs=0, round=0, round_uri=str(tmp_path / "round"))
    assert not (tmp_path / "round").exists()
