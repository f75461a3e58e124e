"""Temperature scaling: fitted right, measured right, refused when broken, and used by every reader."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from components.evaluate import evaluate
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import CALIBRATION_FILE, METRICS_FILE, PREDICTIONS_FILE, RELIABILITY_PICTURE
from components.lib.data.labels import read_labels
from components.lib.errors import UserError
from components.lib.modelling.calibration import expected_calibration_error, fit_temperature, read_temperature, softmax
from components.lib.modelling.families import load_model
from components.lib.modelling.inference import predict_logits, torch_text_classifier
from components.lib.storage.artifacts import commit, read_manifest
from tests.test_register import tweet_release  # noqa: F401 (a fixture)


def test_temperature_scaling_recovers_the_temperature_that_drew_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(20000, 3))
    true_temperature = 2.5
    probabilities = softmax(logits, true_temperature)
    labels = np.array([rng.choice(3, p=row) for row in probabilities])
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)
    assert (softmax(logits, 7.0).argmax(axis=1) == logits.argmax(axis=1)).all()  # the class never changes


def test_expected_calibration_error_is_the_row_weighted_gap_between_accuracy_and_confidence():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    labels = np.array([0, 1, 0, 1])
    # bins: 0.9 (1 row, right: gap 0.1), 0.6-0.667 (2 rows, one right: |0.5 - 0.625|), 0.8 (1 row, right: gap 0.2)
    assert expected_calibration_error(probabilities, labels) == pytest.approx((0.1 + 2 * 0.125 + 0.2) / 4)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "is not a calibration train wrote"),
        ('{"rows": 3}', "is not a calibration train wrote"),
        ('{"temperature": -1}', "must be a positive"),
    ],
)
def test_a_broken_calibration_file_is_refused_in_one_line(tmp_path, content, message):
    assert read_temperature(tmp_path, "model") == 1.0  # a model from before calibration: probabilities as they were
    (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(UserError, match=f"model: {CALIBRATION_FILE} .*{message}"):
        read_temperature(tmp_path, "model")


def test_train_fits_the_temperature_on_validation_and_export_carries_it(tweet_release):  # noqa: F811
    model_dir, export_dir = Path(tweet_release["model_uri"]), Path(tweet_release["export_uri"])
    calibration = json.loads((model_dir / CALIBRATION_FILE).read_text())
    validation = TokenizedSplit.load(Path(tweet_release["data_uri"]), "validation")
    assert calibration["fitted_on"] == "validation" and calibration["rows"] == len(validation) > 0
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert calibration["temperature"] == pytest.approx(
        fit_temperature(validation_logits(model_dir, validation), validation.labels), rel=1e-3
    )
    assert (export_dir / CALIBRATION_FILE).read_bytes() == (model_dir / CALIBRATION_FILE).read_bytes()


def validation_logits(model_dir: Path, split: TokenizedSplit) -> np.ndarray:
    return predict_logits(load_model(model_dir, "model"), split, 16, torch.device("cpu"), 0)


def test_evaluate_and_the_predictor_divide_the_logits_by_the_models_temperature(tweet_release, tmp_path):  # noqa: F811
    model = tmp_path / "model"
    shutil.copytree(tweet_release["model_uri"], model)
    (model / CALIBRATION_FILE).write_text(json.dumps({"temperature": 3.0}))
    commit(model, str(model), extra={"lineage": read_manifest(tweet_release["model_uri"])["lineage"]})
    evaluate(model_uri=str(model), data_uri=tweet_release["data_uri"], output_uri=str(tmp_path / "evaluation"))

    test = TokenizedSplit.load(Path(tweet_release["data_uri"]), "test")
    expected = softmax(validation_logits(model, test), 3.0)
    predictions = pq.read_table(tmp_path / "evaluation" / PREDICTIONS_FILE)
    columns = np.stack([predictions.column(f"prob_{name}").to_numpy() for name in read_labels(model)], axis=1)
    np.testing.assert_allclose(columns, expected, atol=1e-5)
    metrics = json.loads((tmp_path / "evaluation" / METRICS_FILE).read_text())["test"]["calibration"]
    assert metrics["temperature"] == 3.0 and metrics["rows"] == len(test)
    assert metrics["ece_after"] == pytest.approx(expected_calibration_error(expected, test.labels))
    assert (tmp_path / "evaluation" / RELIABILITY_PICTURE).stat().st_size > 0

    predictor = torch_text_classifier(model, read_manifest(str(model)), "model")
    texts = ["great relief", "awful nausea"]
    logits = predictor.logits(predictor.encode(texts), 2)
    np.testing.assert_allclose(predictor.probabilities(texts, 2), softmax(logits, 3.0), atol=1e-6)
