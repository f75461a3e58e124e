"""DistributedDataParallel: 2 processes (gloo, CPU) match 1 process with the same global batch."""

import json

from tests.conftest import run_module
from tests.test_train import max_difference, weights

FLAGS = ["--epochs", "2", "--learning_rate", "3e-3", "--report_to", "none", "--logging_steps", "1"]


def test_two_processes_match_one_process_with_the_same_global_batch(prepared_data, tiny_model_without_dropout, tmp_path):
    common = ["--data_uri", str(prepared_data[1]), "--base_model", str(tiny_model_without_dropout), *FLAGS]
    single = run_module("components.train", *common, "--output_uri", str(tmp_path / "single"), "--batch_size", "8")
    assert single.returncode == 0, single.stderr[-2000:]
    # --processes 2 relaunches the same command under torchrun; each process takes 4 rows of every 8.
    double = run_module(
        "components.train",
        *common,
        "--output_uri",
        str(tmp_path / "ddp"),
        "--batch_size",
        "4",
        "--processes",
        "2",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert double.returncode == 0, double.stderr[-3000:]
    # Equal up to float summation order (all-reduce adds the two halves' gradients in another order;
    # Adam then magnifies differences on parameters whose gradients are near zero) ...
    assert max_difference(weights(tmp_path / "ddp"), weights(tmp_path / "single")) < 1e-4
    # ... while a different global batch gives really different weights.
    other = run_module("components.train", *common, "--output_uri", str(tmp_path / "other"), "--batch_size", "4")
    assert other.returncode == 0, other.stderr[-2000:]
    assert max_difference(weights(tmp_path / "other"), weights(tmp_path / "single")) > 1e-2
    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    single_history = json.loads((tmp_path / "single" / "training_history.json").read_text())
    ddp_history = json.loads((tmp_path / "ddp" / "training_history.json").read_text())
    assert [entry["step"] for entry in ddp_history["steps"]] == [entry["step"] for entry in single_history["steps"]]
    for ours, theirs in zip(ddp_history["steps"], single_history["steps"]):
        assert abs(ours["loss"] - theirs["loss"]) < 1e-5
