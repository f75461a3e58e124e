"""An output folder never loses what no stage wrote there: a folder of other files, or another stage's
output, is refused with nothing touched, locally and on S3; --overwrite replaces what the last commit
listed and nothing else; a rewrite that stopped before its commit can be run again."""

import json

import pytest

from components.lib.errors import UserError
from components.lib.storage import artifacts
from components.lib.storage.artifacts import read_manifest, staged_output
from tests.conftest import run_module

REFUSAL = "holds 2 file(s) that no stage committed there (notes.txt, src/main.py); nothing was touched: give an empty or a new folder"


def preprocess_into(output: str, sample_source, *extra: str):
    return run_module("components.preprocess", "--input_uri", str(sample_source), "--output_uri", output, *extra)


def users_folder(tmp_path):
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "src" / "main.py").write_text("print('mine')")
    return folder


@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_a_folder_of_other_files_is_refused_and_kept_whole(sample_source, tmp_path, flags):
    folder = users_folder(tmp_path)
    result = preprocess_into(str(folder), sample_source, *flags)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {folder}: {REFUSAL}"]
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")) == ["notes.txt", "src", "src/main.py"]
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_prefix_of_other_objects_on_s3_is_refused_and_kept_whole(s3, sample_source, tmp_path):
    for key in ("project/notes.txt", "project/src/main.py"):
        s3.put_object(Bucket="bucket", Key=key, Body=b"mine")
    result = preprocess_into("s3://bucket/project", sample_source)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: s3://bucket/project: {REFUSAL}"]
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket="bucket", Prefix="project/")["Contents"])
    assert keys == ["project/notes.txt", "project/src/main.py"]


def test_overwrite_replaces_what_the_last_commit_listed_and_keeps_the_rest(sample_source, tmp_path):
    output = tmp_path / "data"
    assert preprocess_into(str(output), sample_source).returncode == 0
    (output / "notes.txt").write_text("mine")  # the user's, beside the committed output
    (output / "old-split.parquet").write_text("listed")
    manifest = json.loads((output / "MANIFEST.json").read_text())
    manifest["files"]["old-split.parquet"] = {"size": 6, "sha256": "0" * 64}  # as if the last commit had written it
    (output / "MANIFEST.json").write_text(json.dumps(manifest))
    result = preprocess_into(str(output), sample_source, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (output / "notes.txt").read_text() == "mine" and not (output / "old-split.parquet").exists()
    assert read_manifest(str(output))["written_by"] == "components.preprocess"


def test_another_stages_output_is_refused_even_with_overwrite(prepared_data, tiny_model, sample_source, tmp_path):
    data = prepared_data[0]
    before = read_manifest(str(data))
    result = run_module("components.tokenize", "--data_uri", str(prepared_data[0]), "--output_uri", str(tmp_path / "tokens"),
                        "--base_model", str(tiny_model))  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = run_module("components.tokenize", "--data_uri", str(prepared_data[0]), "--output_uri", str(tmp_path / "tokens"),
                        "--base_model", str(tiny_model), "--overwrite")  # fmt: skip
    assert result.returncode == 0, result.stderr  # its own output: replaced
    committed = preprocess_into(str(tmp_path / "tokens"), sample_source, "--overwrite")
    assert committed.returncode == 2
    assert committed.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'tokens'}: holds components.tokenize's committed output; nothing was touched:"
        " give components.preprocess an empty or a new folder"
    ]
    assert read_manifest(str(data)) == before and read_manifest(str(tmp_path / "tokens"))["written_by"] == "components.tokenize"


def test_a_rewrite_that_stopped_before_its_commit_can_run_again(tmp_path):
    output = str(tmp_path / "out")
    token = artifacts.WRITER.set("components.predict")
    try:
        with staged_output(output) as folder:
            (folder / "predictions.parquet").write_text("first")
        (tmp_path / "out" / "notes.txt").write_text("mine")
        with pytest.raises(RuntimeError), staged_output(output) as folder:
            raise RuntimeError("killed before the commit")
        assert not (tmp_path / "out" / "MANIFEST.json").exists()  # uncommitted, yet claimed: not refused
        with staged_output(output) as folder:
            (folder / "predictions.parquet").write_text("second")
        assert (tmp_path / "out" / "predictions.parquet").read_text() == "second"
        assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
        assert not (tmp_path / "out" / artifacts.CLAIM).exists()
        with pytest.raises(RuntimeError), staged_output(output):
            raise RuntimeError("stopped again")
        artifacts.WRITER.set("components.evaluate")
        with pytest.raises(UserError, match="holds components.predict's unfinished output; nothing was touched"):
            with staged_output(output):
                pass
    finally:
        artifacts.WRITER.reset(token)


def test_a_kubeflow_task_writes_over_what_a_failed_attempt_left_in_its_own_path(sample_source, tmp_path):
    """The launcher's output path is the task's own; a retried attempt finds its earlier, uncommitted files."""
    output = tmp_path / "dataset"
    output.mkdir()
    (output / "train.parquet").write_text("half-written by the failed attempt")
    executor_input = json.dumps({"outputs": {"outputFile": str(tmp_path / "executor_output.json")}})
    result = preprocess_into(str(output), sample_source, "--executor_input", executor_input)
    assert result.returncode == 0, result.stderr
    assert "train.parquet" in read_manifest(str(output))["files"]
