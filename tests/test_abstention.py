"""Abstention: the threshold train chooses on validation, and evaluate, predict and the model server reading it."""

import json
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.evaluate import evaluate
from components.export import export
from components.lib.data.contract import CALIBRATION_FILE, CLASSIFICATION, METRICS_FILE, ONNX_FP32_FILE
from components.lib.errors import UserError
from components.lib.modelling.abstention import choose_min_confidence
from components.lib.modelling.onnx_runtime import onnx_text_classifier
from components.lib.storage.artifacts import read_manifest
from components.lib.tasks import task_named
from components.lib.training.settings import TrainConfig
from components.predict import predict
from components.register import register
from components.train import train
from tests.conftest import train_flags
from tests.test_serve import Server, request

MODEL = "abstaining"


def rows_with(confidences: list[float], correct: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities whose highest is each confidence, on class 0; gold 0 where correct."""
    probabilities = np.array([[value, 1 - value] for value in confidences])
    return probabilities, np.array([0 if right else 1 for right in correct])


def test_the_threshold_answers_the_most_rows_that_keep_the_target_accuracy_or_the_target_share():
    """Most confident first, right/wrong: 1 1 1 1 0 1 0 0 1 0. Accuracy of the first k: 1 1 1 1 .8 .833 .714 .625 .667
    .6; the most rows at >= 0.8 are the first six (0.833), so the threshold is the sixth confidence, 0.70."""
    probabilities, gold = rows_with([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.51], [1, 1, 1, 1, 0, 1, 0, 0, 1, 0])
    chosen = choose_min_confidence(probabilities, gold, accuracy=0.8, coverage=0.0)
    assert chosen["min_confidence"] == 0.7 and chosen["coverage"] == 0.6 and chosen["accuracy"] == pytest.approx(5 / 6)
    chosen = choose_min_confidence(probabilities, gold, accuracy=0.0, coverage=0.3)
    assert chosen["min_confidence"] == 0.85 and chosen["coverage"] == 0.3 and chosen["accuracy"] == 1.0
    unreachable = choose_min_confidence(probabilities, np.ones(10, dtype=int), accuracy=0.99, coverage=0.0)  # every row wrong
    assert unreachable["min_confidence"] == 0.95 and "note" in unreachable


@pytest.mark.parametrize("task", ["multi_label_classification", "causal_lm"])
def test_tasks_without_one_class_per_text_refuse_an_abstention_target(task):
    with pytest.raises(UserError, match="--abstain_at_accuracy: not available"):
        task_named(task).training_settings(TrainConfig(abstain_at_accuracy=0.9))


def test_two_targets_are_refused():
    with pytest.raises(UserError, match="give one target for abstention, not both"):
        task_named(CLASSIFICATION).training_settings(TrainConfig(abstain_at_accuracy=0.9, abstain_at_coverage=0.5))


@pytest.fixture(scope="module")
def abstaining(prepared_data, tiny_model, tmp_path_factory) -> dict:
    """A weak tiny model trained to answer half of the validation rows: its folders, registered."""
    root = tmp_path_factory.mktemp("abstaining")
    tokens = str(prepared_data[1])
    train(data_uri=tokens, output_uri=str(root / "model"), base_model=str(tiny_model), **train_flags(epochs=1, abstain_at_coverage=0.5))
    evaluate(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "evaluation"), report_path=str(root / "report.html"))
    export(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "onnx"), quantize_int8=False, latency_runs=1)
    register(export_uri=str(root / "onnx"), evaluation_uri=str(root / "evaluation"), model_uri=str(root / "model"), data_uri=tokens,
             registry_uri=str(root / "registry"), model_name=MODEL, output_uri=str(root / "decision"), require_beat_baseline=False)  # fmt: skip
    return {"root": root, "tokens": prepared_data[1]}


def test_train_chooses_the_threshold_on_validation_and_evaluate_and_the_card_report_it_on_test(abstaining):
    root = abstaining["root"]
    chosen = json.loads((root / "model" / CALIBRATION_FILE).read_text())["abstention"]
    assert chosen["target"] == "coverage 0.5" and chosen["coverage"] >= 0.5 and 0 < chosen["min_confidence"] < 1
    test = json.loads((root / "evaluation" / METRICS_FILE).read_text())["test"]
    assert test["abstention"]["min_confidence"] == chosen["min_confidence"] and 0 < test["abstention"]["coverage"] < 1
    assert [point["coverage"] for point in test["coverage_curve"]][-1] == 1.0 and test["coverage_curve"][-1]["accuracy"] == test["accuracy"]
    assert "abstains below confidence" in (root / "report.html").read_text() and (root / "evaluation" / "coverage.png").is_file()
    card = (root / "registry" / MODEL / "1" / "MODEL_CARD.md").read_text()
    assert f"The model abstains when its highest probability is below {chosen['min_confidence']:.4f}" in card


def test_predict_marks_the_rows_it_abstains_on_and_still_gives_their_probabilities(abstaining, tmp_path):
    root = abstaining["root"]
    predict(input_uri=str(abstaining["tokens"] / "test.parquet"), output_uri=str(tmp_path / "predictions"), model_uri=str(root / "onnx"))
    table = pq.read_table(tmp_path / "predictions" / "predictions.parquet").to_pydict()
    min_confidence = json.loads((root / "onnx" / CALIBRATION_FILE).read_text())["abstention"]["min_confidence"]
    assert table["abstained"] == [confidence < min_confidence for confidence in np.array(table["confidence"], dtype=np.float32)]
    assert any(table["abstained"]) and not all(table["abstained"])


def test_the_model_server_answers_abstained_in_v1_and_v2(abstaining):
    root = abstaining["root"]
    min_confidence = json.loads((root / "onnx" / CALIBRATION_FILE).read_text())["abstention"]["min_confidence"]
    texts = [f"text number {index} is fine or awful" for index in range(40)]
    command = lambda registry, port, *flags: [sys.executable, "-m", "components.serve", "--registry_uri", str(registry),  # noqa: E731
                                              "--model_name", MODEL, "--port", str(port), *flags]  # fmt: skip
    server = Server(root / "registry", command=command)
    try:
        status, v1 = server.post(f"/v1/models/{MODEL}:predict", {"instances": texts})
        assert status == 200
        assert [p["abstained"] for p in v1["predictions"]] == [max(p["probabilities"].values()) < min_confidence for p in v1["predictions"]]
        body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
        status, v2 = server.post(f"/v2/models/{MODEL}/infer", body)
        [abstained] = [output for output in v2["outputs"] if output["name"] == "abstained"]
        assert status == 200 and abstained["datatype"] == "BOOL" and abstained["data"] == [p["abstained"] for p in v1["predictions"]]
        status, metrics = request(f"{server.url}/metrics")  # what was served, to watch for drift; and the abstentions
        assert f'textclf_abstentions_total{{model_name="{MODEL}"}} {2.0 * sum(abstained["data"])}' in metrics
        assert f'textclf_text_tokens_count{{model_name="{MODEL}"}} {2.0 * len(texts)}' in metrics
        folder = root / "registry" / MODEL / "1"
        local = onnx_text_classifier(folder, read_manifest(str(folder)), MODEL, ONNX_FP32_FILE).encode(texts)
        unknown = int(np.count_nonzero(local.token_ids == local_unknown_id(folder)))
        assert f'textclf_unknown_tokens_total{{model_name="{MODEL}"}} {2.0 * unknown}' in metrics and unknown > 0
        assert f'textclf_tokens_total{{model_name="{MODEL}"}} {2.0 * local.lengths.sum()}' in metrics
    finally:
        server.stop()


def local_unknown_id(folder) -> int:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder).unk_token_id
