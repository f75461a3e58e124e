"""The task seam holds for a task the code base has never seen: ordinal sentiment, declared in this test
and registered with one line, goes through preprocess, tokenize, train, evaluate, export, register and
`registry show` with no edit in any stage. Its loss (cross-entropy plus the expected distance between
the predicted and the gold class) is the tuner's, not the loop's, and its gate reads test accuracy,
not classification's macro-F1. A stage that still compared the task's name, or took classification's
gate, loss or lineage for granted, fails here."""

import json
import subprocess
import sys

import pytest
import torch

from components.evaluate import evaluate
from components.export import export
from components.lib.data.contract import DECISION_FILE, TASK_KEY
from components.lib.errors import UserError
from components.lib.quality_gate import Gate
from components.lib.storage.artifacts import read_manifest
from components.lib.tasks import TASKS, task_named
from components.lib.tasks.classification import ClassificationTask
from components.lib.tasks.classification_training import classifier_setup
from components.lib.training.trainer import FineTuner
from components.preprocess import preprocess
from components.register import register
from components.tokenize import tokenize
from components.train import train
from tests.conftest import train_flags

LOSS_CALLS = []


class OrdinalTuner(FineTuner):
    """Cross-entropy plus the expected |predicted class - gold class|: the labels are ordered."""

    def loss_sum(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        LOSS_CALLS.append(len(logits))
        probabilities = logits.float().softmax(dim=-1)
        classes = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
        distance = (classes[None, :] - batch["labels"][:, None].float()).abs()
        return super().loss_sum(logits, batch) + (probabilities * distance).sum()


class OrdinalSentimentTask(ClassificationTask):
    name = "ordinal_sentiment"
    gate = Gate(metric="accuracy", label="accuracy", flag="gate_min", parameter="min_macro_f1", higher_is_better=True)

    def training_setup(self, request):
        return classifier_setup(request, tuner_class=OrdinalTuner)


def test_a_task_declared_here_goes_through_every_stage(sample_source, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, OrdinalSentimentTask.name, OrdinalSentimentTask())  # the one registration line
    root = tmp_path
    preprocess(input_uri=str(sample_source), output_uri=str(root / "data"), task="ordinal_sentiment")
    tokenize(data_uri=str(root / "data"), output_uri=str(root / "tokens"), base_model=str(tiny_model), max_length=32)
    tokens = str(root / "tokens")
    LOSS_CALLS.clear()
    train(data_uri=tokens, output_uri=str(root / "model"), base_model=str(tiny_model), **train_flags(epochs=3, learning_rate=5e-2))
    train_rows = json.loads((root / "tokens" / "stats.json").read_text())["splits"]["train"]["rows"]
    assert sum(LOSS_CALLS) == 3 * train_rows  # every training row of every epoch went through the task's own loss

    result = evaluate(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "evaluation"), gate_min=0.5)
    assert result.parameters["passes_gate"] == (result.parameters["accuracy"] >= 0.5)
    export(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "onnx"), quantize_int8=False, latency_runs=1)
    register(export_uri=str(root / "onnx"), evaluation_uri=str(root / "evaluation"), model_uri=str(root / "model"), data_uri=tokens,
             registry_uri=str(root / "registry"), model_name="ordinal", output_uri=str(root / "decision"),
             require_beat_baseline=False)  # fmt: skip
    decision = json.loads((root / "decision" / DECISION_FILE).read_text())
    assert decision["registered"] and decision["gate_metric"] == "accuracy"

    for folder in ("data", "tokens", "model", "evaluation", "onnx", "registry/ordinal/1"):
        assert read_manifest(str(root / folder))["lineage"][TASK_KEY] == "ordinal_sentiment", folder


def test_an_output_whose_lineage_names_an_unknown_task_is_refused_in_one_line(sample_source, tiny_model, tmp_path, monkeypatch):
    """A stage reads the task from its input's lineage: one it does not know (written where that task was
    registered, read where it is not) is refused in one line naming it, never taken for classification."""
    monkeypatch.setitem(TASKS, OrdinalSentimentTask.name, OrdinalSentimentTask())
    preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "data"), task="ordinal_sentiment")
    with pytest.raises(
        UserError,
        match=r"data: its lineage's task: must be one of sequence_classification, causal_lm, multi_label_classification; got 'ordinal_sentiment'$",
    ):
        monkeypatch.delitem(TASKS, OrdinalSentimentTask.name)
        tokenize(data_uri=str(tmp_path / "data"), output_uri=str(tmp_path / "tokens"), base_model=str(tiny_model), max_length=32)
    assert not (tmp_path / "tokens").exists()


def test_an_unknown_task_is_refused_in_one_line_naming_the_known_ones(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "components.preprocess", "--input_uri", str(tmp_path), "--output_uri", str(tmp_path / "out"),
         "--task", "regression"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: --task: must be one of sequence_classification, causal_lm, multi_label_classification; got 'regression'"
    )
    assert not (tmp_path / "out").exists()


def test_every_task_names_itself_and_a_gate_of_the_declared_flags():
    for name, task in TASKS.items():
        assert task_named(name) is task and task.name == name
        assert task.gate.flag in ("gate_min", "max_perplexity")  # evaluate's and register's threshold flags
