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


def rewritten_stats(source, folder, change) -> None:
    """A copy of the tokenized folder `source` at `folder` whose stats.json `change` edits, recommitted."""
    from components.lib.storage.artifacts import build_manifest, manifest_text

    shutil.copytree(source, folder)
    stats = json.loads((folder / STATS_FILE).read_text())
    change(stats)
    (folder / STATS_FILE).write_text(json.dumps(stats))
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    rebuilt = build_manifest(folder, {key: value for key, value in manifest.items() if key not in ("files", "committed_at")})
    (folder / "MANIFEST.json").write_text(manifest_text(rebuilt))


def test_the_majority_baseline_comes_from_the_counts_tokenize_recorded(prepared_data, model, tmp_path):
    stats = json.loads((prepared_data[1] / STATS_FILE).read_text())
    counts = stats["splits"]["train"]["class_counts"]
    assert sum(counts.values()) == stats["splits"]["train"]["rows"]
    labels = pq.read_table(prepared_data[1] / "train.parquet", columns=["label"]).column("label").to_numpy()
    from_the_split = read_labels(prepared_data[1])[int(np.bincount(labels).argmax())]
    other = next(label for label in counts if label != from_the_split)

    def other_first(edited):  # counts that disagree with the train split: the baseline must follow them
        edited["splits"]["train"]["class_counts"][other] = 10**6

    rewritten_stats(prepared_data[1], tmp_path / "tokens", other_first)
    evaluate(model_uri=str(model), data_uri=str(tmp_path / "tokens"), output_uri=str(tmp_path / "evaluation"))
    assert baseline_predicts(tmp_path / "evaluation") == other


def baseline_predicts(evaluation) -> str:
    return json.loads((evaluation / METRICS_FILE).read_text())["baseline_majority_class"]["predicts"]


def test_data_tokenized_before_the_counts_reads_its_train_split(prepared_data, model, tmp_path):
    """A tokenized folder from before tokenize recorded class counts still gets its baseline."""

    def without_counts(stats):
        for entry in stats["splits"].values():
            del entry["class_counts"]

    old = tmp_path / "old-tokens"
    rewritten_stats(prepared_data[1], old, without_counts)
    evaluate(model_uri=str(model), data_uri=str(old), output_uri=str(tmp_path / "evaluation"))
    labels = pq.read_table(old / "train.parquet", columns=["label"]).column("label").to_numpy()
    assert baseline_predicts(tmp_path / "evaluation") == read_labels(old)[int(np.bincount(labels).argmax())]
