"""evaluate and export: test metrics beside the baseline, predictions, report; ONNX parity, INT8, latency."""

import json
import shutil

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support

from components.evaluate import evaluate
from components.export import export
from components.lib.errors import UserError
from components.lib.exporting import classifier as export_stage
from components.lib.modelling import huggingface
from components.lib.reporting import plots
from components.lib.reporting.metrics import classification_metrics, precision_recall_curve
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
    scores = np.round(rng.random(200), 1)  # ties too
    assert precision_recall_curve(gold == 1, scores)[2] == pytest.approx(average_precision_score(gold == 1, scores))
    assert precision_recall_curve(gold == 5, scores) is None
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


def test_predictions_hold_text_source_row_gold_prediction_and_probabilities(evaluation, prepared_data, sample_source):
    out, _ = evaluation
    predictions = pq.read_table(out / "evaluation" / "predictions.parquet").to_pylist()
    assert len(predictions) == 45
    row = predictions[0]
    assert {"text", "source_row", "gold", "predicted", "correct", "confidence", "prob_negative", "prob_neutral", "prob_positive"} == set(
        row
    )
    assert sum(row[f"prob_{label}"] for label in LABELS) == pytest.approx(1.0, abs=1e-5)
    assert row["correct"] == (row["gold"] == row["predicted"])
    # Every prediction leads back to its row in the source file (rows count from 1).
    source = pq.read_table(sample_source / "test.parquet").to_pylist()
    for prediction in predictions:
        file_name, _, position = prediction["source_row"].rpartition(":row ")
        assert file_name == "test.parquet" and source[int(position) - 1]["text"] == prediction["text"]
        assert source[int(position) - 1]["label"] == prediction["gold"]


def test_average_precision_per_class_agrees_with_scikit_learn(evaluation):
    out, _ = evaluation
    predictions = pq.read_table(out / "evaluation" / "predictions.parquet").to_pandas()
    per_class = json.loads((out / "evaluation" / "metrics.json").read_text())["test"]["per_class"]
    for label in LABELS:
        expected = average_precision_score(predictions["gold"] == label, predictions[f"prob_{label}"])
        assert per_class[label]["average_precision"] == pytest.approx(expected, abs=1e-9)


def test_the_report_shows_the_pictures_and_names_the_model_run_and_dates(evaluation, model, tiny_model):
    out, _ = evaluation
    report = (out / "report.html").read_text()
    assert report == (out / "evaluation" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 7 and "majority-class baseline" in report
    for picture in ("confusion_matrix", "precision_recall", "confidence", "reliability", "training_curves", "slices", "coverage"):
        assert (out / "evaluation" / f"{picture}.png").read_bytes()[:4] == b"\x89PNG"
        assert f'alt="{picture}"' in report
    trained = json.loads((model / "MANIFEST.json").read_text())["committed_at"].replace("T", " ").replace("Z", " UTC")
    assert f"base model: <b>{tiny_model}</b>" in report
    assert f"model: <b>{model}</b>" in report and f"trained: <b>{trained}</b>" in report and "evaluated: <b>20" in report
    assert "run: <b>not recorded (train ran without --run_id)</b>" in report
    predictions = pq.read_table(out / "evaluation" / "predictions.parquet").to_pylist()
    wrong = [row["source_row"] for row in predictions if not row["correct"]]
    assert any(f"<td>{source_row}</td>" in report for source_row in wrong) if wrong else "every test row was predicted right" in report


def drawn_figure(monkeypatch, draw_picture):
    """Draw one picture and return its figure, kept open for inspection."""
    figures = []
    monkeypatch.setattr(plots, "save", lambda figure, path: (figures.append(figure), path.write_bytes(b"\x89PNG")))
    draw_picture()
    [figure] = figures
    return figure


def test_a_run_with_one_logged_step_and_one_evaluation_draws_visible_points_on_sensible_axes(tmp_path, monkeypatch):
    """The issue's case: one validation point at step 500 showed alone on a 470-520 axis, and one training
    point had no marker, so it was invisible."""
    validation = {"loss": 0.9, "macro_f1": 0.5, "accuracy": 0.6, "per_class_f1": {"a": 0.5, "b": 0.5}}
    history = {"steps": [{"step": 500, "epoch": 1.0, "loss": 1.0, "learning_rate": 1e-5}],
               "evaluations": [{"step": 500, "epoch": 1.0, "learning_rate": 1e-5, "validation": validation}]}  # fmt: skip
    figure = drawn_figure(monkeypatch, lambda: plots.training_curves_png(history, tmp_path / "curves.png", "macro_f1"))
    loss_axes, score_axes, rate_axes, class_axes = figure.axes
    for axes in figure.axes:
        assert axes.get_xlim()[0] == 0 and axes.get_xlim()[1] > 500
        assert axes.lines and all(line.get_marker() not in (None, "None", "") for line in axes.lines if len(line.get_xdata()) == 1)
    assert loss_axes.get_ylim()[0] == 0 and loss_axes.get_ylim()[1] > 1.0
    assert rate_axes.get_ylim()[0] == 0 and rate_axes.get_ylim()[1] > 1e-5
    assert score_axes.get_ylim()[0] < 0 and score_axes.get_ylim()[1] > 1  # room for markers on 0 and 1
    assert [text.get_text() for text in class_axes.get_legend().get_texts()] == ["a", "b"]


def test_precision_recall_and_confidence_pictures_handle_an_absent_class_and_no_mistakes(tmp_path):
    gold = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    plots.precision_recall_png(gold, probabilities, LABELS, tmp_path / "pr.png")  # no "positive" row in the test split
    plots.confidence_histogram_png(probabilities.max(axis=1), np.ones(4, dtype=bool), 3, tmp_path / "confidence.png")
    assert (tmp_path / "pr.png").read_bytes()[:4] == (tmp_path / "confidence.png").read_bytes()[:4] == b"\x89PNG"


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
        # batch 1 only: the card's figure; timing batches of 32 whole reviews took a third of the stage
        assert set(entry["latency"]) == {"batch_1"} and entry["latency"]["batch_1"]["p50_ms"] > 0
    assert report["int8_kept"] is (report["int8_macro_f1_drop"] <= 0.02)
    assert "DynamicQuantizeLinear" in operators(out / "model.int8.onnx") and int8_weights(out / "model.int8.onnx")
    assert "DynamicQuantizeLinear" not in operators(out / "model.onnx") and not int8_weights(out / "model.onnx")


def operators(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def int8_weights(path) -> int:
    return sum(tensor.data_type == onnx.TensorProto.INT8 for tensor in onnx.load(str(path)).graph.initializer)


def test_only_an_unfused_graph_is_pre_processed_before_quantization_and_the_fused_one_without_the_reminder(
    model, prepared_data, tmp_path, caplog
):
    """The transformer optimizer has run onnxruntime's graph optimizations on a fused graph already: pre-processing
    would repeat them. An unfused graph has not had them, so it is pre-processed (which marks the model)."""
    int8 = {}
    for fuse in (True, False):
        out = tmp_path / f"fused-{fuse}"
        export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(out), latency_runs=1, torchscript=False,
               fuse_for_onnxruntime=fuse, int8_max_f1_drop=1.0)  # fmt: skip
        int8[fuse] = {entry.key: entry.value for entry in onnx.load(str(out / "model.int8.onnx")).metadata_props}
    assert "onnx.quant.pre_process" not in int8[True] and int8[False]["onnx.quant.pre_process"] == "onnxruntime.quant"
    assert "pre-processing" not in caplog.text


def test_int8_that_loses_too_much_is_dropped_and_says_so(model, prepared_data, tmp_path, caplog):
    export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "onnx"), latency_runs=2, int8_max_f1_drop=-1.0)
    report = json.loads((tmp_path / "onnx" / "export_report.json").read_text())
    assert report["int8_kept"] is False and not (tmp_path / "onnx" / "model.int8.onnx").exists()
    assert "dropping model.int8.onnx: its test macro-F1 is" in caplog.text and "more than --int8_max_f1_drop -1.0" in caplog.text


def test_the_fp32_model_runs_over_the_test_split_once_for_parity_and_scores(model, prepared_data, tmp_path, monkeypatch):
    """Each pass over the test split costs seconds per hundred rows of whole reviews: parity reuses the scoring pass."""
    passes = []
    real_session_logits = export_stage.session_logits

    def counted(session, split, batch_size, pad_id):
        passes.append(len(split))
        return real_session_logits(session, split, batch_size, pad_id)

    monkeypatch.setattr(export_stage, "session_logits", counted)
    export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "onnx"), latency_runs=1, quantize_int8=False)
    assert passes == [45]  # the whole test split, once
    report = json.loads((tmp_path / "onnx" / "export_report.json").read_text())
    assert report["parity"]["rows"] == 45 and report["parity"]["argmax_agreement"] == 1.0


def test_an_export_onnxruntime_cannot_fuse_ships_the_plain_graph_and_says_so(model, prepared_data, tmp_path, caplog, monkeypatch):
    class FusesNothing:
        def get_fused_operator_statistics(self):
            return {"Attention": 0}

    monkeypatch.setattr(huggingface, "optimize_for_onnxruntime", lambda source, config: FusesNothing())
    export(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "onnx"), latency_runs=1, quantize_int8=False)
    report = json.loads((tmp_path / "onnx" / "export_report.json").read_text())
    assert report["onnxruntime_fused_operators"] == {} and (tmp_path / "onnx" / "model.onnx").is_file()
    assert "fused nothing in this model; shipping the plain export" in caplog.text


def test_an_export_that_does_not_match_pytorch_is_refused(model, prepared_data, tmp_path, monkeypatch):
    """The exporter is made to write a graph whose classifier bias is off by 0.01: the logits then
    differ by 0.01 everywhere, ten times the default tolerance, so the parity check must refuse it."""
    real_export = export_stage.export_onnx

    def export_with_a_shifted_bias(model, test, pad_id, path, opset):
        real_export(model, test, pad_id, path, opset)
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


def test_evaluate_holds_gate_min_to_the_gate_metric_register_reads(prepared_data, tiny_model, tmp_path):
    """With --gate_metric, the DAG's condition (evaluate's passes_gate) must read the metric register's gate reads."""
    model = tmp_path / "model"  # trained too little to score every metric alike
    train(data_uri=str(prepared_data[1]), output_uri=str(model), base_model=str(tiny_model), **train_flags(epochs=1, batch_size=8))
    evaluate(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "evaluation"))
    test = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["test"]
    low, high = sorted(("accuracy", "macro_f1"), key=lambda name: test[name])
    assert test[low] < test[high]
    threshold = (test[low] + test[high]) / 2
    for metric, passes in ((high, True), (low, False), ("", test["macro_f1"] >= threshold)):
        result = evaluate(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / f"evaluation-{metric}"),
                          gate_metric=metric, gate_min=threshold)  # fmt: skip
        assert result.parameters["passes_gate"] is passes, metric


def test_evaluate_refuses_a_gate_metric_where_lower_is_better_before_scoring(model, prepared_data, tmp_path):
    result = run_module("components.evaluate", "--model_uri", str(model), "--data_uri", str(prepared_data[1]),
                        "--output_uri", str(tmp_path / "evaluation"), "--gate_metric", "loss")  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
        "--gate_metric: 'loss' is not one of accuracy, macro_f1, weighted_f1, macro_precision, macro_recall, next_token_accuracy, micro_f1, micro_precision, micro_recall, subset_accuracy"
    )
    assert not (tmp_path / "evaluation").exists()


def test_the_evaluation_scores_every_slice_of_the_test_split_in_metrics_report_card_and_kfp(evaluation, prepared_data):
    out, result = evaluation
    test = json.loads((out / "evaluation" / "metrics.json").read_text())["test"]
    lengths = pq.read_table(prepared_data[1] / "test.parquet", columns=["length"]).column("length").to_pylist()
    by_length = [entry for entry in test["slices"] if entry["slice"].startswith("tokens ")]
    assert sum(entry["rows"] for entry in by_length) == len(lengths) == 45
    assert all(entry["small"] == (entry["rows"] < 30) for entry in test["slices"])
    report = (out / "report.html").read_text()
    assert "<h2>Slices</h2>" in report and by_length[0]["slice"] in report and (out / "evaluation" / "slices.png").is_file()
    assert "<h2>Suspect labels</h2><p>preprocess's label audit suspects " in report  # carried from preprocess by tokenize
    assert result.artifact_metadata["metrics"][f"accuracy [{by_length[0]['slice']}]"] == round(by_length[0]["accuracy"], 4)
