"""DistributedDataParallel: 2 processes (gloo, CPU) match 1 process with the same global batch."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from components.lib.training import checkpoint
from tests.conftest import REPO, run_module
from tests.test_train import max_difference, weights

FLAGS = ["--epochs", "2", "--learning_rate", "3e-3", "--report_to", "none", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def single(prepared_data, tiny_model_without_dropout, tmp_path_factory) -> Path:
    """One process, batch 8: what the distributed runs must match."""
    out = tmp_path_factory.mktemp("single") / "model"
    result = run_module("components.train", *common_flags(prepared_data, tiny_model_without_dropout), "--output_uri", str(out),
                        "--batch_size", "8")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def common_flags(prepared_data, model) -> list[str]:
    return ["--data_uri", str(prepared_data[1]), "--base_model", str(model), *FLAGS]


def test_two_processes_match_one_process_with_the_same_global_batch(prepared_data, tiny_model_without_dropout, single, tmp_path):
    common = common_flags(prepared_data, tiny_model_without_dropout)
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
    assert max_difference(weights(tmp_path / "ddp"), weights(single)) < 1e-4
    # ... while a different global batch gives really different weights.
    other = run_module("components.train", *common, "--output_uri", str(tmp_path / "other"), "--batch_size", "4")
    assert other.returncode == 0, other.stderr[-2000:]
    assert max_difference(weights(tmp_path / "other"), weights(single)) > 1e-2
    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    single_history = json.loads((single / "training_history.json").read_text())
    ddp_history = json.loads((tmp_path / "ddp" / "training_history.json").read_text())
    assert [entry["step"] for entry in ddp_history["steps"]] == [entry["step"] for entry in single_history["steps"]]
    for ours, theirs in zip(ddp_history["steps"], single_history["steps"]):
        assert abs(ours["loss"] - theirs["loss"]) < 1e-5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_as_kubeflow_trainer_starts_them_match_one_process_with_the_same_global_batch(
    prepared_data, tiny_model_without_dropout, single, tmp_path
):
    """Two torchrun agents on loopback, each given only the PET_* variables Kubeflow Trainer's torch plugin sets
    (EnforceMLPolicy), one process each: train joins them into one job of two ranks (no --standalone) whose
    weights are those of one process with the same global batch."""
    common = common_flags(prepared_data, tiny_model_without_dropout)
    nodes = start_nodes([*common, "--batch_size", "4"], tmp_path)
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "training as one of 2 nodes (PET_NNODES=2), under torchrun" in outputs[0][1]
    assert json.loads((tmp_path / "node0" / "train_summary.json").read_text())["world_size"] == 2
    assert not (tmp_path / "node1").exists()  # rank 0 alone writes the model
    assert max_difference(weights(tmp_path / "node0"), weights(single)) < 1e-4


def start_nodes(flags: list[str], folder: Path) -> list[subprocess.Popen]:
    """Two torchrun agents on loopback, each with only the PET_* variables Kubeflow Trainer sets; node r writes to folder/node<r>."""
    trainer_variables = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_MASTER_ADDR": "127.0.0.1",
                         "PET_MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # fmt: skip
    return [
        subprocess.Popen(
            [sys.executable, "-m", "components.train", *flags, "--output_uri", str(folder / f"node{rank}")],
            cwd=REPO,
            env={**os.environ, **trainer_variables, "PET_NODE_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]


def test_a_killed_node_and_its_peer_restarted_resume_from_the_checkpoint_to_the_same_weights(prepared_data, tiny_model_without_dropout,
                                                                                            tmp_path):  # fmt: skip
    """A node's pod killed mid-run: its job's pods start again (the Job's restarts), and the two nodes resume
    from the checkpoint rank 0 wrote, ending where two nodes that were never interrupted end."""
    flags = [
        *common_flags(prepared_data, tiny_model_without_dropout),
        "--batch_size",
        "4",
        "--epochs",
        "40",
        "--checkpoint_every_steps",
        "5",
    ]
    uninterrupted = start_nodes([*flags, "--checkpoint_uri", str(tmp_path / "ckpt-whole")], tmp_path / "whole")
    assert [node.communicate(timeout=600) and node.returncode for node in uninterrupted] == [0, 0]
    command = [*flags, "--checkpoint_uri", str(tmp_path / "ckpt")]
    nodes = start_nodes(command, tmp_path / "cut")
    deadline = time.monotonic() + 300
    while not checkpoint.committed_steps(str(tmp_path / "ckpt")) and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped_at = checkpoint.committed_steps(str(tmp_path / "ckpt"))
    for node in nodes[::-1]:  # node 1's pod is lost (every process in it killed), then node 0's, restarted by its Job
        for process in [*psutil.Process(node.pid).children(recursive=True), psutil.Process(node.pid)]:
            process.kill()
        node.communicate(timeout=60)
    assert stopped_at and not (tmp_path / "cut" / "node0" / "MANIFEST.json").exists()  # killed before the model was committed
    restarted = start_nodes(command, tmp_path / "cut")
    outputs = [node.communicate(timeout=600) for node in restarted]
    assert [node.returncode for node in restarted] == [0, 0], outputs[0][1][-2000:]
    assert json.loads((tmp_path / "cut" / "node0" / "train_summary.json").read_text())["resumed_from_checkpoint"] is True
    assert max_difference(weights(tmp_path / "cut" / "node0"), weights(tmp_path / "whole" / "node0")) < 1e-6


def test_a_node_count_that_is_no_number_is_refused_in_one_line(prepared_data, tiny_model, tmp_path):
    result = run_module("components.train", "--data_uri", str(prepared_data[1]), "--base_model", str(tiny_model),
                        "--output_uri", str(tmp_path / "model"), env={"PET_NNODES": "two"})  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: PET_NNODES='two': not a node count")
    assert not (tmp_path / "model").exists()


def test_a_workers_user_error_under_torchrun_is_the_stages_own_line_and_exit_status(prepared_data, tmp_path):
    """torchrun reports a worker's exit 2 as its own exit 1 and a banner; train passes the worker's line on instead."""
    missing = tmp_path / "no-such-model"
    result = run_module("components.train", "--data_uri", str(prepared_data[1]), "--base_model", str(missing), "--output_uri",
                        str(tmp_path / "model"), "--processes", "2", *FLAGS, env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(missing) in last
    assert not (tmp_path / "model").exists()
