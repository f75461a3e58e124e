"""The bad-input corpus (tests/bad_inputs): each case ends in one clear line and exit status 2, or in
quarantined rows that are counted, with rows in = rows kept + rows rejected. Never a traceback."""

import gzip
import json
import random
import re
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, run_module
from tests.fault_proxy import FaultProxy, Handler

CORPUS = REPO / "tests" / "bad_inputs"
COLUMNS = ("--text_column", "review", "--label_column", "rating")
TEXTS = {"great relief": "positive", "awful side effects": "negative", "it is okay": "neutral"}
KEEP_ALL = ("--max_reject_share", "1")  # for files whose share of bad rows is the point, tiny as they are


def preprocess(source: Path | str, out: Path, *extra: str, env: dict | None = None):
    return run_module("components.preprocess", "--input_uri", str(source), "--output_uri", str(out), *COLUMNS, *extra, env=env)


def assert_one_line_error(result, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {expected}"], result.stderr


def assert_one_line_error_like(result, pattern: str) -> None:
    """For messages that quote a library's own words (pyarrow's, on a corrupt file): `pattern` is a regex."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert re.fullmatch(f"error: {pattern}", line), line


def succeeded(result) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


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
        ("utf16le_no_bom.csv", "{path}: looks like UTF-16-LE text without a byte-order mark; pass --encoding utf-16-le"),
        (
            "cp1252_whole_file.csv",
            "{path}: 12 of 18 rows are not valid utf-8 (the first at record 2), and no row with non-ASCII characters is;"
            " the file is in another encoding: pass it, e.g. --encoding cp1252 or --encoding latin-1 (cp1252 is what Excel on Windows writes)",
        ),
        (
            "cp1252_header.csv",
            "{path}: the header row is not valid utf-8; pass the file's encoding, e.g. --encoding cp1252 or --encoding latin-1"
            " (cp1252 is what Excel on Windows writes)",
        ),
        (
            "objects_as_text.jsonl",
            "{path}: the 'review' field of every record is a JSON object or array, not text (the first at line 1);"
            " pass --text_column naming the right field",
        ),
        (
            "too_few_distinct_rows.csv",
            "{path}: too few distinct rows to make the splits: 20 rows read, 9 distinct kept (11 duplicates and 0 other rows"
            " rejected), and the train/validation/test splits need at least 3 distinct rows of each class, but 'neutral' has 2,"
            " 'positive' has 1; add rows, or pass --allow_missing_classes",
        ),
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
    assert preprocess(CORPUS / "null_and_empty_texts.jsonl", tmp_path / "out", *KEEP_ALL).returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"empty_text": 3, "missing_text": 2}
    assert {row["position"] for row in rejects["missing_text"]} == {"line 19", "line 23"}


def test_non_utf8_rows_are_quarantined_and_another_encoding_reads_them(tmp_path):
    assert preprocess(CORPUS / "latin1.csv", tmp_path / "utf8", *KEEP_ALL).returncode == 0
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
    assert preprocess(CORPUS / "unknown_labels.csv", tmp_path / "out", *KEEP_ALL).returncode == 0
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"missing_label": 1, "unknown_label": 2}
    assert {row["label"] for row in rejects["unknown_label"]} == {"very positive", "5 stars"}


def test_a_misspelt_label_is_a_warning_that_lists_the_labels_and_suggests_auto(tmp_path):
    result = preprocess(CORPUS / "misspelt_labels.csv", tmp_path / "out")
    succeeded(result)
    stats, rejects = quarantined(tmp_path / "out")
    detail = (
        "'postive' is not one of the labels negative, neutral, positive (did you mean 'positive'?); if the data's labels are right,"
        " pass --label_names auto to take the labels found in the data"
    )
    assert [row["detail"] for row in rejects["unknown_label"]] == [detail, detail]
    warning = f"{CORPUS / 'misspelt_labels.csv'}: 2 of 30 rows (6.7%) rejected and quarantined in rejects.parquet: 2 unknown_label (first at misspelt_labels.csv record 13: {detail})"
    assert warning in result.stderr and warning in stats["notes"]


def test_inside_make_run_the_hints_are_written_as_make_run_takes_them(tmp_path):
    """make run sets FLAG_STYLE_ENV for its stages: the user types key=value there, not --flag value."""
    from components.lib.errors import FLAG_STYLE_ENV, KEY_VALUE_STYLE

    key_value = {FLAG_STYLE_ENV: KEY_VALUE_STYLE}
    result = preprocess(CORPUS / "misspelt_labels.csv", tmp_path / "out", env=key_value)
    succeeded(result)
    assert "pass label_names=auto to take the labels found in the data" in result.stderr and "pass --label_names" not in result.stderr
    result = preprocess(CORPUS / "split_missing_class", tmp_path / "split", env=key_value)
    assert result.returncode == 2 and result.stderr.strip().endswith("add some, fix label_names=..., or pass allow_missing_classes=true")
    result = preprocess(CORPUS / "split_missing_class", tmp_path / "split2")  # a stage's command line keeps its flags
    assert result.returncode == 2 and result.stderr.strip().endswith("add some, fix --label_names, or pass --allow_missing_classes")


def test_integer_labels_are_indices_into_the_label_names_and_the_rule_is_logged(tmp_path):
    """The Hugging Face convention: 0, 1, 2 name --label_names in order."""
    result = preprocess(CORPUS / "integer_labels.csv", tmp_path / "out")
    succeeded(result)
    stats, _ = quarantined(tmp_path / "out")
    assert stats["rows_rejected"] == 0 and stats["labels"] == ["negative", "neutral", "positive"]
    rule = (
        "labels are read as indices into --label_names (0 negative, 1 neutral, 2 positive), the Hugging Face convention:"
        " the first label, '2', is a number and not a name"
    )
    assert stats["label_rule"] == rule and rule in result.stderr
    kept = {
        row["text"]: row["label"]
        for split in ("train", "validation", "test")
        for row in pq.read_table(tmp_path / "out" / f"{split}.parquet").to_pylist()
    }
    assert kept["great relief week 0"] == 2 and kept["awful side effects week 3"] == 0 and kept["it is okay week 5"] == 1


def test_labels_matched_by_name_say_so(tmp_path):
    result = preprocess(CORPUS / "too_many_fields.csv", tmp_path / "out")
    succeeded(result)
    assert "labels are matched by name to --label_names (negative, neutral, positive), ignoring case" in result.stderr


def test_a_rating_column_without_rating_buckets_fails_naming_the_flag(tmp_path):
    """Its first rating, 2, reads as an index; the ratings above 2 are refused, and they are most rows."""
    path = CORPUS / "ratings_without_buckets.csv"
    assert_one_line_error(
        preprocess(path, tmp_path / "out"),
        f"{path}: 21 of 25 rows (84.0%) were rejected, over --max_reject_share 0.1: 21 unknown_label (first at"
        " ratings_without_buckets.csv record 2: '7' is not an index 0-2 into --label_names (0 negative, 1 neutral, 2 positive),"
        " and labels are read as indices because the first label, '2', is one; for ratings pass --rating_buckets). Fix the data"
        " or the flags, or pass --max_reject_share 1 to keep the other rows",
    )


def test_a_large_share_of_bad_rows_fails_with_the_reasons_and_their_first_rows(tmp_path):
    """Unquoted commas in 12 of 27 texts: one line, exit 2, nothing committed."""
    path = CORPUS / "stray_commas.csv"
    assert_one_line_error(
        preprocess(path, tmp_path / "out"),
        f"{path}: 12 of 27 rows (44.4%) were rejected, over --max_reject_share 0.1: 12 malformed_row (first at stray_commas.csv"
        " line 5: expected 2 fields, found 3). Fix the data or the flags, or pass --max_reject_share 1 to keep the other rows",
    )
    assert not (tmp_path / "out" / "MANIFEST.json").exists()


def test_bad_rows_under_the_threshold_are_quarantined_with_a_warning(tmp_path):
    result = preprocess(CORPUS / "stray_commas.csv", tmp_path / "out", "--max_reject_share", "0.5")
    succeeded(result)
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"malformed_row": 12}
    assert [row["position"] for row in rejects["malformed_row"]][:3] == ["line 5", "line 8", "line 9"]
    warning = (
        f"{CORPUS / 'stray_commas.csv'}: 12 of 27 rows (44.4%) rejected and quarantined in rejects.parquet: 12 malformed_row"
        " (first at stray_commas.csv line 5: expected 2 fields, found 3)"
    )
    assert warning in result.stderr


def test_duplicates_do_not_count_against_the_reject_share(tmp_path):
    """Every row twice: half the rows are dropped as duplicates, and that is deduplication, not bad data."""
    rows = "".join(f'"{text} week {week}",{label}\n' for week in range(6) for text, label in TEXTS.items())
    path = tmp_path / "repeated.csv"
    path.write_text("review,rating\n" + rows + rows)
    succeeded(preprocess(path, tmp_path / "out", "--max_reject_share", "0.01"))
    assert quarantined(tmp_path / "out")[0]["rejected_by_reason"] == {"duplicate_text": 18}


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_a_max_reject_share_out_of_range_is_one_line(value, tmp_path):
    assert_one_line_error(
        preprocess(CORPUS / "stray_commas.csv", tmp_path / "out", "--max_reject_share", value),
        f"--max_reject_share: must be above 0 and at most 1 (1 never fails), got {float(value)}",
    )


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


def test_train_given_preprocess_output_says_to_run_tokenize_first(prepared_data, tmp_path):
    """Not a word about the Hugging Face Hub (where the missing tokenizer/ folder used to send the user)."""
    data = prepared_data[0]
    result = run_module("components.train", "--data_uri", str(data), "--output_uri", str(tmp_path / "model"), "--max_steps", "1")
    assert_one_line_error(
        result, f"{data}: this is preprocess output, not tokenize output: run tokenize on it first, and pass --data_uri its --output_uri"
    )
    assert not (tmp_path / "model").exists()


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


def all_texts(out: Path) -> list[str]:
    return [
        text for split in ("train", "validation", "test") for text in pq.read_table(out / f"{split}.parquet").column("text").to_pylist()
    ]


@pytest.mark.parametrize(
    "name, note",
    [
        ("utf8_bom.csv", False),
        ("utf8_bom.jsonl", False),
        ("utf16le_bom.tsv", True),  # what Excel's "Unicode Text" writes
        ("utf16be_bom.csv", True),
        ("utf16le_bom.jsonl", True),
        ("utf16be_bom.json", True),
    ],
)
def test_a_byte_order_mark_decides_the_encoding(name, note, tmp_path):
    """The mark is read, not kept: every row decodes, and neither the first column name nor the first text holds it."""
    result = preprocess(CORPUS / name, tmp_path / "out")
    succeeded(result)
    stats, _ = quarantined(tmp_path / "out")
    assert stats["rows_in"] == 18 and stats["rows_rejected"] == 0
    texts = all_texts(tmp_path / "out")
    assert "café was très bon" in texts and not any("\ufeff" in text for text in texts)
    expected = f"{CORPUS / name}: starts with a UTF-16 byte-order mark; read as that, not as --encoding utf-8"
    assert (expected in stats["notes"]) == note and (expected in result.stderr) == note


def test_a_file_in_another_encoding_reads_with_the_flag_it_names(tmp_path):
    """The one-line refusals name --encoding cp1252; with it (or UTF-16's), the same files read whole."""
    for name, flags in (
        ("cp1252_whole_file.csv", ("--encoding", "cp1252")),
        ("cp1252_header.csv", ("--encoding", "cp1252", "--text_column", "critique", "--label_column", "évaluation")),
        ("utf16le_no_bom.csv", ("--encoding", "utf-16-le")),
    ):
        out = tmp_path / name
        succeeded(preprocess(CORPUS / name, out, *flags))
        stats, _ = quarantined(out)
        assert stats["rows_in"] == 18 and stats["rows_rejected"] == 0, name
    assert "épouvantable séjour 1" in all_texts(tmp_path / "cp1252_header.csv")


def test_quarantined_undecodable_rows_are_logged_with_the_flag_to_pass(tmp_path):
    result = preprocess(CORPUS / "latin1.csv", tmp_path / "out", *KEEP_ALL)
    succeeded(result)
    stats, _ = quarantined(tmp_path / "out")
    note = f"{CORPUS / 'latin1.csv'}: 3 of 18 rows are not valid utf-8 and were quarantined; if the file was saved in another encoding, pass it,"
    assert any(line.startswith(note) and "--encoding cp1252" in line for line in stats["notes"])
    assert note in result.stderr


def test_an_unknown_encoding_flag_is_one_line(tmp_path):
    result = preprocess(CORPUS / "latin1.csv", tmp_path / "out", "--encoding", "latin-9000")
    assert_one_line_error(result, "--encoding: unknown encoding 'latin-9000'; e.g. utf-8, cp1252, latin-1, utf-16")


def test_objects_where_text_or_label_should_be_are_quarantined(tmp_path):
    """Never stringified into a text or a label: each such record is quarantined with its reason."""
    succeeded(preprocess(CORPUS / "objects_in_some_records.jsonl", tmp_path / "out", *KEEP_ALL))
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"invalid_unicode": 1, "label_not_a_value": 1, "text_not_a_string": 2}
    assert [row["position"] for row in rejects["text_not_a_string"]] == ["line 5", "line 13"]
    assert (
        rejects["text_not_a_string"][0]["detail"] == "the 'review' field is a JSON object, not text; pass --text_column naming a text field"
    )
    assert rejects["label_not_a_value"][0]["detail"] == "the 'rating' field is a JSON array; a label must be a string or a number"
    assert rejects["invalid_unicode"][0]["detail"].startswith("the text holds a lone surrogate '\\ud83d'")
    assert rejects["invalid_unicode"][0]["text"] == "an emoji cut in half \ufffd"
    assert not any("{" in text or "[" in text for text in all_texts(tmp_path / "out"))


def test_a_missing_parquet_label_read_as_nan_is_a_missing_label(tmp_path):
    """pandas writes a missing number as NaN: that is no label, not a class called "nan"."""
    rows = [
        {"review": f"{word} review {index}", "rating": float(rating)}
        for index in range(6)
        for word, rating in (("good", 9), ("bad", 2), ("meh", 5))
    ]
    rows.append({"review": "no rating given", "rating": float("nan")})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ratings.parquet")
    succeeded(preprocess(tmp_path / "ratings.parquet", tmp_path / "out", "--label_names", "auto"))
    stats, rejects = quarantined(tmp_path / "out")
    assert stats["labels"] == ["2", "5", "9"]
    assert stats["rejected_by_reason"] == {"missing_label": 1} and rejects["missing_label"][0]["position"] == "row 19"


def garbage(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def cut_gzip(rows: int) -> bytes:
    text = "review,rating\n" + "".join(
        f'"review number {index}",{("positive", "negative", "neutral")[index % 3]}\n' for index in range(rows)
    )
    packed = gzip.compress(text.encode(), mtime=0)
    return packed[: len(packed) // 2]


def corrupt_parquet(path: Path) -> None:
    pq.write_table(pa.table({"review": [f"text {index}" for index in range(100)], "rating": ["positive"] * 100}), path, compression="none")
    data = bytearray(path.read_bytes())
    data[4:64] = bytes(60)  # the first page header: the footer still reads, the data does not
    path.write_bytes(bytes(data))


def xlsx_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


BINARY = "{path}: this is binary data, not {kind} text ({count} control bytes in its first 4096, the first at byte {first}); check that it is the file you meant"


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("garbage.csv", lambda path: path.write_bytes(garbage(4096)), BINARY.format(path="{path}", kind="CSV", count=468, first=1)),
        ("garbage.json", lambda path: path.write_bytes(garbage(4096)), BINARY.format(path="{path}", kind="JSON", count=468, first=1)),
        ("garbage.jsonl", lambda path: path.write_bytes(garbage(4096)), BINARY.format(path="{path}", kind="JSONL", count=468, first=1)),
        (
            "reviews.csv.gz",
            lambda path: path.write_bytes(cut_gzip(30)),
            "{path}: the compressed data is truncated or corrupt (Truncated compressed stream); download or compress the file again",
        ),
        (
            "reviews.csv",
            lambda path: path.write_bytes(gzip.compress(b"review,rating\n")),
            "{path}: this is not CSV text but gzip-compressed; add .gz to its name",
        ),
        (
            "reviews.csv",
            lambda path: path.write_bytes(xlsx_bytes()),
            "{path}: this is not CSV text but a ZIP archive (an Excel .xlsx workbook?); export the sheet as CSV",
        ),
        (
            "reviews.parquet",
            lambda path: path.write_bytes(b""),
            "{path}: the file is empty (0 bytes), not Parquet; write or download it again",
        ),
        (
            "reviews.parquet",
            lambda path: path.write_bytes(b"review,rating\n"),
            "{path}: not a readable Parquet file: Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.",
        ),
    ],
)
def test_files_that_are_not_what_their_name_says_are_one_line(name, make, expected, tmp_path):
    path = tmp_path / name
    make(path)
    assert_one_line_error(preprocess(path, tmp_path / "out"), expected.format(path=path))
    assert not (tmp_path / "out" / "MANIFEST.json").exists()


def test_a_gzip_cut_after_many_rows_fails_in_one_line_not_with_half_the_rows(tmp_path):
    path = tmp_path / "reviews.csv.gz"
    path.write_bytes(cut_gzip(200_000))  # the cut lies past the first blocks, after rows were already read
    result = preprocess(path, tmp_path / "out")
    assert_one_line_error_like(
        result,
        re.escape(f"{path}: the compressed data is truncated or corrupt after record ")
        + r"\d+"
        + re.escape(" (Truncated compressed stream); download or compress the file again"),
    )
    assert not (tmp_path / "out" / "MANIFEST.json").exists()


def test_a_corrupt_parquet_file_is_one_line(tmp_path):
    path = tmp_path / "reviews.parquet"
    corrupt_parquet(path)
    result = preprocess(path, tmp_path / "out")
    assert_one_line_error_like(
        result, re.escape(f"{path}: the Parquet data is corrupt after row 0 (") + r".+" + re.escape("); write or download the file again")
    )


def test_a_damaged_utf16_file_is_one_line(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes((CORPUS / "utf16be_bom.csv").read_bytes() + b"\xd8\x00\x00a")  # a lone high surrogate
    assert_one_line_error(
        preprocess(path, tmp_path / "out"),
        f"{path}: not valid utf-16-be (illegal UTF-16 surrogate); the file is damaged: save or export it again",
    )


# S3: a real S3-compatible server on loopback (the `s3` fixture); the stage runs as a user runs it.

ROWS_CSV = CORPUS / "utf8_bom.csv"


def test_an_s3_prefix_with_no_data_files_is_one_line(s3, tmp_path):
    for key in ("data/_SUCCESS", "data/.keep"):
        s3.put_object(Bucket="bucket", Key=key, Body=b"")
    assert_one_line_error(
        preprocess("s3://bucket/data", tmp_path / "out"),
        "s3://bucket/data: no data files there (only '.keep', '_SUCCESS', which are skipped (hidden, underscore or folder markers))",
    )


def test_s3_folder_markers_are_not_read_as_files(s3, tmp_path):
    """The empty keys ending in `/` that S3 consoles make for folders: skipped, whether listed or not."""
    for key in ("data/", "data/shards/"):
        s3.put_object(Bucket="bucket", Key=key, Body=b"")
    s3.upload_file(str(ROWS_CSV), "bucket", "data/shards/reviews.csv")
    for uri in ("s3://bucket/data", "s3://bucket/data/"):
        out = tmp_path / uri[-1].replace("/", "slash")
        succeeded(preprocess(uri, out))
        stats, _ = quarantined(out)
        assert stats["rows_in"] == 18 and stats["rows_rejected"] == 0


def test_an_s3_prefix_of_folder_markers_only_is_one_line(s3, tmp_path):
    for key in ("data/", "data/empty/"):
        s3.put_object(Bucket="bucket", Key=key, Body=b"")
    result = preprocess("s3://bucket/data", tmp_path / "out")
    assert_one_line_error_like(result, re.escape("s3://bucket/data: no data files there (") + r"[^\n]+\)")


def test_an_s3_key_with_dot_dot_cannot_escape_the_scratch_folder(s3, tmp_path):
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    s3.upload_file(str(ROWS_CSV), "bucket", "data/a.csv")
    s3.upload_file(str(ROWS_CSV), "bucket", "data/../escaped.csv")
    result = preprocess("s3://bucket/data", tmp_path / "out", env={"TMPDIR": str(scratch_parent)})
    assert_one_line_error(
        result, "s3://bucket/data/../escaped.csv: refusing the file name '../escaped.csv': it is not a plain path inside its folder"
    )
    assert not (scratch_parent / "escaped.csv").exists()


ACCESS_DENIED = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


class DenyingHandler(Handler):
    """Answers 403 AccessDenied for one key, as a bucket policy that denies it would; passes the rest."""

    denied = "/bucket/data/b.csv"

    def handle_any(self) -> None:
        if self.path.split("?")[0] == self.denied:
            self.read_body()
            return self.answer(403, [("Content-Type", "application/xml")], ACCESS_DENIED)
        return super().handle_any()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def test_access_denied_halfway_through_an_s3_folder_is_one_line_naming_the_key(s3, s3_server, tmp_path):
    for name in ("a.csv", "b.csv", "c.csv"):
        s3.upload_file(str(ROWS_CSV), "bucket", f"data/{name}")
    proxy = FaultProxy(s3_server, rates={})
    proxy.RequestHandlerClass = DenyingHandler
    try:
        result = preprocess("s3://bucket/data", tmp_path / "out", env={"AWS_ENDPOINT_URL": proxy.url})
    finally:
        proxy.stop()
    assert_one_line_error(
        result, "s3://bucket/data/b.csv: access denied (403); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket policy"
    )


def test_folder_markers_are_skipped_even_where_a_listing_returns_them(monkeypatch):
    """readers does not rely on storage.list_files dropping markers: a listing that keeps them
    (as S3's own does) gives the same files, and the markers are noted, not read."""
    from components.lib import storage
    from components.lib.data import readers

    listing = {"": 0, "shards/": 0, "shards/reviews.csv": 10, "_SUCCESS": 0}
    monkeypatch.setattr(storage, "list_files", lambda uri: listing)
    monkeypatch.setattr(storage, "exists", lambda uri: uri == "s3://bucket/data/")
    notes: list[str] = []
    assert readers.locate_files("s3://bucket/data/", notes) == {"shards/reviews.csv": "s3://bucket/data/shards/reviews.csv"}
    assert notes == [
        "s3://bucket/data/: skipped 3 entries that are not data files (hidden, underscore or folder markers): '/', 'shards/', '_SUCCESS'"
    ]
