"""Multi-label classification through the stages: label sets read from a delimited column, bad sets
quarantined and counted, one sigmoid per label trained with binary cross-entropy, thresholds tuned on
validation and carried with the model, scores beside the label-frequency baseline, ONNX parity on the
probabilities, the gate, predict and the model server's answers."""

import json
import random
import shutil
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss

from components.evaluate import evaluate
from components.export import export
from components.lib.data.contract import DECISION_FILE, METRICS_FILE, REJECTS_FILE, THRESHOLDS_FILE
from components.lib.data.label_sets import LabelSetMapper, label_names_of, membership
from components.lib.data.labels import read_labels
from components.lib.errors import UserError
from components.lib.modelling.onnx_runtime import onnx_text_classifier
from components.lib.reporting.multilabel_metrics import frequency_baseline, multilabel_metrics, tune_thresholds
from components.lib.storage.artifacts import MANIFEST, commit, read_manifest
from components.lib.storage.registry import Registry
from components.lib.tasks.multilabel_gate import baseline_refusal
from components.predict import predict
from components.preprocess import preprocess
from components.register import register
from components.tokenize import tokenize
from components.train import train
from tests.conftest import FILLER, WORDS, model_copy_with_summary, scored_with_and_without_native_bf16, train_flags, write_parquet
from tests.test_serve import Server

TASK = "multi_label_classification"
TAGS = list(WORDS)  # each set of words is one label; a text has one or two


def tagged_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        chosen = sorted(rng.sample(TAGS, rng.choice([1, 1, 2])))
        words = [rng.choice(WORDS[tag]) for tag in chosen for _ in range(2)] + [rng.choice(FILLER) for _ in range(3)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" n{index}", "tags": "|".join(reversed(chosen))})
    return rows


@pytest.fixture(scope="module")
def release(tiny_model, tmp_path_factory) -> dict:
    """The stages run once on 400 tagged texts: their output folders."""
    root = tmp_path_factory.mktemp("multilabel")
    source = write_parquet(root / "tags.parquet", tagged_rows(400, seed=3))
    preprocess(input_uri=str(source), output_uri=str(root / "data"), task=TASK, label_column="tags", label_names="auto")
    tokenize(data_uri=str(root / "data"), output_uri=str(root / "tokens"), base_model=str(tiny_model), max_length=32)
    train(data_uri=str(root / "tokens"), output_uri=str(root / "model"), base_model=str(tiny_model), **train_flags(epochs=3))
    evaluate(model_uri=str(root / "model"), data_uri=str(root / "tokens"), output_uri=str(root / "evaluation"))
    export(model_uri=str(root / "model"), data_uri=str(root / "tokens"), output_uri=str(root / "onnx"), latency_runs=1)
    register(export_uri=str(root / "onnx"), evaluation_uri=str(root / "evaluation"), model_uri=str(root / "model"),
             data_uri=str(root / "tokens"), registry_uri=str(root / "registry"), model_name="tags", output_uri=str(root / "decision"))  # fmt: skip
    return {"root": root}


def test_a_bf16_trained_multilabel_model_is_scored_in_bf16_on_a_cpu_with_native_bf16(release, tmp_path, cpu_flags):
    model = model_copy_with_summary(release["root"] / "model", tmp_path / "model", precision="bfloat16")
    scored = scored_with_and_without_native_bf16(model, release["root"] / "tokens", tmp_path, cpu_flags, "loss")
    assert set(scored) == {"bfloat16", "float32"}
    assert scored["bfloat16"] != scored["float32"]  # the autocast really ran
    assert scored["bfloat16"] == pytest.approx(scored["float32"], rel=0.05)


def test_label_sets_are_read_in_the_declared_order_ignoring_case_and_repeats():
    mapper = LabelSetMapper(["toxic", "insult", "threat"], "|")
    assert mapper.to_id(" Insult | toxic|insult") == mapper.to_id("toxic|INSULT") == 0
    assert mapper.names == ["toxic|insult"]
    assert mapper.to_id("toxic|spam") is None and "'spam' not in --label_names (toxic, insult, threat)" in mapper.unknown("toxic|spam")
    assert mapper.to_id(" | ") is None
    auto = LabelSetMapper(None, ";")
    assert auto.to_id("b; a") == auto.to_id("a;b") == 0 and auto.names == ["a|b"]
    assert label_names_of(["b|c", "a", "c"]) == ["a", "b", "c"]
    assert membership(["b|c", "a"], ["a", "b", "c"]).tolist() == [[0, 1, 1], [1, 0, 0]]


def test_unknown_and_empty_label_sets_are_quarantined_and_counted(tmp_path):
    rows = tagged_rows(120, seed=4) + [{"text": "awful great one", "tags": "negative|spam"}, {"text": "plain two", "tags": " | "}]
    source = write_parquet(tmp_path / "tags.parquet", rows)
    result = preprocess(input_uri=str(source), output_uri=str(tmp_path / "data"), task=TASK, label_column="tags",
                        label_names="negative,neutral,positive")  # fmt: skip
    assert result.summary["rows_rejected"] == 2 and result.summary["rows_kept"] == 120
    rejects = pq.read_table(tmp_path / "data" / REJECTS_FILE).to_pylist()
    assert sorted(row["reason"] for row in rejects) == ["empty_label_set", "unknown_label"]
    assert read_manifest(str(tmp_path / "data"))["lineage"]["task"] == TASK
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert set(stats["splits"]["test"]["label_counts"]) == set(TAGS)


def test_a_label_missing_from_a_split_is_refused_in_one_line_naming_it(tmp_path):
    rows = [{"text": f"awful {index}", "tags": "negative"} for index in range(60)] + [
        {"text": f"great {index}", "tags": "positive"} for index in range(60)
    ]
    rows.append({"text": "fine once", "tags": "neutral|negative"})  # one row: it can only be in train
    source = write_parquet(tmp_path / "tags.parquet", rows)
    with pytest.raises(
        UserError, match=r"the validation split has no rows with label 'neutral'; add some, or pass --allow_missing_classes$"
    ):
        preprocess(input_uri=str(source), output_uri=str(tmp_path / "data"), task=TASK, label_column="tags", label_names="auto")
    assert not (tmp_path / "data" / MANIFEST).exists()  # nothing committed
    preprocess(input_uri=str(source), output_uri=str(tmp_path / "kept"), task=TASK, label_column="tags", label_names="auto",
               allow_missing_classes=True)  # fmt: skip
    assert read_labels(tmp_path / "kept") == ["negative", "positive", "negative|neutral"]


def test_the_scores_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    gold = (rng.random((200, 4)) < 0.3).astype(np.float32)
    probabilities = np.clip(gold * 0.6 + rng.random((200, 4)) * 0.5, 0, 1)
    thresholds = np.array([0.5, 0.6, 0.4, 0.7])
    scores = multilabel_metrics(gold, probabilities, thresholds, ["a", "b", "c", "d"])
    predicted = (probabilities >= thresholds).astype(int)
    for average in ("micro", "macro", "weighted"):
        assert scores[f"{average}_f1"] == pytest.approx(f1_score(gold, predicted, average=average, zero_division=0))
    assert scores["subset_accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert scores["hamming_loss"] == pytest.approx(hamming_loss(gold, predicted))
    assert scores["per_label"]["b"]["f1"] == pytest.approx(f1_score(gold[:, 1], predicted[:, 1]))


def test_each_threshold_is_the_one_of_best_validation_f1_and_a_label_without_positives_keeps_the_default():
    gold = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], dtype=np.float32)
    probabilities = np.array([[0.9, 0.2], [0.3, 0.1], [0.35, 0.6], [0.1, 0.05]])
    thresholds, untuned = tune_thresholds(gold, probabilities)
    assert thresholds[0] == pytest.approx(0.3)  # 0.35 would lose the second positive: F1 0.8 at 0.3 against 0.67 at 0.9
    assert thresholds[1] == 0.5 and untuned == [1]


def test_the_label_frequency_baseline_answers_the_labels_that_give_the_best_training_micro_f1():
    assert frequency_baseline({"a": 90, "b": 60, "c": 5}, 100, ["a", "b", "c"]) == ["a", "b"]
    assert frequency_baseline({"a": 10, "b": 5}, 100, ["a", "b"]) == ["a"]  # a constant answer of one label beats none
    refusal = baseline_refusal(
        {"test": {"micro_f1": 0.7, "macro_f1": 0.4}, "baseline_label_frequency": {"micro_f1": 0.6, "macro_f1": 0.5, "predicts": "a"}}
    )
    assert refusal.startswith(
        "the model does not beat the label-frequency baseline (always 'a') on the test split: micro_f1 0.7000 against"
    )


def test_the_loss_is_each_rows_mean_binary_cross_entropy_with_positive_weights(release):
    from components.lib.training.multilabel_trainer import MultiLabelTuner

    tuner = MultiLabelTuner.__new__(MultiLabelTuner)
    tuner.targets_by_set = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tuner.loss_weights = torch.tensor([2.0, 1.0])
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
                                                                     pos_weight=torch.tensor([2.0, 1.0]), reduction="none")  # fmt: skip
    assert tuner.loss_sum(logits, {"labels": torch.tensor([0, 1])}).item() == pytest.approx(expected.mean(dim=1).sum().item())


def test_the_stages_train_score_export_and_register_a_multi_label_model(release):
    root = release["root"]
    metrics = json.loads((root / "evaluation" / METRICS_FILE).read_text())
    assert metrics["test"]["micro_f1"] > metrics["baseline_label_frequency"]["micro_f1"]
    assert set(metrics["test"]["per_label"]) == set(TAGS)
    report = json.loads((root / "onnx" / "export_report.json").read_text())
    assert report["parity"]["max_abs_probability_diff"] < 1e-3 and report["parity"]["decision_agreement"] == 1.0
    decision = json.loads((root / "decision" / DECISION_FILE).read_text())
    assert decision["registered"] and decision["gate_metric"] == "macro_f1"
    for folder in ("model", "onnx", "registry/tags/1"):
        assert json.loads((root / folder / THRESHOLDS_FILE).read_text())["by_label"].keys() == set(TAGS)
    assert "label-frequency baseline" in (root / "registry" / "tags" / "1" / "MODEL_CARD.md").read_text()


def test_predict_answers_every_label_at_or_above_its_threshold(release, tmp_path):
    root = release["root"]
    texts = write_parquet(tmp_path / "texts.parquet", [{"text": "awful terrible great excellent"}, {"text": "fine okay"}])
    predict(input_uri=str(texts), output_uri=str(tmp_path / "out"), model_uri=str(root / "registry" / "tags" / "1"))
    rows = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pylist()
    thresholds = json.loads((root / "onnx" / THRESHOLDS_FILE).read_text())["by_label"]
    for row in rows:
        expected = [tag for tag in sorted(TAGS) if row[f"prob_{tag}"] >= thresholds[tag]]
        assert row["predicted"] == "|".join(expected)
        assert sum(row[f"prob_{tag}"] for tag in TAGS) != pytest.approx(1.0)  # sigmoids, not a softmax


def test_the_model_server_answers_a_list_of_labels_with_each_labels_probability(release):
    root = release["root"]
    classifier = onnx_text_classifier(root / "onnx", read_manifest(str(root / "onnx")), "onnx", "model.onnx")
    texts = ["awful terrible great excellent", "fine okay"]
    expected = classifier.answers(classifier.probabilities(texts, 8))

    def command(registry, port, *flags):
        return [sys.executable, "-m", "components.serve", "--registry_uri", str(registry), "--model_name", "tags", "--port", str(port)]

    server = Server(root / "registry", command=command)
    try:
        status, answer = server.post("/v1/models/tags:predict", {"instances": texts})
        assert status == 200
        assert [prediction["labels"] for prediction in answer["predictions"]] == [value.split("|") if value else [] for value in expected]
        assert set(answer["predictions"][0]["probabilities"]) == set(TAGS)
        status, answer = server.post(
            "/v2/models/tags/infer", {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}]}
        )
        assert status == 200 and answer["outputs"][0]["data"] == expected
    finally:
        server.stop()


def test_kfold_compares_multi_label_fold_ensembles_by_a_majority_vote_per_label():
    import pyarrow as pa

    from components.lib.tasks import task_named

    def fold(predicted: list[str]) -> pa.Table:
        return pa.table({"gold": ["a|b", "b"], "predicted": predicted, "prob_a": [0.9, 0.1], "prob_b": [0.8, 0.7]})

    folds = [fold(["a|b", "(no label)"]), fold(["a", "b"]), fold(["a|b", "b"])]
    assert task_named(TASK).fold_ensemble(folds) == ["a|b", "b"]  # a: 3 of 3, b: 2 of 3; row 2: b 2 of 3
    assert task_named(TASK).fold_ensemble(folds[:2]) == ["a", "(no label)"]  # 1 of 2 is no majority


def test_one_column_per_label_is_multi_label_data_and_classification_says_so(tmp_path):
    source = write_parquet(tmp_path / "flags.parquet", [{"text": f"row {index}", "toxic": index % 2, "insult": 1} for index in range(40)])
    with pytest.raises(
        UserError, match=r"^--label_columns: one 0/1 column per label is multi-label data; pass --task multi_label_classification$"
    ):
        preprocess(input_uri=str(source), output_uri=str(tmp_path / "data"), label_columns="toxic,insult")
    assert not (tmp_path / "data").exists()
    preprocess(
        input_uri=str(source), output_uri=str(tmp_path / "kept"), task=TASK, label_columns="toxic,insult", allow_missing_classes=True
    )
    assert read_labels(tmp_path / "kept") == ["insult", "toxic|insult"]  # the sets, first seen first, in the columns' order


def test_the_bundled_foldoc_sample_is_what_the_data_readme_says():
    from tests.conftest import REPO

    table = pq.read_table(REPO / "data" / "sample" / "foldoc" / "foldoc.parquet").to_pydict()
    sets = [labels.split("|") for labels in table["labels"]]
    assert len(sets) == 7220 and len({name for labels in sets for name in labels}) == 28
    assert sum(len(labels) > 1 for labels in sets) == 1355
    assert sum(labels.count("language") for labels in sets) == 1148 and sum(labels.count("chat") for labels in sets) == 110
    text = (REPO / "data" / "sample" / "README.md").read_text()
    assert "7,220 rows" in text and "1,355 rows (18.8%)" in text and "language 1,148" in text


def test_register_compares_a_multi_label_candidate_with_production_at_each_ones_own_thresholds(release, tmp_path):
    root = release["root"]
    registry = tmp_path / "registry"
    shutil.copytree(root / "registry", registry)
    Registry(str(registry), "tags").move_alias("production", 1)
    inputs = {"evaluation_uri": str(root / "evaluation"), "model_uri": str(root / "model"), "data_uri": str(root / "tokens"),
              "registry_uri": str(registry), "model_name": "tags"}  # fmt: skip
    same = register(export_uri=str(root / "onnx"), output_uri=str(tmp_path / "same"), **inputs).summary
    assert same["registered"] and same["production_comparison"]["difference"] == 0.0 and same["production_comparison"]["p_value"] == 1.0
    silent = tmp_path / "silent"  # the same weights, with thresholds no probability reaches: it answers no label
    shutil.copytree(root / "onnx", silent)
    thresholds = json.loads((silent / THRESHOLDS_FILE).read_text())
    (silent / THRESHOLDS_FILE).write_text(json.dumps({**thresholds, "by_label": dict.fromkeys(thresholds["by_label"], 1.0)}))
    manifest = json.loads((silent / "MANIFEST.json").read_text())
    commit(silent, str(silent), extra={key: value for key, value in manifest.items() if key not in ("files", "committed_at")})
    refused = register(export_uri=str(silent), output_uri=str(tmp_path / "refused"), **inputs).summary
    assert refused["registered"] is False and "significantly" in refused["refused"]
    assert refused["production_comparison"]["candidate"] == 0.0 and refused["production_comparison"]["p_value"] < 0.05
