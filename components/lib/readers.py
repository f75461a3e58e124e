"""Raw data sources for preprocess: CSV, TSV, JSON, JSON Lines, Parquet, folders of shards, hf:// ids.

Every reader yields `SourceBatch`es of raw (text, label) pairs, plus a `SourceReject` for each
record it could not parse (a row with too many fields, a broken JSON line). Nothing is dropped
here: each record read comes out as one or the other.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from components.lib import storage
from components.lib.errors import UserError

HF_SCHEME = "hf://"
SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
BATCH_ROWS = 8192
RAW_TEXT_KEPT = 10_000

RawValue = bytes | str | None


@dataclass
class SourceBatch:
    source: str
    split: str | None
    positions: list[str] = field(default_factory=list)
    texts: list[RawValue] = field(default_factory=list)
    labels: list[RawValue] = field(default_factory=list)


@dataclass
class SourceReject:
    source: str
    position: str
    reason: str
    detail: str
    raw: str = ""


@dataclass
class SourceFile:
    path: Path  # the local copy
    name: str  # relative to the input URI: what rejects.parquet records as the source
    format: str
    split: str | None = None
    uri: str = ""  # where it really lives: what error messages name


@dataclass
class Source:
    """The files of one input URI, fetched locally, with the split each belongs to (if named)."""

    uri: str
    files: list[SourceFile] = field(default_factory=list)
    hf_id: str = ""

    @property
    def has_named_splits(self) -> bool:
        return bool(self.hf_id) or any(item.split for item in self.files)


def file_format(name: str) -> str | None:
    lowered = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        lowered = lowered.removesuffix(suffix)
    return FORMATS.get(Path(lowered).suffix)


def split_from_name(name: str) -> str | None:
    """`drugsComTrain.tsv` -> train, `dev-00001.jsonl` -> validation, `reviews.csv` -> None."""
    stem = Path(name).name.split(".")[0]
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", stem)
    found = {SPLIT_WORDS[word.lower()] for word in words if word.lower() in SPLIT_WORDS}
    return found.pop() if len(found) == 1 else None


@contextlib.contextmanager
def open_source(uri: str) -> Iterator[Source]:
    """Fetch `uri` (a file or a folder of shards, local or on S3) and describe its files."""
    if uri.startswith(HF_SCHEME):
        yield Source(uri=uri, hf_id=uri[len(HF_SCHEME) :])
        return
    located = locate_files(uri)
    unsupported = [name for name in located if file_format(name) is None]
    if unsupported:
        raise UserError(
            f"{located[unsupported[0]]}: unsupported file type; use CSV, TSV, JSON, JSON Lines or"
            " Parquet (optionally compressed: .gz, .bz2, .zst, .lz4)"
        )
    with contextlib.ExitStack() as stack:
        if storage.is_s3(uri):
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="source-")))
            local = {name: scratch / name for name in located}
            for name, remote in located.items():
                storage.download_file(remote, local[name])
        else:
            local = {name: Path(path) for name, path in located.items()}
        files = [SourceFile(local[name], name, file_format(name), split_from_name(name), located[name]) for name in sorted(local)]
        if any(item.split for item in files) and not all(item.split for item in files):
            unnamed = next(item.name for item in files if not item.split)
            raise UserError(
                f"{located[unnamed]}: some files name a split (train/validation/test) and this one"
                " does not; rename it or give it its own input"
            )
        yield Source(uri=uri, files=files)


def locate_files(uri: str) -> dict[str, str]:
    """{name: URI} of the data files at `uri`: itself if it is a file, else the files under it."""
    if storage.is_s3(uri):
        is_single_file = storage.exists(uri)
    else:
        if not Path(uri).exists():
            raise UserError(f"{uri}: no such file or folder")
        is_single_file = Path(uri).is_file()
    if is_single_file:
        return {uri.rstrip("/").rsplit("/", 1)[-1]: uri}
    located = {
        name: storage.join(uri, name)
        for name in storage.list_files(uri)
        if not any(part.startswith((".", "_")) for part in Path(name).parts)
    }
    if not located:
        raise UserError(f"{uri}: no data files there (no such object, or an empty folder or prefix)")
    return located


def read_source(source: Source, text_column: str, label_column: str, delimiter: str, encoding: str) -> Iterator[SourceBatch | SourceReject]:
    """Every record of `source`, in a fixed order: files by name, records in file order.

    CSV and TSV texts come out as bytes, decoded later with `encoding` row by row, so one
    undecodable row is quarantined rather than failing the file; JSON lines are decoded here.
    """
    if source.hf_id:
        yield from read_hf_dataset(source.hf_id, text_column, label_column)
        return
    for item in source.files:
        if item.format in ("csv", "tsv"):
            separator = delimiter or ("\t" if item.format == "tsv" else ",")
            yield from read_delimited(item, text_column, label_column, separator)
        elif item.format == "parquet":
            yield from read_parquet(item, text_column, label_column)
        else:
            yield from read_json(item, text_column, label_column, encoding, whole_array=item.format == "json")


def missing_column_error(item: SourceFile, column: str, flag: str, present: list[str]) -> UserError:
    shown = ", ".join(repr(name) for name in present[:12]) or "none"
    return UserError(f"{item.uri}: no column {column!r} (columns: {shown}); pass --{flag} with the right name")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def read_delimited(item: SourceFile, text_column: str, label_column: str, delimiter: str) -> Iterator[SourceBatch | SourceReject]:
    import pyarrow.csv as pacsv

    malformed: list[SourceReject] = []
    records_read = 0

    def on_invalid_row(row) -> str:
        position = f"line {row.number}" if row.number is not None and row.number > 0 else f"after record {records_read}"
        detail = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        malformed.append(SourceReject(item.name, position, "malformed_row", detail, row.text[:RAW_TEXT_KEPT]))
        return "skip"

    header = read_csv_header(item, delimiter)
    for column, flag in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in header:
            raise missing_column_error(item, column, flag, header)
    reader = pacsv.open_csv(
        pa.input_stream(str(item.path), compression="detect"),
        read_options=pacsv.ReadOptions(block_size=1 << 22),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid_row),
        convert_options=pacsv.ConvertOptions(
            include_columns=[text_column, label_column],
            column_types={text_column: pa.binary(), label_column: pa.binary()},
        ),
    )
    try:
        for batch in reader:
            yield from malformed
            malformed.clear()
            positions = [f"record {records_read + index + 1}" for index in range(batch.num_rows)]
            records_read += batch.num_rows
            yield SourceBatch(
                item.name, item.split, positions, batch.column(text_column).to_pylist(), batch.column(label_column).to_pylist()
            )
    except pa.ArrowInvalid as error:
        raise UserError(f"{item.uri}: cannot parse after record {records_read}: {first_line(error)}") from None
    yield from malformed


def read_csv_header(item: SourceFile, delimiter: str) -> list[str]:
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            pa.input_stream(str(item.path), compression="detect"),
            read_options=pacsv.ReadOptions(block_size=1 << 16),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda row: "skip"),
            convert_options=pacsv.ConvertOptions(check_utf8=False),
        )
    except pa.ArrowInvalid as error:
        if "Empty CSV file" in str(error):
            raise UserError(f"{item.uri}: the file is empty; it needs a header row and data rows") from None
        raise UserError(f"{item.uri}: cannot read as {item.format.upper()}: {first_line(error)}") from None
    return reader.schema.names


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


def check_record_columns(item: SourceFile, record: dict, text_column: str, label_column: str) -> None:
    for column, flag in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in record:
            raise missing_column_error(item, column, flag, list(record))


def append_record(batch: SourceBatch, position: str, record: dict, text_column: str, label_column: str) -> None:
    text, label = record.get(text_column), record.get(label_column)
    batch.positions.append(position)
    batch.texts.append(text if text is None or isinstance(text, str) else json.dumps(text))
    batch.labels.append(None if label is None else format_label(label))


def read_json(
    item: SourceFile, text_column: str, label_column: str, encoding: str, whole_array: bool
) -> Iterator[SourceBatch | SourceReject]:
    """JSON Lines; or, for a `.json` file that starts with `[`, a JSON array of objects."""
    with pa.input_stream(str(item.path), compression="detect") as stream:
        head = stream.read(4096).lstrip()
    if not head:
        raise UserError(f"{item.uri}: the file is empty; it needs records")
    if whole_array and head.startswith(b"["):
        yield from read_json_array(item, text_column, label_column, encoding)
    else:
        yield from read_json_lines(item, text_column, label_column, encoding)


def read_json_lines(item: SourceFile, text_column: str, label_column: str, encoding: str) -> Iterator[SourceBatch | SourceReject]:
    batch = SourceBatch(item.name, item.split)
    with pa.input_stream(str(item.path), compression="detect") as stream:
        for number, raw_line in enumerate_lines(stream):
            if not raw_line.strip():
                continue
            position = f"line {number}"
            try:
                record = json.loads(raw_line.decode(encoding))
            except UnicodeDecodeError as error:
                detail = f"not valid {encoding}: {error.reason} at byte {error.start}"
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
            if not batch.positions:
                check_record_columns(item, record, text_column, label_column)
            append_record(batch, position, record, text_column, label_column)
            if len(batch.positions) >= BATCH_ROWS:
                yield batch
                batch = SourceBatch(item.name, item.split)
    if batch.positions:
        yield batch


def read_json_array(item: SourceFile, text_column: str, label_column: str, encoding: str) -> Iterator[SourceBatch | SourceReject]:
    with pa.input_stream(str(item.path), compression="detect") as stream:
        try:
            records = json.loads(stream.read().decode(encoding))
        except (ValueError, UnicodeDecodeError) as error:
            raise UserError(f"{item.uri}: not valid JSON in {encoding}: {first_line(error)}") from None
    batch = SourceBatch(item.name, item.split)
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            yield SourceReject(item.name, f"element {index}", "malformed_json", "not a JSON object", json.dumps(record)[:RAW_TEXT_KEPT])
            continue
        if not batch.positions:
            check_record_columns(item, record, text_column, label_column)
        append_record(batch, f"element {index}", record, text_column, label_column)
    if batch.positions:
        yield batch


def read_parquet(item: SourceFile, text_column: str, label_column: str) -> Iterator[SourceBatch | SourceReject]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(str(item.path))
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{item.uri}: not a readable Parquet file: {first_line(error)}") from None
    schema = parquet.schema_arrow
    for column, flag in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in schema.names:
            raise missing_column_error(item, column, flag, schema.names)
    text_type = schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_binary(text_type)):
        raise UserError(f"{item.uri}: column {text_column!r} has type {text_type}; the text column must hold strings")
    label_type = schema.field(label_column).type
    if pa.types.is_nested(label_type) or pa.types.is_binary(label_type):
        raise UserError(f"{item.uri}: column {label_column!r} has type {label_type}; labels must be strings or numbers")
    rows_read = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=[text_column, label_column]):
        labels = [None if value is None else format_label(value) for value in batch.column(label_column).to_pylist()]
        positions = [f"row {rows_read + index + 1}" for index in range(batch.num_rows)]
        rows_read += batch.num_rows
        yield SourceBatch(item.name, item.split, positions, batch.column(text_column).to_pylist(), labels)


def format_label(value) -> str:
    """`7.0` -> "7", so numeric labels read the same from Parquet, JSON and CSV."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_hf_dataset(hf_id: str, text_column: str, label_column: str) -> Iterator[SourceBatch | SourceReject]:
    name, _, config = hf_id.partition(":")
    try:
        import datasets
    except ImportError:
        raise UserError("hf:// inputs need the 'datasets' package: pip install datasets") from None
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as error:  # the hub client raises many types; each means "could not load"
        raise UserError(
            f"hf://{hf_id}: cannot load it from the Hugging Face Hub ({type(error).__name__}:"
            f" {first_line(error)[:160]}); check the id and the network, or download it and pass a path"
        ) from None
    for split_name, dataset in loaded.items():
        split = SPLIT_WORDS.get(split_name.lower())
        if split is None:
            continue
        source = f"hf://{hf_id}/{split_name}"
        for column, flag in ((text_column, "text_column"), (label_column, "label_column")):
            if column not in dataset.column_names:
                shown = ", ".join(dataset.column_names)
                raise UserError(f"{source}: no column {column!r} (columns: {shown}); pass --{flag} with the right name")
        class_names = getattr(dataset.features[label_column], "names", None)
        rows_read = 0
        for table in dataset.data.to_batches(max_chunksize=BATCH_ROWS):
            texts = table.column(text_column).to_pylist()
            labels = [
                None if value is None else class_names[value] if class_names else format_label(value)
                for value in table.column(label_column).to_pylist()
            ]
            positions = [f"row {rows_read + index + 1}" for index in range(len(texts))]
            rows_read += len(texts)
            yield SourceBatch(source, split, positions, texts, labels)
