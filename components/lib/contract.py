"""The data contract between stages: file names and Parquet schemas.

preprocess writes `<split>.parquet` with `CLEAN_SCHEMA`; tokenize writes `<split>.parquet` with
`TOKENIZED_SCHEMA` and the tokenizer files under `tokenizer/`. Both folders carry `labels.json`.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.errors import UserError

SPLITS = ("train", "validation", "test")
STATS_FILE = "stats.json"
REJECTS_FILE = "rejects.parquet"
TOKENIZER_DIR = "tokenizer"

CLEAN_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("label", pa.int32()),
        ("source_row", pa.string()),
    ]
)

TOKENIZED_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("label", pa.int32()),
        ("input_ids", pa.list_(pa.int32())),
        ("length", pa.int32()),
        ("source_row", pa.string()),
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("position", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("text", pa.string()),
        ("label", pa.string()),
    ]
)


def split_file(folder: Path, split: str) -> Path:
    return folder / f"{split}.parquet"


def open_split(folder: Path, split: str, schema: pa.Schema) -> pq.ParquetFile:
    """Open one split and check that it has the columns and types the contract promises."""
    path = split_file(folder, split)
    if not path.is_file():
        raise UserError(f"{path}: missing; the input folder must come from the stage before this one")
    parquet = pq.ParquetFile(path)
    found = parquet.schema_arrow
    for expected in schema:
        if expected.name not in found.names or not found.field(expected.name).type.equals(expected.type):
            raise UserError(
                f"{path}: column {expected.name!r} should be {expected.type}; the file does not come from this pipeline's previous stage"
            )
    return parquet


def read_split(folder: Path, split: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    return open_split(folder, split, schema).read(columns=columns)
