"""Multi-label input: one 0/1 column per label (`label_columns`), read instead of one label column.

A record's label is the names of its columns that hold 1, joined by `MULTI_LABEL_JOIN` in the order
the columns were given; all zeros give "" (what to do with an empty label set is preprocess's
business). A value that is not 0 or 1, or none at all, makes the record a `SourceReject`
("label_not_binary") naming the column and the value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from components.lib.data.readers.common import RAW_TEXT_KEPT, SourceBatch, SourceReject
from components.lib.errors import UserError

MULTI_LABEL_JOIN = "|"
LABEL_NOT_BINARY = "label_not_binary"
NO_VALUE = object()  # a JSON record without the field at all
# "1.0" and "0.0": how pandas writes a float column (one with a missing value) to CSV
BINARY_WORDS = {"1": True, "0": False, "1.0": True, "0.0": False, "true": True, "false": False}
SHOWN_CHARS = 60


def check_label_columns(text_column: str, label_columns: Sequence[str]) -> None:
    """Refuse a column named twice, or the text column among the label columns, in one line."""
    if isinstance(label_columns, str):  # a bug of ours (a str iterates as characters), not the user's
        raise TypeError(f"label_columns must be a tuple of names, not the string {label_columns!r}")
    seen = set()
    for column in label_columns:
        if not column:
            raise UserError("--label_columns: an empty column name; give names separated by commas")
        if column in seen:
            raise UserError(f"--label_columns: {column!r} is named twice")
        if column == text_column:
            raise UserError(f"--label_columns: {column!r} is the text column (--text_column)")
        seen.add(column)


def binary_value(value, encoding: str = "utf-8") -> bool | None:
    """True for 1, 1.0, True, "1", " TRUE "; False for 0, 0.0, False, "0", "false"; None for anything else."""
    if isinstance(value, bytes):  # CSV and TSV cells, in the file's encoding
        value = value.decode(encoding, "replace")
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return {1.0: True, 0.0: False}.get(value)  # 1 == 1.0; NaN and 2 are neither
    if isinstance(value, str):
        return BINARY_WORDS.get(value.strip().lower())
    return None


def shown(value, encoding: str = "utf-8") -> str:
    """A value as a reject's detail names it: '2' for a string, 2 for a number, null, no value."""
    if value is NO_VALUE:
        return "no value"
    if value is None:
        return "null"
    if isinstance(value, bytes):
        value = value.decode(encoding, "replace")
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def joined_label(label_columns: Sequence[str], values: Sequence, encoding: str = "utf-8") -> tuple[str | None, str]:
    """(the joined names of the columns holding 1, "") or (None, the detail of the first value that is not 0 or 1)."""
    chosen = []
    for column, value in zip(label_columns, values, strict=True):
        flag = binary_value(value, encoding)
        if flag is None:
            return None, f"column {column!r} holds {shown(value, encoding)}; each --label_columns column must be 0 or 1"
        if flag:
            chosen.append(column)
    return MULTI_LABEL_JOIN.join(chosen), ""


def with_joined_labels(
    batch: SourceBatch, label_columns: Sequence[str], columns: Sequence[list], encoding: str = "utf-8"
) -> Iterator[SourceBatch | SourceReject]:
    """`batch` (its positions and texts; no labels yet) labelled from `columns`, one list of values per
    label column: a reject for each row with a value not 0 or 1, then the batch of the other rows."""
    kept = SourceBatch(batch.source, batch.split, encoding=batch.encoding)
    for position, text, *values in zip(batch.positions, batch.texts, *columns, strict=True):
        label, detail = joined_label(label_columns, values, encoding)
        if label is None:
            raw = text.decode(encoding, "replace") if isinstance(text, bytes) else text or ""
            yield SourceReject(batch.source, position, LABEL_NOT_BINARY, detail, raw[:RAW_TEXT_KEPT])
            continue
        kept.positions.append(position)
        kept.texts.append(text)
        kept.labels.append(label)
    yield kept
