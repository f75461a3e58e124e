"""Parquet."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from components.lib.data.readers.common import (
    BATCH_ROWS,
    RawValue,
    SourceBatch,
    SourceFile,
    SourceReject,
    check_slice_columns,
    first_line,
    format_label,
    missing_column_error,
    wanted_columns,
)
from components.lib.data.readers.multi_label import with_joined_labels
from components.lib.data.readers.sniff import READ_ERRORS
from components.lib.errors import UserError


def read_parquet(
    item: SourceFile, text_column: str, label_column: str, *, label_columns: tuple[str, ...] = (), slice_columns: tuple[str, ...] = ()
) -> Iterator[SourceBatch | SourceReject]:
    """With `label_columns`, each of those columns (numbers, booleans or strings) must hold 0 or 1 (multi_label.py)."""
    import pyarrow.parquet as pq

    if item.path.stat().st_size == 0:
        raise UserError(f"{item.uri}: the file is empty (0 bytes), not Parquet; write or download it again")
    try:
        parquet = pq.ParquetFile(str(item.path))
    except READ_ERRORS as error:
        raise UserError(f"{item.uri}: not a readable Parquet file: {first_line(error)}") from None
    schema = parquet.schema_arrow
    wanted = wanted_columns(text_column, label_column, label_columns)
    for column, flag in wanted:
        if column not in schema.names:
            raise missing_column_error(item, column, flag, schema.names)
    check_slice_columns(item, slice_columns, schema.names)
    text_type = schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_binary(text_type)):
        raise UserError(f"{item.uri}: column {text_column!r} has type {text_type}; the text column must hold strings")
    for column, flag in wanted[1:]:
        label_type = schema.field(column).type
        if pa.types.is_nested(label_type) or pa.types.is_binary(label_type):
            must = "labels must be strings or numbers" if flag == "label_column" else "each --label_columns column must hold 0 or 1"
            raise UserError(f"{item.uri}: column {column!r} has type {label_type}; {must}")
    rows_read = 0
    try:
        columns = list(dict.fromkeys([column for column, _ in wanted] + list(slice_columns)))
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            if label_columns:
                positions = [f"row {rows_read + index + 1}" for index in range(batch.num_rows)]
                rows_read += batch.num_rows
                texts = SourceBatch(item.name, item.split, positions, batch.column(text_column).to_pylist())
                yield from with_joined_labels(texts, label_columns, [batch.column(column).to_pylist() for column in label_columns])
                continue
            raw_labels = batch.column(label_column).to_pylist() if label_column else [None] * batch.num_rows
            labels: list[RawValue] = [None if value is None else format_label(value) for value in raw_labels]
            positions = [f"row {rows_read + index + 1}" for index in range(batch.num_rows)]
            rows_read += batch.num_rows
            slices = {column: batch.column(column).to_pylist() for column in slice_columns}
            yield SourceBatch(item.name, item.split, positions, batch.column(text_column).to_pylist(), labels, slices=slices)
    except READ_ERRORS as error:
        raise UserError(
            f"{item.uri}: the Parquet data is corrupt after row {rows_read} ({first_line(error)}); write or download the file again"
        ) from None
