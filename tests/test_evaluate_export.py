"""evaluate and export: test metrics beside the baseline, predictions, report; ONNX parity, INT8, latency."""

import json
import shutil

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from components import export as export_stage
from components.evaluate import evaluate
from components.export import export
from components.lib.errors import UserError
from components.lib.metrics import classification_metrics
from components.train import train
from tests.conftest import LABELS, run_module, train_flags


@pytest.fixture(scope="module")
def model(prepared_data, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    train(
        data_uri=str(prepared_data[1]),
        output_uri=str(out),
        base_model=str(tiny_model),
        **train_flags(epochs=5, batch_size=4, learning_rate=3e-3),
    )
    return out


@pytest.fixture(scope="module")
def evaluation(model, prepared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    result = evaluate(
        model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(out / "evaluation"), report_path=str(out / "report.html")
    )
    return out, result


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    ours = classification_metrics(gold, predicted, LABELS)
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(gold, predicted, average=average, zero_division=0)
        assert ours[f"{average}_precision"] == pytest.approx(precision) and ours[f"{average}_recall"] == pytest.approx(recall)
        assert ours[f"{average}_f1"] == pytest.approx(f1)
    assert ours["confusion_matrix"]["rows_gold_columns_predicted"] == confusion_matrix(gold, predicted).tolist()
    missing = classification_metrics(np.array([0, 0, 1]), np.array([0, 0, 0]), LABELS)
    assert missing["per_class"]["neutral"]["recall"] == 0.0 and missing["per_class"]["positive"]["support"] == 0


def test_evaluation_reports_everything_beside_the_majority_baseline(evaluation, prepared_data):
    out, result = evaluation
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    test = metrics["test"]
    assert {
        "loss",
        "accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
    } <= set(test)
    assert set(test["per_class"]) == set(LABELS) and sum(entry["support"] for entry in test["per_class"].values()) == test["rows"] == 45
    assert np.array(test["confusion_matrix"]["rows_gold_columns_predicted"]).sum() == 45
    assert metrics["baseline_majority_class"]["macro_f1"] == pytest.approx(1 / 6)  # balanced classes: one of three, F1 0.5
    assert test["macro_f1"] > metrics["baseline_majority_class"]["macro_f1"]
    assert result.parameters["macro_f1"] == test["macro_f1"]
    matrix = result.artifact_metadata["confusion_matrix"]["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == LABELS and len(matrix["rows"]) == 3


def test_predictions_hold_text_gold_prediction_and_probabilities(evaluation):
    out, _ = evaluation
    predictions = pq.read_table(out / "evaluation" / "predictions.parquet").to_pylist()
    assert len(predictions) == 45
    row = predictions[0]
    assert {"text", "gold", "predicted", "correct", "confidence", "prob_negative", "prob_neutral", "prob_positive"} == set(row)
    assert sum(row[f"prob_{label}"] for label in LABELS) == pytest.approx(1.0, abs=1e-5)
    assert row["correct"] == (row["gold"] == row["predicted"])


def test_the_report_shows_the_pictures(evaluation):
    out, _ = evaluation
    report = (out / "report.html").read_text()
    assert report == (out / "evaluation" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2 and "majority-class baseline" in report
    assert (out / "evaluation" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def exported(model, prepared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "onnx"
    result = export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(out), latency_runs=5)
    return out, result


def test_onnx_has_dynamic_axes_and_matches_pytorch(exported):
    out, result = exported
    report = json.loads((out / "export_report.json").read_text())
    assert report["parity"]["max_abs_logit_diff"] < 1e-4 and report["parity"]["argmax_agreement"] == 1.0
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    for batch, length in ((1, 5), (7, 23)):
        ids = np.ones((batch, length), dtype=np.int64)
        assert session.run(["logits"], {"input_ids": ids, "attention_mask": ids})[0].shape == (batch, 3)
    assert {"tokenizer.json", "labels.json", "config.json", "model.onnx", "model.int8.onnx"} <= {path.name for path in out.iterdir()}


def test_int8_is_scored_and_timed_beside_fp32(exported):
    out, _ = exported
    report = json.loads((out / "export_report.json").read_text())
    for variant in ("fp32", "int8"):
        entry = report["models"][variant]
        assert {"accuracy", "macro_f1"} <= set(entry["test"])
        assert entry["latency"]["batch_1"]["p50_ms"] > 0 and entry["latency"]["batch_32"]["p50_ms"] > 0
    assert report["int8_kept"] is (report["int8_macro_f1_drop"] <= 0.02)
    assert "DynamicQuantizeLinear" in operators(out / "model.int8.onnx") and int8_weights(out / "model.int8.onnx")
    assert "DynamicQuantizeLinear" not in operators(out / "model.onnx") and not int8_weights(out / "model.onnx")


def operators(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def int8_weights(path) -> int:
    return sum(tensor.data_type == onnx.TensorProto.INT8 for tensor in onnx.load(str(path)).graph.initializer)


def test_int8_that_loses_too_much_is_dropped_and_says_so(model, prepared_data, tmp_path, caplog):
    export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "onnx"), latency_runs=2, int8_max_f1_drop=-1.0)
    report = json.loads((tmp_path / "onnx" / "export_report.json").read_text())
    assert report["int8_kept"] is False and not (tmp_path / "onnx" / "model.int8.onnx").exists()
    assert "dropping model.int8.onnx: its test macro-F1 is" in caplog.text and "more than --int8_max_f1_drop -1.0" in caplog.text


def test_an_export_onnxruntime_cannot_fuse_ships_the_plain_graph_and_says_so(model, prepared_data, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(export_stage, "fuse_transformer_operators", lambda source, target, config: {})
    export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "onnx"), latency_runs=1, quantize_int8=False)
    report = json.loads((tmp_path / "onnx" / "export_report.json").read_text())
    assert report["onnxruntime_fused_operators"] == {} and (tmp_path / "onnx" / "model.onnx").is_file()
    assert "fused nothing in this model; shipping the plain export" in caplog.text


def test_an_export_that_does_not_match_pytorch_is_refused(model, prepared_data, tmp_path, monkeypatch):
    """The exporter is made to write a graph whose classifier bias is off by 0.01: the logits then
    differ by 0.01 everywhere, ten times the default tolerance, so the parity check must refuse it."""
    real_export = export_stage.export_onnx

    def export_with_a_shifted_bias(model, test, pad_id, path):
        real_export(model, test, pad_id, path)
        graph = onnx.load(str(path))
        [bias] = [tensor for tensor in graph.graph.initializer if tensor.name.endswith("classifier.bias")]
        shifted = onnx.numpy_helper.to_array(bias) + np.array([0.01, 0.0, 0.0], dtype=np.float32)
        bias.CopyFrom(onnx.numpy_helper.from_array(shifted, bias.name))
        onnx.save(graph, str(path))

    monkeypatch.setattr(export_stage, "export_onnx", export_with_a_shifted_bias)
    with pytest.raises(UserError, match=r"ONNX parity check failed on 45 test rows: largest logit difference 1\.0\de-02 \(allowed 1e-03\)"):
        export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "onnx"), quantize_int8=False, latency_runs=1)
    assert not (tmp_path / "onnx" / "MANIFEST.json").exists()


def test_a_truncated_model_folder_is_one_line(model, prepared_data, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = run_module(
        "components.evaluate", "--model_uri", str(broken), "--data_uri", str(prepared_data[1]), "--output_uri", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {broken}: model.safetensors is corrupt (size or sha256 differs from MANIFEST.json); run the stage that writes it again"
    )


def test_a_corrupt_model_folder_without_a_manifest_is_one_line(model, prepared_data, tmp_path):
    """A base model folder (no manifest: it comes from outside the pipeline) whose weights are cut short."""
    broken = tmp_path / "base"
    shutil.copytree(model, broken)
    (broken / "MANIFEST.json").unlink()
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = run_module(
        "components.train", "--data_uri", str(prepared_data[1]), "--output_uri", str(tmp_path / "out"), "--base_model", str(broken)
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {broken}: cannot load the model from this folder (") and line.endswith(
        "the folder is incomplete or corrupt"
    )
