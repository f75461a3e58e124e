"""The bad-input corpus (tests/bad_inputs): each case ends in one clear line and exit status 2, or in
quarantined rows that are counted, with rows in = rows kept + rows rejected. Never a traceback."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, run_module

CORPUS = REPO / "tests" / "bad_inputs"
COLUMNS = ("--text_column", "review", "--label_column", "rating")


def preprocess(source: Path | str, out: Path, *extra: str):
    return run_module("components.preprocess", "--input_uri", str(source), "--output_uri", str(out), *COLUMNS, *extra)


def assert_one_line_error(result, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {expected}"], result.stderr


def quarantined(out: Path) -> tuple[dict, dict]:
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows_in"] == stats["rows_kept"] + stats["rows_rejected"]
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert len(rejects) == stats["rows_rejected"]
    kept = sum(pq.read_metadata(out / f"{split}.parquet").num_rows for split in ("train", "validation", "test"))
    assert kept == stats["rows_kept"]
    return stats, {reason: [row for row in rejects if row["reason"] == reason] for reason in stats["rejected_by_reason"]}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("empty.csv", "{path}: the file is empty; it needs a header row and data rows"),
        ("header_only.csv", "{path}: no data rows (a header only?); the input needs labelled rows"),
        ("missing_text_column.csv", "{path}: no column 'review' (columns: 'comment', 'rating'); pass --text_column with the right name"),
        ("missing_label_column.csv", "{path}: no column 'rating' (columns: 'review', 'stars'); pass --label_column with the right name"),
        (
            "single_class.csv",
            "{path}: only one class (positive) among the kept training rows; a classifier needs at least two: check --label_column and --label_names (negative, neutral, positive)",
        ),
        (
            "split_missing_class",
            "{path}: the test split has no rows of class 'neutral'; add some, fix --label_names, or pass --allow_missing_classes",
        ),
        (
            "reviews.xlsx",
            "{path}: unsupported file type; use CSV, TSV, JSON, JSON Lines or Parquet (optionally compressed: .gz, .bz2, .zst, .lz4)",
        ),
        ("wrong_types.parquet", "{path}: column 'review' has type int64; the text column must hold strings"),
    ],
)
def test_refused_with_one_line_and_exit_2(name, expected, tmp_path):
    path = CORPUS / name
    assert_one_line_error(preprocess(path, tmp_path / "out"), expected.format(path=path))
    assert not (tmp_path / "out" / "MANIFEST.json").exists()  # nothing committed


def test_split_missing_a_class_is_accepted_when_allowed(tmp_path):
    result = preprocess(CORPUS / "split_missing_class", tmp_path / "out", "--allow_missing_classes")
    assert result.returncode == 0, result.stderr
    stats, _ = quarantined(tmp_path / "out")
    assert stats["splits"]["test"]["class_counts"]["neutral"] == 0


def test_null_and_empty_texts_are_quarantined(tmp_path):
    assert preprocess(CORPUS / "null_and_empty_texts.jsonl", tmp_path / "out").returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"empty_text": 3, "missing_text": 2}
    assert {row["position"] for row in rejects["missing_text"]} == {"line 19", "line 23"}


def test_non_utf8_rows_are_quarantined_and_another_encoding_reads_them(tmp_path):
    assert preprocess(CORPUS / "latin1.csv", tmp_path / "utf8").returncode == 0
    stats, rejects = quarantined(tmp_path / "utf8")
    assert stats["rejected_by_reason"] == {"undecodable_text": 3}
    assert "pass --encoding" in rejects["undecodable_text"][0]["detail"]
    assert preprocess(CORPUS / "latin1.csv", tmp_path / "latin1", "--encoding", "latin-1").returncode == 0
    stats, _ = quarantined(tmp_path / "latin1")
    assert stats["rows_rejected"] == 0
    texts = (
        pq.read_table(tmp_path / "latin1" / "train.parquet").column("text").to_pylist()
        + pq.read_table(tmp_path / "latin1" / "test.parquet").column("text").to_pylist()
        + pq.read_table(tmp_path / "latin1" / "validation.parquet").column("text").to_pylist()
    )
    assert "café was très bon" in texts


def test_mixed_encodings_quarantine_only_the_foreign_rows(tmp_path):
    assert preprocess(CORPUS / "mixed_encodings.csv", tmp_path / "out").returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"undecodable_text": 2}
    assert [row["position"] for row in rejects["undecodable_text"]] == ["record 19", "record 20"]


def test_unknown_labels_are_quarantined(tmp_path):
    assert preprocess(CORPUS / "unknown_labels.csv", tmp_path / "out").returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"missing_label": 1, "unknown_label": 2}
    assert {row["label"] for row in rejects["unknown_label"]} == {"very positive", "5 stars"}


def test_a_text_of_one_megabyte_is_quarantined(tmp_path):
    source = tmp_path / "big.jsonl"
    lines = [
        json.dumps({"review": f"{word} review number {index}", "rating": label})
        for index in range(6)
        for word, label in (("good", "positive"), ("bad", "negative"), ("meh", "neutral"))
    ]
    lines.append(json.dumps({"review": "x" * 1_000_000, "rating": "positive"}))
    source.write_text("\n".join(lines) + "\n")
    assert preprocess(source, tmp_path / "out").returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"text_too_long": 1}
    assert rejects["text_too_long"][0]["detail"] == "1000000 characters, over --max_chars 20000"
    assert len(rejects["text_too_long"][0]["text"]) == 1_000_000  # quarantined whole, not cut


@pytest.mark.parametrize("name, count", [("malformed_quoting.csv", 1), ("too_many_fields.csv", 2)])
def test_malformed_csv_rows_are_quarantined(name, count, tmp_path):
    assert preprocess(CORPUS / name, tmp_path / "out").returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"malformed_row": count}
    assert all(row["detail"].startswith("expected 2 fields, found ") for row in rejects["malformed_row"])


def test_duplicates_across_splits_are_kept_once_as_leakage(tmp_path):
    assert preprocess(CORPUS / "duplicates_across_splits", tmp_path / "out").returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["leaked_across_splits"] == stats["rejected_by_reason"]["leaked_across_splits"] == 3
    assert {row["source"] for row in rejects["leaked_across_splits"]} == {"train.csv"}
    test_texts = set(pq.read_table(tmp_path / "out" / "test.parquet").column("text").to_pylist())
    assert "great relief week 0" in test_texts


@pytest.mark.parametrize(
    "name, expected",
    [
        ("unknown_config_key.yaml", "{path}: parameters.learning_rte: unknown key (did you mean learning_rate?)"),
        ("wrong_config_type.yaml", "{path}: parameters.epochs: expected int, got str 'three'"),
    ],
)
def test_bad_config_is_one_line(name, expected, tmp_path):
    path = CORPUS / name
    result = run_module("pipelines.local_run", "--config", str(path))
    assert_one_line_error(result, expected.format(path=path))
