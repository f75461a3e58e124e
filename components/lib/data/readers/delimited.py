"""CSV and TSV."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa

from components.lib.data.readers.common import (
    RAW_TEXT_KEPT,
    SourceBatch,
    SourceFile,
    SourceReject,
    check_slice_columns,
    missing_column_error,
    wanted_columns,
)
from components.lib.data.readers.multi_label import with_joined_labels
from components.lib.data.readers.sniff import READ_ERRORS, TextLayout, encoding_hint, open_text, read_error, text_layout
from components.lib.errors import UserError


def read_delimited(
    item: SourceFile,
    text_column: str,
    label_column: str,
    delimiter: str,
    encoding: str,
    *,
    label_columns: tuple[str, ...] = (),
    slice_columns: tuple[str, ...] = (),
) -> Iterator[SourceBatch | SourceReject]:
    """The header row is read as bytes like the rest, so a header in cp1252 works with --encoding cp1252.

    With `label_columns`, each cell of those columns is decoded and must be 0 or 1 (multi_label.py)."""
    import pyarrow.csv as pacsv

    malformed: list[SourceReject] = []
    records_read = 0
    layout = text_layout(item, encoding)
    lines = LineFinder(item, layout)

    def on_invalid_row(row) -> str:
        number = row.number if row.number is not None and row.number > 0 else lines.find(row.text)
        position = f"line {number}" if number else f"after record {records_read}"
        detail = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        malformed.append(SourceReject(item.name, position, "malformed_row", detail, row.text[:RAW_TEXT_KEPT]))
        return "skip"

    header = read_csv_header(item, delimiter, layout)
    wanted = wanted_columns(text_column, label_column, label_columns)
    for column, flag in wanted:
        if column not in header:
            raise missing_column_error(item, column, flag, header)
    check_slice_columns(item, slice_columns, header)
    fields = [f"f{header.index(column)}" for column, _ in wanted]
    slice_fields = {column: f"f{header.index(column)}" for column in slice_columns}
    read_fields = list(dict.fromkeys(fields + list(slice_fields.values())))
    text_field = fields[0]
    try:
        reader = pacsv.open_csv(
            open_text(item, layout),
            read_options=pacsv.ReadOptions(block_size=1 << 22, autogenerate_column_names=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                include_columns=read_fields,
                column_types=dict.fromkeys(read_fields, pa.binary()),
            ),
        )
        header_pending = True
        for batch in reader:
            if header_pending:
                batch, header_pending = batch.slice(1), False
            yield from malformed
            malformed.clear()
            positions = [f"record {records_read + index + 1}" for index in range(batch.num_rows)]
            records_read += batch.num_rows
            if label_columns:
                texts = SourceBatch(item.name, item.split, positions, batch.column(text_field).to_pylist(), encoding=layout.encoding)
                values = [batch.column(name).to_pylist() for name in fields[1:]]
                yield from with_joined_labels(texts, label_columns, values, layout.encoding)
                continue
            yield SourceBatch(
                item.name,
                item.split,
                positions,
                batch.column(text_field).to_pylist(),
                batch.column(fields[-1]).to_pylist() if label_column else [None] * batch.num_rows,
                layout.encoding,
                {column: batch.column(field).to_pylist() for column, field in slice_fields.items()},
            )
    except READ_ERRORS as error:
        raise read_error(item, error, f"after record {records_read}") from None
    finally:
        lines.close()
    yield from malformed


class LineFinder:
    """The line where a malformed CSV row starts, found by its text.

    pyarrow numbers no row when values may hold newlines (as texts may), and it reports a malformed
    row while it parses a block, before that block's records are counted. So a second reader walks
    the file's lines, forward only: rows asked for in file order cost one extra pass at most, and
    only files with malformed rows pay it. A row not found (its text decoded differently) gets None.
    """

    def __init__(self, item: SourceFile, layout: TextLayout) -> None:
        self.item, self.layout = item, layout
        self.lines: io.BufferedReader | None = None
        self.number = 0

    def find(self, row_text: str) -> int | None:
        first_line = (row_text.splitlines() or [""])[0].encode("utf-8", "replace")
        if self.lines is None:
            self.lines = io.BufferedReader(open_text(self.item, self.layout))
        for line in self.lines:
            self.number += 1
            if line.rstrip(b"\r\n") == first_line:
                return self.number
        return None

    def close(self) -> None:
        if self.lines is not None:
            self.lines.close()


def read_csv_header(item: SourceFile, delimiter: str, layout: TextLayout) -> list[str]:
    """The column names of the first row, decoded with the file's encoding."""
    import pyarrow.csv as pacsv

    def first_rows(convert_options):
        return pacsv.open_csv(
            open_text(item, layout),
            read_options=pacsv.ReadOptions(block_size=1 << 16, autogenerate_column_names=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda row: "skip"),
            convert_options=convert_options,
        )

    try:
        names = first_rows(pacsv.ConvertOptions(check_utf8=False)).schema.names
        batch = first_rows(pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.binary()))).read_next_batch()
    except pa.ArrowInvalid as error:
        if "Empty CSV file" in str(error):
            raise UserError(f"{item.uri}: the file is empty; it needs a header row and data rows") from None
        raise read_error(item, error, "in the header row") from None
    except READ_ERRORS as error:
        raise read_error(item, error, "in the header row") from None
    raw = [batch.column(index)[0].as_py() for index in range(batch.num_columns)]
    try:
        return [name.decode(layout.encoding) for name in raw]
    except UnicodeDecodeError:
        hint = encoding_hint(b"".join(raw), layout.encoding)
        raise UserError(f"{item.uri}: the header row is not valid {layout.encoding}; pass the file's encoding, e.g. {hint}") from None
