"""Preemption: a train task killed by SIGTERM or SIGKILL resumes from its checkpoints and ends with
exactly the weights and history of a run that was never interrupted (CPU: difference 0)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from components.lib.training import checkpoint
from tests.conftest import REPO, run_module
from tests.test_train import max_difference, weights

FLAGS = [
    "--epochs",
    "6",
    "--batch_size",
    "4",
    "--learning_rate",
    "3e-3",
    "--report_to",
    "none",
    "--logging_steps",
    "5",
    "--eval_every_steps",
    "15",
    "--keep_checkpoints_after_training",  # the refusal tests below resume from the uninterrupted run's checkpoints
    "true",
]


def train_command(tokens, model, out, checkpoints) -> list[str]:
    return ["--data_uri", str(tokens), "--output_uri", str(out), "--base_model", str(model), "--checkpoint_uri", str(checkpoints),
            "--checkpoint_every_steps", "10", *FLAGS]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(prepared_data, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    result = run_module("components.train", *train_command(prepared_data[1], tiny_model, root / "model", root / "checkpoints"))
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "model"


def wait_until(process: subprocess.Popen, reached, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be interrupted"
        if reached():
            return
        time.sleep(0.02)
    raise AssertionError("training did not get far enough in time")


def start_training(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "components.train", *command], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def assert_resumes_to_the_uninterrupted_run(command: list[str], out, uninterrupted) -> None:
    assert not (out / "MANIFEST.json").exists()
    resumed = run_module("components.train", *command)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "train_summary.json").read_text())["resumed_from_checkpoint"] is True
    assert max_difference(weights(out), weights(uninterrupted)) == 0.0
    history = json.loads((out / "training_history.json").read_text())
    assert history == json.loads((uninterrupted / "training_history.json").read_text())


def test_sigterm_checkpoints_the_step_it_stopped_at_and_resumes_to_identical_weights(uninterrupted, prepared_data, tiny_model, tmp_path):
    """No periodic checkpoints here, so the one checkpoint there is can only be the SIGTERM one."""
    checkpoints = tmp_path / "checkpoints"
    command = [*train_command(prepared_data[1], tiny_model, tmp_path / "model", checkpoints), "--checkpoint_every_steps", "0"]
    process = start_training(command)
    # best/ is written at the first validation (step 15): training is under way, with no checkpoint yet.
    wait_until(process, lambda: (checkpoints / checkpoint.BEST_DIR / "MANIFEST.json").exists())
    assert checkpoint.committed_steps(str(checkpoints)) == []
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]  # checkpointed at once, then exited for a retry
    stopped_at = int(re.search(r"SIGTERM: checkpointed step (\d+);", stderr).group(1))
    assert stopped_at >= 15 and checkpoint.committed_steps(str(checkpoints)) == [stopped_at]
    assert_resumes_to_the_uninterrupted_run(command, tmp_path / "model", uninterrupted)


def test_sigterm_without_a_checkpoint_uri_saves_nothing_and_writes_nowhere(prepared_data, tiny_model, tmp_path):
    """Run from tmp_path, so that a checkpoint written to a relative path would land there."""
    out, log = tmp_path / "model", tmp_path / "stdout.txt"
    command = ["--data_uri", str(prepared_data[1]), "--output_uri", str(out), "--base_model", str(tiny_model), *FLAGS]
    with log.open("w") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "components.train", *command], cwd=tmp_path, stdout=stdout,
                                   stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        wait_until(process, lambda: "validation" in log.read_text())
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert re.search(r"SIGTERM at step \d+ without --checkpoint_uri: nothing saved, a retry starts over", stderr)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["stdout.txt"]


def test_sigkill_resumes_from_the_last_periodic_checkpoint_to_identical_weights(uninterrupted, prepared_data, tiny_model, tmp_path):
    command = train_command(prepared_data[1], tiny_model, tmp_path / "model", tmp_path / "checkpoints")
    process = start_training(command)
    wait_until(process, lambda: checkpoint.committed_steps(str(tmp_path / "checkpoints"))[-1:] >= [60])
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert_resumes_to_the_uninterrupted_run(command, tmp_path / "model", uninterrupted)


def test_a_checkpoint_of_another_model_is_refused(uninterrupted, prepared_data, tiny_model_without_dropout, tmp_path):
    checkpoints = uninterrupted.parent / "checkpoints"
    command = train_command(prepared_data[1], tiny_model_without_dropout, tmp_path / "model", checkpoints)
    result = run_module("components.train", *command)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: {checkpoints}/step-") and "cannot resume from this checkpoint: it is of a different model" in line
    assert "Traceback" not in result.stderr


def test_a_checkpoint_with_other_labels_is_refused(uninterrupted, sample_source, tiny_model, tmp_path):
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "data"), label_names="positive,neutral,negative")
    tokenize(data_uri=str(tmp_path / "data"), output_uri=str(tmp_path / "tokens"), base_model=str(tiny_model), max_length=32)
    checkpoints = uninterrupted.parent / "checkpoints"
    result = run_module("components.train", *train_command(tmp_path / "tokens", tiny_model, tmp_path / "model", checkpoints))
    assert result.returncode == 2
    assert "its labels are ['negative', 'neutral', 'positive'], this run's are ['positive', 'neutral', 'negative']" in result.stderr


def test_a_checkpoint_made_with_other_training_flags_is_refused(uninterrupted, prepared_data, tiny_model, tmp_path):
    checkpoints = uninterrupted.parent / "checkpoints"
    command = [*train_command(prepared_data[1], tiny_model, tmp_path / "model", checkpoints), "--learning_rate", "1e-3"]
    result = run_module("components.train", *command)
    assert result.returncode == 2
    assert "it was made with other training flags (learning_rate 0.003 -> 0.001)" in result.stderr


def test_a_paused_round_keeps_its_checkpoint_and_the_next_round_resumes_to_identical_weights(
    uninterrupted, prepared_data, tiny_model, tmp_path
):
    """Successive halving's rounds: --stop_after_epochs pauses at an epoch's end with the schedule still spanning
    --epochs; the next round, with the same checkpoint folder, ends exactly where the uninterrupted run does."""
    checkpoints, out = tmp_path / "checkpoints", tmp_path / "model"
    command = [*train_command(prepared_data[1], tiny_model, out, checkpoints), "--keep_checkpoints_after_training", "false"]
    first = run_module("components.train", *command, "--stop_after_epochs", "3")
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["paused"] is True and summary["epochs_completed"] == 3
    assert checkpoint.committed_steps(str(checkpoints))[-1] == summary["global_steps"]  # kept for the next round
    shutil.rmtree(out)
    assert_resumes_to_the_uninterrupted_run(command, out, uninterrupted)
    assert checkpoint.committed_steps(str(checkpoints)) == []  # the last round removes them, as any finished run


def test_stop_after_epochs_without_a_checkpoint_uri_is_refused(prepared_data, tiny_model, tmp_path):
    command = ["--data_uri", str(prepared_data[1]), "--output_uri", str(tmp_path / "model"), "--base_model", str(tiny_model), *FLAGS]
    result = run_module("components.train", *command, "--stop_after_epochs", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: --stop_after_epochs: a paused run resumes from its checkpoint; give --checkpoint_uri"
    )
    assert not (tmp_path / "model").exists()
