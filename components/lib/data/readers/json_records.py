"""JSON Lines, and JSON arrays of objects."""

from __future__ import annotations

import json
from collections.abc import Iterator

from components.lib.data.readers.common import (
    BATCH_ROWS,
    RAW_TEXT_KEPT,
    SourceBatch,
    SourceFile,
    SourceReject,
    check_slice_columns,
    first_line,
    format_label,
    missing_column_error,
    wanted_columns,
)
from components.lib.data.readers.multi_label import LABEL_NOT_BINARY, NO_VALUE, joined_label
from components.lib.data.readers.sniff import READ_ERRORS, TextLayout, encoding_hint, open_text, read_error, text_layout
from components.lib.errors import UserError

# the text column, the label column, the 0/1 label columns (which replace it), the --slice_columns
Columns = tuple[str, str, tuple[str, ...], tuple[str, ...]]


def enumerate_lines(stream) -> Iterator[tuple[int, bytes]]:
    """Lines of a binary stream, numbered from 1, read a block at a time."""
    number, pending = 0, b""
    while block := stream.read(1 << 22):
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            yield number, line
    if pending:
        yield number + 1, pending


def check_record_columns(item: SourceFile, record: dict, columns: Columns) -> None:
    text_column, label_column, label_columns, slice_columns = columns
    for column, flag in wanted_columns(text_column, label_column, label_columns):
        if column not in record:
            raise missing_column_error(item, column, flag, list(record))
    check_slice_columns(item, slice_columns, list(record))


def json_kind(value) -> str:
    return "a JSON object" if isinstance(value, dict) else "a JSON array"


def wrong_type(item: SourceFile, position: str, record: dict, text_column: str, label_column: str | None, raw: str) -> SourceReject | None:
    """An object or array where the text or the label should be: quarantined, never stringified (None: no label to check)."""
    text, label = record.get(text_column), None if label_column is None else record.get(label_column)
    if isinstance(text, dict | list):
        detail = f"the {text_column!r} field is {json_kind(text)}, not text; pass --text_column naming a text field"
        return SourceReject(item.name, position, "text_not_a_string", detail, raw[:RAW_TEXT_KEPT])
    if isinstance(label, dict | list):
        detail = f"the {label_column!r} field is {json_kind(label)}; a label must be a string or a number"
        return SourceReject(item.name, position, "label_not_a_value", detail, raw[:RAW_TEXT_KEPT])
    return None


def append_record(batch: SourceBatch, position: str, text, label: str | None, slices: dict) -> None:
    batch.positions.append(position)
    batch.texts.append(text if text is None or isinstance(text, str) else json.dumps(text))
    batch.labels.append(label)
    for column, value in slices.items():
        batch.slices.setdefault(column, []).append(json.dumps(value) if isinstance(value, dict | list) else value)


def take_record(batch: SourceBatch, item: SourceFile, position: str, record: dict, columns: Columns, raw: str) -> SourceReject | None:
    """Append `record` to `batch`, or return the reject it makes. The first record of a batch must hold
    every column named; with 0/1 label columns the label is the joined names of those holding 1."""
    text_column, label_column, label_columns, slice_columns = columns
    if not batch.positions:
        check_record_columns(item, record, columns)
    if reject := wrong_type(item, position, record, text_column, None if label_columns else label_column, raw):
        return reject
    if label_columns:
        label, detail = joined_label(label_columns, [record.get(column, NO_VALUE) for column in label_columns])
        if label is None:
            return SourceReject(item.name, position, LABEL_NOT_BINARY, detail, raw[:RAW_TEXT_KEPT])
    else:
        value = record.get(label_column)
        label = None if value is None else format_label(value)
    append_record(batch, position, record.get(text_column), label, {column: record.get(column) for column in slice_columns})
    return None


def read_json(item: SourceFile, columns: Columns, encoding: str, whole_array: bool) -> Iterator[SourceBatch | SourceReject]:
    """JSON Lines; or, for a `.json` file that starts with `[`, a JSON array of objects.

    With 0/1 label columns, each of those fields must hold 0 or 1 (a number, a boolean or such a string: multi_label.py)."""
    layout = text_layout(item, encoding)
    try:
        with open_text(item, layout) as stream:
            head = stream.read(4096).lstrip()
    except READ_ERRORS as error:
        raise read_error(item, error) from None
    if not head:
        raise UserError(f"{item.uri}: the file is empty; it needs records")
    try:
        if whole_array and head.startswith(b"["):
            yield from read_json_array(item, columns, layout)
        else:
            yield from read_json_lines(item, columns, layout)
    except READ_ERRORS as error:
        raise read_error(item, error) from None


def read_json_lines(item: SourceFile, columns: Columns, layout: TextLayout) -> Iterator[SourceBatch | SourceReject]:
    encoding = layout.encoding
    batch = SourceBatch(item.name, item.split)
    with open_text(item, layout) as stream:
        for number, raw_line in enumerate_lines(stream):
            if not raw_line.strip():
                continue
            position = f"line {number}"
            try:
                record = json.loads(raw_line.decode(encoding))
            except UnicodeDecodeError as error:
                detail = f"not valid {encoding}: {error.reason} at byte {error.start}; pass --encoding if the file uses another"
                yield SourceReject(item.name, position, "undecodable_text", detail, raw_line[:RAW_TEXT_KEPT].decode(encoding, "replace"))
                continue
            except ValueError as error:
                yield SourceReject(
                    item.name, position, "malformed_json", first_line(error), raw_line[:RAW_TEXT_KEPT].decode(encoding, "replace")
                )
                continue
            if not isinstance(record, dict):
                yield SourceReject(
                    item.name, position, "malformed_json", "not a JSON object", raw_line[:RAW_TEXT_KEPT].decode(encoding, "replace")
                )
                continue
            if reject := take_record(batch, item, position, record, columns, raw_line.decode(encoding, "replace")):
                yield reject
                continue
            if len(batch.positions) >= BATCH_ROWS:
                yield batch
                batch = SourceBatch(item.name, item.split)
    if batch.positions:
        yield batch


def read_json_array(item: SourceFile, columns: Columns, layout: TextLayout) -> Iterator[SourceBatch | SourceReject]:
    encoding = layout.encoding
    with open_text(item, layout) as stream:
        data = stream.read()
    try:
        records = json.loads(data.decode(encoding))
    except UnicodeDecodeError as error:
        hint = encoding_hint(data, encoding)
        raise UserError(
            f"{item.uri}: not valid {encoding} at byte {error.start} ({error.reason}); pass the file's encoding, e.g. {hint}"
        ) from None
    except ValueError as error:
        raise UserError(f"{item.uri}: not valid JSON: {first_line(error)}") from None
    batch = SourceBatch(item.name, item.split)
    for index, record in enumerate(records, start=1):
        position = f"element {index}"
        if not isinstance(record, dict):
            yield SourceReject(item.name, position, "malformed_json", "not a JSON object", json.dumps(record)[:RAW_TEXT_KEPT])
            continue
        if reject := take_record(batch, item, position, record, columns, json.dumps(record)):
            yield reject
    if batch.positions:
        yield batch
