"""train, evaluate and export fetch only the splits they read from the tokenized data on S3: on
Kubeflow they take it by URI, not as an artifact the launcher would download whole."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.evaluate import evaluate
from components.export import export
from components.lib.data.contract import METRICS_FILE, STATS_FILE
from components.lib.data.labels import read_labels
from components.lib.storage import artifacts
from components.train import train
from tests.conftest import train_flags, upload_folder


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    """The names of the files staged_input downloads, in order."""
    names: list[str] = []
    original = artifacts.download_verified

    def recording(uri, name, expected, destination):
        names.append(name)
        return original(uri, name, expected, destination)

    monkeypatch.setattr(artifacts, "download_verified", recording)
    return names


@pytest.fixture
def tokens_on_s3(s3, prepared_data) -> str:
    return upload_folder(s3, prepared_data[1], "bucket", "tokens")


def test_train_fetches_no_test_split(tokens_on_s3, tiny_model, tmp_path, fetched):
    train(data_uri=tokens_on_s3, output_uri=str(tmp_path / "model"), base_model=str(tiny_model), **train_flags(epochs=1))
    assert {"train.parquet", "validation.parquet"} <= set(fetched) and "test.parquet" not in fetched


@pytest.fixture(scope="module")
def model(prepared_data, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    train(data_uri=str(prepared_data[1]), output_uri=str(out), base_model=str(tiny_model), **train_flags(epochs=1))
    return out


def test_evaluate_and_export_fetch_the_test_split_only(tokens_on_s3, model, tmp_path, fetched):
    evaluate(model_uri=str(model), data_uri=tokens_on_s3, output_uri=str(tmp_path / "evaluation"))
    assert "test.parquet" in fetched and not {"train.parquet", "validation.parquet"} & set(fetched)
    fetched.clear()
    export(model_uri=str(model), data_uri=tokens_on_s3, output_uri=str(tmp_path / "onnx"), latency_runs=1, quantize_int8=False)
    assert "test.parquet" in fetched and not {"train.parquet", "validation.parquet"} & set(fetched)


def test_the_majority_baseline_comes_from_the_counts_tokenize_recorded(prepared_data, model, tmp_path):
    stats = json.loads((prepared_data[1] / STATS_FILE).read_text())
    counts = stats["splits"]["train"]["class_counts"]
    assert sum(counts.values()) == stats["splits"]["train"]["rows"]
    evaluate(model_uri=str(model), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "evaluation"))
    assert baseline_predicts(tmp_path / "evaluation") == max(counts, key=counts.get)


def baseline_predicts(evaluation) -> str:
    return json.loads((evaluation / METRICS_FILE).read_text())["baseline_majority_class"]["predicts"]


def test_data_tokenized_before_the_counts_reads_its_train_split(prepared_data, model, tmp_path):
    """A tokenized folder from before tokenize recorded class counts still gets its baseline."""
    from components.lib.storage.artifacts import build_manifest, manifest_text

    old = tmp_path / "old-tokens"
    shutil.copytree(prepared_data[1], old)
    stats = json.loads((old / STATS_FILE).read_text())
    for entry in stats["splits"].values():
        del entry["class_counts"]
    (old / STATS_FILE).write_text(json.dumps(stats))
    manifest = json.loads((old / "MANIFEST.json").read_text())
    rebuilt = build_manifest(old, {key: value for key, value in manifest.items() if key not in ("files", "committed_at")})
    (old / "MANIFEST.json").write_text(manifest_text(rebuilt))
    evaluate(model_uri=str(model), data_uri=str(old), output_uri=str(tmp_path / "evaluation"))
    labels = pq.read_table(old / "train.parquet", columns=["label"]).column("label").to_numpy()
    assert baseline_predicts(tmp_path / "evaluation") == read_labels(old)[int(np.bincount(labels).argmax())]
