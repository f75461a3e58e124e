"""components.predict and the model card's snippet: raw texts are cleaned as in training, and all predictors agree."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from components.lib.data.contract import CALIBRATION_FILE, MODEL_CARD_FILE
from components.lib.data.contract import ONNX_FP32_FILE as FP32_FILE
from components.lib.data.textclean import TextCleaning
from components.lib.errors import UserError
from components.lib.modelling.inference import torch_text_classifier
from components.lib.modelling.onnx_runtime import onnx_text_classifier
from components.lib.storage.artifacts import commit, read_manifest
from components.predict import PREDICTIONS_FILE, predict
from tests.conftest import run_module
from tests.test_register import register_release, tweet_release  # noqa: F401 (a fixture)

TRICKY_TEXTS = [
    "great relief, see https://example.com/review?id=7 and www.example.org",
    "thanks @alice and @bob_the_builder, awful nausea",
    "&amp;quot;okay&amp;quot; &amp;amp; fine\u200b \ufeffaverage\x07",
    "ＦＵＬＬＷＩＤＴＨ love   it\n\ttwice",
    " ".join(["wonderful"] * 80),  # longer than the 32 tokens the model was trained on
]


@pytest.fixture(scope="module")
def version_folder(tweet_release, tmp_path_factory) -> Path:  # noqa: F811 (the imported fixture)
    result = register_release(tweet_release, tmp_path_factory.mktemp("predict-registry"), require_beat_baseline=False)
    return Path(result.summary["uri"])


def onnx_probabilities(folder: Path, texts: list[str], lineage: dict | None = None) -> np.ndarray:
    manifest = read_manifest(str(folder)) if lineage is None else {"lineage": lineage}
    return onnx_text_classifier(folder, manifest, str(folder), FP32_FILE).probabilities(texts, batch_size=2)


def run_the_cards_snippet(version_folder: Path, monkeypatch, capsys) -> dict:
    """The namespace of the model card's snippet, run in the version's folder as a user would."""
    card = (version_folder / MODEL_CARD_FILE).read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    monkeypatch.chdir(version_folder)
    namespace: dict = {}
    exec(compile(snippet, "MODEL_CARD.md", "exec"), namespace)
    assert re.match(r"(negative|neutral|positive) \{", capsys.readouterr().out)
    return namespace


def test_the_model_cards_snippet_runs_and_agrees_with_the_projects_predictor(version_folder, monkeypatch, capsys):
    card = (version_folder / MODEL_CARD_FILE).read_text()
    namespace = run_the_cards_snippet(version_folder, monkeypatch, capsys)
    expected = onnx_probabilities(version_folder, TRICKY_TEXTS)
    labels = json.loads((version_folder / "labels.json").read_text())["labels"]
    cleaning = TextCleaning(mask_urls=True, mask_mentions=True)
    for text, probabilities in zip(TRICKY_TEXTS, expected):
        assert namespace["clean"](text) == cleaning.clean(text)
        scores = namespace["classify"](text)
        assert list(scores) == labels
        np.testing.assert_allclose(list(scores.values()), probabilities, atol=1e-5, err_msg=text)
    assert "mask_urls=True, mask_mentions=True" in card


def test_a_version_without_calibration_gets_a_card_and_snippet_at_temperature_one(tweet_release, tmp_path, monkeypatch, capsys):  # noqa: F811
    """A model exported before calibration existed has no calibration.json: the card says nothing of
    a temperature, and its snippet still agrees with the predictor, which reads 1.0."""
    export_copy = tmp_path / "onnx"
    shutil.copytree(tweet_release["export_uri"], export_copy)
    (export_copy / CALIBRATION_FILE).unlink()
    commit(export_copy, str(export_copy))
    result = register_release({**tweet_release, "export_uri": str(export_copy)}, tmp_path, require_beat_baseline=False)
    version = Path(result.summary["uri"])
    card = (version / MODEL_CARD_FILE).read_text()
    assert CALIBRATION_FILE not in card and "temperature scaling" not in card
    namespace = run_the_cards_snippet(version, monkeypatch, capsys)
    scores = [list(namespace["classify"](text).values()) for text in TRICKY_TEXTS]
    np.testing.assert_allclose(scores, onnx_probabilities(version, TRICKY_TEXTS), atol=1e-5)


def token_ids(predictor, texts: list[str]) -> list[list[int]]:
    split = predictor.encode(texts)
    return split.collate(np.arange(len(split)), predictor.pad_id)["input_ids"].tolist()


def test_every_predictor_applies_the_recorded_cleaning(version_folder, tweet_release):  # noqa: F811
    masked = ["see https://example.com/a", "@alice hi", "&amp;amp; ok"]
    as_trained = ["see http", "@user hi", "& ok"]
    model_dir = Path(tweet_release["model_uri"])
    predictors = {
        "onnx": onnx_text_classifier(version_folder, read_manifest(str(version_folder)), "version", FP32_FILE),
        "torch": torch_text_classifier(model_dir, read_manifest(str(model_dir)), "model"),
    }
    for name, predictor in predictors.items():
        assert token_ids(predictor, masked) == token_ids(predictor, as_trained), name
    unmasked = onnx_text_classifier(
        version_folder, {"lineage": {"text_cleaning": {"mask_urls": False, "mask_mentions": False}}}, "v", FP32_FILE
    )
    assert token_ids(unmasked, masked[:2]) != token_ids(predictors["onnx"], as_trained[:2])
    np.testing.assert_allclose(
        predictors["torch"].probabilities(masked + TRICKY_TEXTS, 4), predictors["onnx"].probabilities(masked + TRICKY_TEXTS, 4), atol=1e-4
    )


def write_inputs(folder: Path) -> dict[str, Path]:
    """The tricky texts, unlabelled, under the column `review`, in each format predict reads."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": index, "review": text} for index, text in enumerate(TRICKY_TEXTS)]
    paths = {"parquet": folder / "new.parquet", "jsonl": folder / "new.jsonl", "csv": folder / "new.csv"}
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"])
    paths["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in rows))
    pacsv.write_csv(pa.Table.from_pylist(rows), paths["csv"])
    return paths


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet"])
def test_predict_writes_labels_probabilities_and_source_rows(version_folder, tweet_release, tmp_path, file_format):  # noqa: F811
    source = write_inputs(tmp_path / "inputs")[file_format]
    result = predict(input_uri=str(source), output_uri=str(tmp_path / "out"), model_uri=tweet_release["export_uri"], text_column="review")
    assert result.summary["rows_predicted"] == len(TRICKY_TEXTS) and result.summary["rows_skipped"] == 0
    table = pq.read_table(tmp_path / "out" / PREDICTIONS_FILE).to_pylist()
    expected = onnx_probabilities(version_folder, TRICKY_TEXTS)
    assert [row["text"] for row in table] == TRICKY_TEXTS
    assert [row["source_row"].split(":")[0] for row in table] == [source.name] * len(TRICKY_TEXTS)
    labels = ["negative", "neutral", "positive"]
    for row, probabilities in zip(table, expected):
        np.testing.assert_allclose([row[f"prob_{label}"] for label in labels], probabilities, atol=1e-5)
        assert row["predicted"] == labels[int(probabilities.argmax())] and row["confidence"] == pytest.approx(probabilities.max(), abs=1e-5)


def test_predict_from_the_registry_on_the_command_line(version_folder, tmp_path):
    source = write_inputs(tmp_path / "inputs")["csv"]
    registry = version_folder.parent.parent
    result = run_module("components.predict", "--input_uri", str(source), "--text_column", "review", "--output_uri", str(tmp_path / "out"),
                        "--registry_uri", str(registry), "--model_name", "tweets")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"rows_predicted": 5' in result.stdout and '"model": "tweets version 1 in ' in result.stdout
    rows = pq.read_table(tmp_path / "out" / PREDICTIONS_FILE).column("source_row").to_pylist()
    assert rows == [f"new.csv:record {index}" for index in range(1, 6)]


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "give either --model_uri"),
        (["--registry_uri", "REGISTRY"], "--registry_uri needs --model_name"),
        (["--registry_uri", "REGISTRY", "--model_name", "tweets", "--text_column", "body"], "no column 'body' (columns: 'id', 'review')"),
    ],
)
def test_predict_mistakes_are_one_line(version_folder, tmp_path, flags, message):
    source = write_inputs(tmp_path / "inputs")["csv"]
    flags = [str(version_folder.parent.parent) if flag == "REGISTRY" else flag for flag in flags]
    result = run_module("components.predict", "--input_uri", str(source), "--output_uri", str(tmp_path / "out"), *flags)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def predict_command(source: Path, output: Path | str, registry: Path, *extra: str):
    return run_module("components.predict", "--input_uri", str(source), "--text_column", "review", "--output_uri", str(output),
                      "--registry_uri", str(registry), "--model_name", "tweets", *extra)  # fmt: skip


def failing_run(kind: str, inputs: Path) -> tuple[Path, list[str]]:
    """(input file, extra flags) of a predict that fails for a user's mistake of this kind."""
    source = write_inputs(inputs)["csv"]
    if kind == "unreadable input":
        source = inputs / "broken.parquet"
        source.write_bytes(b"not parquet at all")
    return source, {"unknown model": ["--model_name", "twets"], "missing text column": ["--text_column", "body"]}.get(kind, [])


def contents(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("kind", ["unreadable input", "unknown model", "missing text column"])
def test_a_failed_predict_leaves_no_output_folder(version_folder, tmp_path, kind):
    """Nor the parents it would have made: a user who fixes the mistake finds things as they were."""
    source, flags = failing_run(kind, tmp_path / "inputs")
    output = tmp_path / "runs" / "predictions"
    result = predict_command(source, output, version_folder.parent.parent, *flags)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_failed_predict_keeps_what_its_output_folder_held(version_folder, tmp_path):
    """An earlier committed output given with --overwrite, and an empty folder, are left byte for byte as they were."""
    registry, source = version_folder.parent.parent, write_inputs(tmp_path / "inputs")["csv"]
    committed, empty = tmp_path / "committed", tmp_path / "empty"
    assert predict_command(source, committed, registry).returncode == 0
    empty.mkdir()
    before = {folder: contents(folder) for folder in (committed, empty)}
    for folder in (committed, empty):
        result = predict_command(source, folder, registry, "--text_column", "body", "--overwrite")
        assert result.returncode == 2 and "no column 'body'" in result.stderr, result.stderr
        assert contents(folder) == before[folder] and sorted(path.name for path in folder.iterdir()) == sorted(before[folder])


def test_a_failed_predict_writes_nothing_to_s3(version_folder, s3, tmp_path):
    source = write_inputs(tmp_path / "inputs")["csv"]
    with pytest.raises(UserError, match="no column 'body'"):
        predict(input_uri=str(source), output_uri="s3://bucket/predictions", registry_uri=str(version_folder.parent.parent),
                model_name="tweets", text_column="body")  # fmt: skip
    assert s3.list_objects_v2(Bucket="bucket").get("KeyCount") == 0


def test_an_output_folder_of_other_files_is_refused_before_the_work(version_folder, tmp_path):
    """Predictions are written aside until they are complete, yet a folder predict may not write to is refused first."""
    output = tmp_path / "project"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    result = predict_command(write_inputs(tmp_path / "inputs")["csv"], output, version_folder.parent.parent, "--text_column", "body")
    assert result.returncode == 2 and f"{output}: holds 1 file(s) that no stage committed there" in result.stderr, result.stderr
    assert contents(output) == {"notes.txt": b"mine"}
