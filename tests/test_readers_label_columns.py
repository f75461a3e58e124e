"""Multi-label input, one 0/1 column per label (`label_columns`): each record's label is the names of
its columns holding 1, joined by MULTI_LABEL_JOIN in the order given ("" for all zeros); a value that
is not 0 or 1 is a `label_not_binary` reject; a column the file lacks is a one-line UserError."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.lib.data.readers import MULTI_LABEL_JOIN, SourceBatch, SourceReject, open_source, read_source
from components.lib.errors import UserError

NOT_BINARY = "each --label_columns column must be 0 or 1"


def read(path: Path, label_columns: tuple[str, ...], label_column: str = "label") -> tuple[dict[str, object], list[SourceReject]]:
    """({position: label}, rejects) of every record of `path`; every record comes out as one or the other."""
    labels, rejects = {}, []
    with open_source(str(path)) as source:
        for record in read_source(source, "text", label_column, "", "utf-8", label_columns=label_columns):
            if isinstance(record, SourceBatch):
                assert len(record.positions) == len(record.texts) == len(record.labels)
                labels.update(zip(record.positions, record.labels))
            else:
                rejects.append(record)
    return labels, rejects


def test_the_join_is_a_bar():
    assert MULTI_LABEL_JOIN == "|"


def test_csv_labels_are_the_columns_holding_one_in_the_order_given(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_text(
        "text,toxic,insult,threat\n"
        "you fool,1,1,0\n"  # record 1
        "nice day,0,0,0\n"  # record 2: no label at all
        "or else,true,0,TRUE\n"  # record 3: words, any case
        '"spaced, quoted", 1 ,False, 0\n'  # record 4: spaces around the values
    )
    labels, rejects = read(path, ("threat", "toxic", "insult"))  # --label_column's default "label" is not in the file: ignored
    assert rejects == []
    assert labels == {"record 1": "toxic|insult", "record 2": "", "record 3": "threat|toxic", "record 4": "toxic"}


def test_a_csv_value_not_zero_or_one_is_a_reject_naming_the_column_and_the_value(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_text("text,toxic,insult\nfine,0,0\nyou fool,1,2\nempty cell,1,\nhalf,0.5,0\n")
    labels, rejects = read(path, ("toxic", "insult"))
    assert labels == {"record 1": ""}
    assert [(reject.position, reject.reason, reject.detail, reject.raw) for reject in rejects] == [
        ("record 2", "label_not_binary", f"column 'insult' holds '2'; {NOT_BINARY}", "you fool"),
        ("record 3", "label_not_binary", f"column 'insult' holds ''; {NOT_BINARY}", "empty cell"),
        ("record 4", "label_not_binary", f"column 'toxic' holds '0.5'; {NOT_BINARY}", "half"),
    ]
    assert all(reject.source == "comments.csv" for reject in rejects)


def test_jsonl_takes_numbers_booleans_and_strings_and_rejects_the_rest(tmp_path):
    records = [
        {"text": "a", "toxic": 1, "insult": 0.0},
        {"text": "b", "toxic": True, "insult": " True "},
        {"text": "c", "toxic": "0", "insult": False},
        {"text": "d", "toxic": 1.0, "insult": 2},
        {"text": "e", "toxic": None, "insult": 1},
        {"text": "f", "insult": 1},
        {"text": "g", "toxic": [1], "insult": 1},
    ]
    path = tmp_path / "comments.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    labels, rejects = read(path, ("toxic", "insult"))
    assert labels == {"line 1": "toxic", "line 2": "toxic|insult", "line 3": ""}
    assert [(reject.position, reject.reason, reject.detail) for reject in rejects] == [
        ("line 4", "label_not_binary", f"column 'insult' holds 2; {NOT_BINARY}"),
        ("line 5", "label_not_binary", f"column 'toxic' holds null; {NOT_BINARY}"),
        ("line 6", "label_not_binary", f"column 'toxic' holds no value; {NOT_BINARY}"),
        ("line 7", "label_not_binary", f"column 'toxic' holds [1]; {NOT_BINARY}"),
    ]
    assert json.loads(rejects[0].raw) == records[3]  # the record's line, as other JSON rejects keep it


def test_a_json_array_reads_the_same_way(tmp_path):
    path = tmp_path / "comments.json"
    path.write_text(json.dumps([{"text": "a", "toxic": 1, "insult": 1}, {"text": "b", "toxic": 0, "insult": "yes"}]))
    labels, rejects = read(path, ("toxic", "insult"))
    assert labels == {"element 1": "toxic|insult"}
    assert [(reject.position, reject.detail) for reject in rejects] == [("element 2", f"column 'insult' holds 'yes'; {NOT_BINARY}")]


def test_parquet_takes_integer_boolean_float_and_string_columns(tmp_path):
    path = tmp_path / "comments.parquet"
    table = pa.table(
        {
            "text": ["a", "b", "c", "d", "e"],
            "toxic": pa.array([1, 0, 0, 1, 1], pa.int64()),
            "insult": pa.array([True, False, True, None, False], pa.bool_()),
            "threat": pa.array([1.0, 0.0, 0.0, 0.0, float("nan")], pa.float64()),
            "spam": ["0", "0", "true", "1", "0"],
        }
    )
    pq.write_table(table, path)
    labels, rejects = read(path, ("toxic", "insult", "threat", "spam"))
    assert labels == {"row 1": "toxic|insult|threat", "row 2": "", "row 3": "insult|spam"}
    assert [(reject.position, reject.reason, reject.detail, reject.raw) for reject in rejects] == [
        ("row 4", "label_not_binary", f"column 'insult' holds null; {NOT_BINARY}", "d"),
        ("row 5", "label_not_binary", f"column 'threat' holds nan; {NOT_BINARY}", "e"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_label_column_missing_from_the_file_is_one_line_naming_the_flag(tmp_path, suffix):
    path = tmp_path / f"comments{suffix}"
    if suffix == ".csv":
        path.write_text("text,toxic\nyou fool,1\n")
    elif suffix == ".jsonl":
        path.write_text(json.dumps({"text": "you fool", "toxic": 1}) + "\n")
    else:
        pq.write_table(pa.table({"text": ["you fool"], "toxic": [1]}), path)
    with pytest.raises(UserError) as raised:
        read(path, ("toxic", "threat"))
    assert str(raised.value) == f"{path}: no column 'threat' (columns: 'text', 'toxic'); pass --label_columns with the right name"


def test_without_label_columns_the_label_column_is_read_as_before(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_text("text,label,toxic\nyou fool,negative,2\n")
    labels, rejects = read(path, ())
    assert rejects == [] and labels == {"record 1": b"negative"}


@pytest.mark.parametrize(
    ("label_columns", "expected"),
    [
        (("toxic", "toxic"), "--label_columns: 'toxic' is named twice"),
        (("toxic", "text"), "--label_columns: 'text' is the text column (--text_column)"),
        (("toxic", ""), "--label_columns: an empty column name; give names separated by commas"),
    ],
)
def test_label_columns_that_cannot_be_read_are_refused_in_one_line(tmp_path, label_columns, expected):
    path = tmp_path / "comments.csv"
    path.write_text("text,toxic\nyou fool,1\n")
    with pytest.raises(UserError, match="^" + expected.replace("(", r"\(").replace(")", r"\)") + "$"):
        read(path, label_columns)


def test_hf_datasets_read_label_columns_too(monkeypatch):
    import datasets

    from components.lib.data.readers import hub

    loaded = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a", "b", "c"], "toxic": [1, 0, 1], "insult": [1, 0, 7]}),
            "unsupervised": datasets.Dataset.from_dict({"text": ["z"], "toxic": [1], "insult": [1]}),  # not a split: skipped
        }
    )
    monkeypatch.setattr(hub, "offline_unless_hub_answers", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config: loaded)
    records = list(hub.read_hf_dataset("comments", "text", "label", label_columns=("toxic", "insult")))
    batches = [record for record in records if isinstance(record, SourceBatch)]
    rejects = [record for record in records if isinstance(record, SourceReject)]
    assert [(batch.source, batch.split, batch.positions, batch.labels) for batch in batches] == [
        ("hf://comments/train", "train", ["row 1", "row 2"], ["toxic|insult", ""])
    ]
    assert [(reject.position, reject.detail) for reject in rejects] == [("row 3", f"column 'insult' holds 7; {NOT_BINARY}")]
