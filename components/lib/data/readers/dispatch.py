"""`read_source`: every record of a `Source`, each file read by the reader of its format."""

from __future__ import annotations

from collections.abc import Iterator

from components.lib.data.readers.common import Source, SourceBatch, SourceReject
from components.lib.data.readers.delimited import read_delimited
from components.lib.data.readers.documents import read_document
from components.lib.data.readers.hub import read_hf_dataset
from components.lib.data.readers.json_records import read_json
from components.lib.data.readers.multi_label import check_label_columns
from components.lib.data.readers.parquet import read_parquet


def read_source(
    source: Source,
    text_column: str,
    label_column: str,
    delimiter: str,
    encoding: str,
    document_unit: str = "file",
    *,
    label_columns: tuple[str, ...] = (),
    slice_columns: tuple[str, ...] = (),
) -> Iterator[SourceBatch | SourceReject]:
    """Every record of `source`, in a fixed order: files by name, records in file order.

    An empty `label_column` reads unlabelled data (components.predict): every label is None. A .txt
    file (an unlabelled corpus) is one document, or with `document_unit` "paragraph" one per paragraph.

    Non-empty `label_columns` (one 0/1 column per label) replace `label_column`: each label is the
    names of the columns holding 1, joined by MULTI_LABEL_JOIN, "" where all hold 0 (multi_label.py).

    `slice_columns` are read as well, a value per row in `SourceBatch.slices` (single-label data only).

    CSV and TSV texts come out as bytes, decoded later (with `SourceBatch.encoding`) row by row,
    so one undecodable row is quarantined rather than failing the file; JSON lines are decoded here.
    """
    check_label_columns(text_column, label_columns)
    if source.hf_id:
        yield from read_hf_dataset(source.hf_id, text_column, label_column, label_columns=label_columns, slice_columns=slice_columns)
        return
    for item in source.files:
        if item.format in ("csv", "tsv"):
            separator = delimiter or ("\t" if item.format == "tsv" else ",")
            yield from read_delimited(
                item, text_column, label_column, separator, encoding, label_columns=label_columns, slice_columns=slice_columns
            )
        elif item.format == "parquet":
            yield from read_parquet(item, text_column, label_column, label_columns=label_columns, slice_columns=slice_columns)
        elif item.format == "txt":
            yield from read_document(item, encoding, document_unit)
        else:
            columns = (text_column, label_column, label_columns, slice_columns)
            yield from read_json(item, columns, encoding, whole_array=item.format == "json")
