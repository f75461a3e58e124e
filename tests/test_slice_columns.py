"""--slice_columns: source columns carried from preprocess through tokenize, for evaluate and register to
score the test rows by each value ("condition = Depression"). Every reader keeps the values with their
rows; a file without the column, or a task that cannot use it, is refused in one line."""

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.evaluate import evaluate
from components.lib.data.contract import TOKENIZED_SCHEMA, read_split, slice_columns_in
from components.lib.reporting.slices import MAX_VALUES_PER_COLUMN, OTHER_VALUES, slice_values, split_slices
from components.lib.tasks.classification_gate import test_slices_of as gate_slices_of
from components.train import train
from tests.conftest import labelled_rows, run_module, train_flags

CONDITIONS = ("acne", "anxiety", "pain")


def source_rows(count: int, seed: int) -> list[dict]:
    """Labelled rows, each with a condition (one in ten missing) and a numeric rating: the columns to slice by."""
    rng = random.Random(seed)
    rows = labelled_rows(count, seed=seed)
    for index, row in enumerate(rows):
        row["condition"] = None if index % 10 == 9 else rng.choice(CONDITIONS)
        row["stars"] = float(rng.randint(1, 5))
    return rows


def write_source(folder: Path, file_format: str) -> tuple[Path, dict[str, dict]]:
    """train and test files of `file_format`; {text: its row} to check what preprocess kept against."""
    rows = {"train": source_rows(150, seed=1), "test": source_rows(60, seed=2)}
    folder.mkdir(parents=True, exist_ok=True)
    for split, records in rows.items():
        path = folder / f"{split}.{file_format}"
        if file_format == "parquet":
            pq.write_table(pa.Table.from_pylist(records), path)
        elif file_format == "jsonl":
            path.write_text("".join(json.dumps(record) + "\n" for record in records))
        else:
            lines = ["text,label,condition,stars"] + [
                f"{record['text']},{record['label']},{record['condition'] or ''},{int(record['stars'])}" for record in records
            ]
            path.write_text("\n".join(lines) + "\n")
    return folder, {record["text"]: record for records in rows.values() for record in records}


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet"])
def test_each_reader_carries_the_slice_columns_with_their_rows_through_preprocess(tmp_path, file_format):
    from components.preprocess import preprocess

    source, by_text = write_source(tmp_path / "source", file_format)
    preprocess(input_uri=str(source), output_uri=str(tmp_path / "data"), slice_columns="condition, stars", label_audit_folds=0)
    for split in ("train", "test"):
        table = pq.read_table(tmp_path / "data" / f"{split}.parquet")
        assert table.column_names[-2:] == ["slice:condition", "slice:stars"]
        for row in table.to_pylist():
            given = by_text[row["text"]]
            assert row["slice:condition"] == given["condition"]  # a missing cell stays missing (None), not ""
            assert row["slice:stars"] == str(int(given["stars"]))  # numbers read as labels are: 4.0 -> "4"


def test_tokenize_carries_them_and_evaluate_and_register_slice_the_test_rows_by_each_value(tmp_path, tiny_model):
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    source, by_text = write_source(tmp_path / "source", "csv")
    preprocess(input_uri=str(source), output_uri=str(tmp_path / "data"), slice_columns="condition", label_audit_folds=0)
    tokenize(data_uri=str(tmp_path / "data"), output_uri=str(tmp_path / "tokens"), base_model=str(tiny_model), max_length=32)
    tokens = tmp_path / "tokens"
    assert slice_columns_in(tokens, "test") == ["slice:condition"]
    table = read_split(tokens, "test", TOKENIZED_SCHEMA)
    conditions = [by_text[text]["condition"] for text in table.column("text").to_pylist()]
    assert table.column("slice:condition").to_pylist() == conditions
    slices = gate_slices_of(tokens)  # what register's gate compares production with the candidate on
    for condition in CONDITIONS:
        assert slices[f"condition = {condition}"].tolist() == [index for index, value in enumerate(conditions) if value == condition]
    assert slices["condition = (missing)"].tolist() == [index for index, value in enumerate(conditions) if value is None]
    train(data_uri=str(tokens), output_uri=str(tmp_path / "model"), base_model=str(tiny_model), **train_flags(epochs=1))
    evaluate(model_uri=str(tmp_path / "model"), data_uri=str(tokens), output_uri=str(tmp_path / "evaluation"))
    reported = {
        entry["slice"]: entry["rows"] for entry in json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["test"]["slices"]
    }
    assert all(reported[name] == len(rows) for name, rows in slices.items() if name.startswith("condition = "))
    predictions = pq.read_table(tmp_path / "evaluation" / "predictions.parquet")
    assert predictions.column("slice:condition").to_pylist() == conditions  # each prediction keeps its row's values


def test_a_column_of_many_values_keeps_the_most_frequent_as_slices_and_scores_the_rest_together(caplog):
    values = [f"user{index}" for index in range(MAX_VALUES_PER_COLUMN + 10)] + ["common"] * 5
    slices = split_slices(np.full(len(values), 5), ["a.csv:1"] * len(values), {"user": values})
    by_user = {name: rows for name, rows in slices.items() if name.startswith("user = ")}
    assert len(by_user) == MAX_VALUES_PER_COLUMN + 1 and by_user["user = common"].tolist() == list(range(len(values) - 5, len(values)))
    assert sum(len(rows) for rows in by_user.values()) == len(values)  # every row is in one slice of the column
    assert len(by_user[f"user = {OTHER_VALUES}"]) == 11
    assert "slice column 'user': 41 values" in caplog.text  # the grouping is said, not silent
    assert slice_values(pa.table({"text": ["a"], "slice:user": ["x"]})) == {"user": ["x"]}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), "no column 'region' (columns: 'text', 'label', 'condition', 'stars'); pass --slice_columns with the right name"),
        (("--task", "multi_label_classification"), "--slice_columns: slices are scored for sequence_classification only"),
        (("--task", "causal_lm"), "--slice_columns: slices score a classifier's test rows; --task causal_lm has none"),
    ],
)
def test_a_slice_column_the_file_lacks_or_a_task_without_slices_is_refused_in_one_line_writing_nothing(tmp_path, extra, expected):
    source, _ = write_source(tmp_path / "source", "csv")
    column = "region" if not extra else "condition"
    result = run_module(
        "components.preprocess", "--input_uri", str(source), "--output_uri", str(tmp_path / "data"), "--slice_columns", column, *extra
    )
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "MANIFEST.json").exists() and not list((tmp_path / "data").glob("*.parquet"))


def test_an_augmented_copy_keeps_the_slice_values_of_the_row_it_was_made_from(tmp_path):
    from components.preprocess import preprocess

    source, by_text = write_source(tmp_path / "source", "parquet")
    preprocess(input_uri=str(source), output_uri=str(tmp_path / "data"), slice_columns="condition", augment_factor=1, label_audit_folds=0)
    rows = pq.read_table(tmp_path / "data" / "train.parquet").to_pylist()
    originals = {row["source_row"]: row for row in rows if not row["source_row"].endswith(" (augmented)")}
    copies = [row for row in rows if row["source_row"].endswith(" (augmented)")]
    assert copies and all(
        row["slice:condition"] == originals[row["source_row"].removesuffix(" (augmented)")]["slice:condition"] for row in copies
    )
    assert any(row["slice:condition"] is not None for row in copies)
