"""Raw data sources for preprocess: CSV, TSV, JSON, JSON Lines, Parquet, folders of shards, hf:// ids;
and, for an unlabelled corpus (`--task causal_lm`), plain-text files, each file one document.

Every reader yields `SourceBatch`es of raw (text, label) pairs, plus a `SourceReject` for each
record it could not parse (a row with too many fields, a broken JSON line, an object where the
text should be). Nothing is dropped here: each record read comes out as one or the other.

Text files are sniffed before they are parsed (`text_layout`): a byte-order mark decides the
encoding (UTF-8, UTF-16 or UTF-32, which are transcoded to UTF-8 on the fly); NUL bytes without
one mean UTF-16 without a mark or binary data, and either ends in one line. A file that cannot be
decompressed or parsed ends in one line naming it, never a traceback.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from components.lib import storage
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.sources import offline_unless_hub_answers
from components.lib.storage.safe_paths import contained

HF_SCHEME = "hf://"
PACKAGE_SCHEME = "package://"  # package://<importable package>/<path>: a data file an installed Python package ships
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
# An unlabelled corpus may also be plain text, each file one document (`open_source(uri, DOCUMENT_FORMATS)`).
DOCUMENT_FORMATS = {**FORMATS, ".txt": "txt"}
WHOLE_FILE = "whole file"  # the position of a document that is a whole file
DOCUMENT_UNITS = ("file", "paragraph")  # what one document of a .txt file is
# A paragraph ends at a line holding nothing but spaces (a no-break space too, as UTF-8); these bytes
# are ASCII or UTF-8, which every encoding a .txt file is read in here keeps them as (UTF-16/32 are
# transcoded to UTF-8 first).
PARAGRAPH_BREAK = re.compile(rb"\r?\n(?:[ \t\f\v]|\xc2\xa0)*\r?\n(?:(?:[ \t\f\v]|\xc2\xa0)*\r?\n)*")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
BATCH_ROWS = 8192
RAW_TEXT_KEPT = 10_000

RawValue = bytes | str | None
SNIFF_BYTES = 1 << 16
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# What other files look like when they are given a text name, by their first bytes.
SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?); export the sheet as CSV"),
    (b"PAR1", "a Parquet file; name it .parquet"),
    (b"\x1f\x8b", "gzip-compressed; add .gz to its name"),
    (b"BZh", "bzip2-compressed; add .bz2 to its name"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; add .zst to its name"),
    (b"\x04\x22\x4d\x18", "lz4-compressed; add .lz4 to its name"),
    (b"%PDF", "a PDF document; export the data as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls (or other Office) file; export the sheet as CSV"),
)
# Bytes that text in an ASCII-compatible encoding does not hold (NUL and the C0 controls other
# than tab, newlines and form feed, and DEL). Random or compressed bytes are about 11% of them,
# text about none: more than 5% of a sample means the file is not text.
CONTROL_BYTES = frozenset(range(0x20)) - frozenset(b"\t\n\r\x0b\x0c\x1b") | {0x7F}
BINARY_SHARE = 0.05


@dataclass
class SourceBatch:
    source: str
    split: str | None
    positions: list[str] = field(default_factory=list)
    texts: list[RawValue] = field(default_factory=list)
    labels: list[RawValue] = field(default_factory=list)
    encoding: str = ""  # of the bytes in `texts` and `labels` ("": the --encoding flag's)


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
    notes: list[str] = field(default_factory=list)  # adjustments made while reading it, logged if the run succeeds


@dataclass
class Source:
    """The files of one input URI, fetched locally, with the split each belongs to (if named)."""

    uri: str
    files: list[SourceFile] = field(default_factory=list)
    hf_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def has_named_splits(self) -> bool:
        return bool(self.hf_id) or any(item.split for item in self.files)

    def all_notes(self) -> list[str]:
        """Every non-fatal adjustment made while finding and reading the files.

        Kept rather than logged as they happen, so that a run that then fails still says one line.
        """
        return self.notes + [note for item in self.files for note in item.notes]


def file_format(name: str, formats: dict[str, str] = FORMATS) -> str | None:
    lowered = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        lowered = lowered.removesuffix(suffix)
    return formats.get(Path(lowered).suffix)


def formats_named(formats: dict[str, str]) -> str:
    """ "CSV, TSV, JSON, JSON Lines or Parquet", as the unsupported-type message lists them."""
    names = ["CSV", "TSV", "JSON", "JSON Lines", "Parquet"]
    if "txt" in formats.values():
        names.append("plain text (.txt, a document a file)")
    return ", ".join(names[:-1]) + " or " + names[-1]


def split_from_name(name: str) -> str | None:
    """`drugsComTrain.tsv` -> train, `dev-00001.jsonl` -> validation, `reviews.csv` -> None."""
    stem = Path(name).name.split(".")[0]
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", stem)
    found = {SPLIT_WORDS[word.lower()] for word in words if word.lower() in SPLIT_WORDS}
    return found.pop() if len(found) == 1 else None


@contextlib.contextmanager
def open_source(uri: str, formats: dict[str, str] = FORMATS) -> Iterator[Source]:
    """Fetch `uri` (a file or a folder of shards, local or on S3) and describe its files, which must be of `formats`."""
    if uri.startswith(HF_SCHEME):
        yield Source(uri=uri, hf_id=uri[len(HF_SCHEME) :])
        return
    notes: list[str] = []
    located = locate_files(uri, notes)
    unsupported = [name for name in located if file_format(name, formats) is None]
    if unsupported:
        raise UserError(
            f"{located[unsupported[0]]}: unsupported file type; use {formats_named(formats)} (optionally compressed: .gz, .bz2, .zst, .lz4)"
        )
    with contextlib.ExitStack() as stack:
        if storage.is_s3(uri):
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="source-")))
            # S3 keys are data, not paths we chose: `..` in one must not write outside the scratch folder.
            local = {name: contained(scratch, name, remote) for name, remote in located.items()}
            for name, remote in located.items():
                storage.download_file(remote, local[name])
        else:
            local = {name: Path(path) for name, path in located.items()}
        files = [SourceFile(local[name], name, file_format(name, formats), split_from_name(name), located[name]) for name in sorted(local)]
        if any(item.split for item in files) and not all(item.split for item in files):
            unnamed = next(item.name for item in files if not item.split)
            raise UserError(
                f"{located[unnamed]}: some files name a split (train/validation/test) and this one"
                " does not; rename it or give it its own input"
            )
        yield Source(uri=uri, files=files, notes=notes)


def installed_data_path(uri: str) -> str:
    """The local path of a `package://package/path` URI, a file or folder inside an installed package; other URIs as given."""
    if not uri.startswith(PACKAGE_SCHEME):
        return uri
    package, _, inside = uri[len(PACKAGE_SCHEME) :].partition("/")
    import importlib.util

    try:
        spec = importlib.util.find_spec(package) if package.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{uri}: no installed Python package {package!r}; install the package that ships this data")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = contained(root, inside, uri)
    if not path.exists():
        raise UserError(f"{uri}: the package {package!r} has no {inside!r}")
    return str(path)


def locate_files(uri: str, notes: list[str]) -> dict[str, str]:
    """{name: URI} of the data files at `uri`: itself if it is a file, else the files under it.

    Skipped, and logged: hidden and underscore files (`.DS_Store`, `_SUCCESS`) and folder markers
    (the empty keys ending in `/` that S3 consoles create for a folder). A name with `..` is kept,
    for `open_source` to refuse in one line.
    """
    if storage.is_s3(uri):
        # a URI ending in `/` names a folder, even where a folder marker object has that very key
        is_single_file = not uri.endswith("/") and not uri.endswith("://") and storage.exists(uri)
    else:
        if not Path(uri).exists():
            raise UserError(f"{uri}: no such file or folder")
        is_single_file = Path(uri).is_file()
    if is_single_file:
        return {uri.rstrip("/").rsplit("/", 1)[-1]: uri}
    located, skipped = {}, []
    for name in storage.list_files(uri):
        hidden = any(part.startswith((".", "_")) and part not in (".", "..") for part in name.split("/"))
        if not name or name.endswith("/") or hidden:
            skipped.append(name or "/")
        else:
            located[name] = storage.join(uri, name)
    if skipped:
        shown = ", ".join(repr(name) for name in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        notes.append(f"{uri}: skipped {len(skipped)} entries that are not data files (hidden, underscore or folder markers): {shown}")
    if not located:
        found = (
            f"only {shown}, which are skipped (hidden, underscore or folder markers)"
            if skipped
            else "no such object, or an empty folder or prefix"
        )
        raise UserError(f"{uri}: no data files there ({found})")
    return located


def read_source(
    source: Source, text_column: str, label_column: str, delimiter: str, encoding: str, document_unit: str = "file"
) -> Iterator[SourceBatch | SourceReject]:
    """Every record of `source`, in a fixed order: files by name, records in file order.

    An empty `label_column` reads unlabelled data (components.predict): every label is None. A .txt
    file (an unlabelled corpus) is one document, or with `document_unit` "paragraph" one per paragraph.

    CSV and TSV texts come out as bytes, decoded later (with `SourceBatch.encoding`) row by row,
    so one undecodable row is quarantined rather than failing the file; JSON lines are decoded here.
    """
    if source.hf_id:
        yield from read_hf_dataset(source.hf_id, text_column, label_column)
        return
    for item in source.files:
        if item.format in ("csv", "tsv"):
            separator = delimiter or ("\t" if item.format == "tsv" else ",")
            yield from read_delimited(item, text_column, label_column, separator, encoding)
        elif item.format == "parquet":
            yield from read_parquet(item, text_column, label_column)
        elif item.format == "txt":
            yield from read_document(item, encoding, document_unit)
        else:
            yield from read_json(item, text_column, label_column, encoding, whole_array=item.format == "json")


def wanted_columns(text_column: str, label_column: str) -> list[tuple[str, str]]:
    """(column, flag) of each column to read: the label column only if one is named."""
    return [(text_column, "text_column")] + ([(label_column, "label_column")] if label_column else [])


def missing_column_error(item: SourceFile, column: str, flag: str, present: list[str]) -> UserError:
    shown = ", ".join(repr(name) for name in present[:12]) or "none"
    return UserError(f"{item.uri}: no column {column!r} (columns: {shown}); pass {flag_hint(flag)} with the right name")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@dataclass
class TextLayout:
    """How to read a text file's bytes: `encoding` decodes the stream `open_text` gives."""

    encoding: str
    skip: int = 0  # bytes of a UTF-8 byte-order mark to skip
    transcode_from: str = ""  # an encoding that is not ASCII-compatible, transcoded to UTF-8 while reading


def ascii_compatible(encoding: str) -> bool:
    sample = "text,label\t\n\r\"'[]{}:0123456789"
    try:
        return sample.encode(encoding) == sample.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def encoding_hint(raw: bytes, tried: str) -> str:
    """`--encoding X` for the likely encodings in which `raw` does decode, other than `tried`."""
    tried_name = codecs.lookup(tried).name
    fits = []
    for candidate in ("utf-8", "cp1252", "latin-1"):
        if codecs.lookup(candidate).name == tried_name:
            continue
        try:
            raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        fits.append(f"--encoding {candidate}")
    return " or ".join(fits[:2]) + (" (cp1252 is what Excel on Windows writes)" if "--encoding cp1252" in fits[:2] else "")


def open_stream(item: SourceFile):
    return pa.input_stream(str(item.path), compression="detect")


def is_compressed(item: SourceFile) -> bool:
    return item.path.name.lower().endswith(COMPRESSION_SUFFIXES)


def read_error(item: SourceFile, error: Exception, where: str = "") -> UserError:
    """One line for a file that stops being readable: cut compression, a damaged UTF-16 file, bad CSV."""
    at = f" {where}" if where else ""
    if isinstance(error, UnicodeDecodeError):  # from transcoding, which reads ahead of the records parsed: no position
        return UserError(f"{item.uri}: not valid {error.encoding} ({error.reason}); the file is damaged: save or export it again")
    if is_compressed(item) and not str(error).startswith("CSV parse error"):
        return UserError(
            f"{item.uri}: the compressed data is truncated or corrupt{at} ({first_line(error)}); download or compress the file again"
        )
    if isinstance(error, pa.ArrowInvalid):
        return UserError(f"{item.uri}: cannot parse{at}: {first_line(error)}")
    return UserError(f"{item.uri}: cannot read it{at} ({first_line(error)})")


READ_ERRORS = (OSError, pa.ArrowInvalid, UnicodeDecodeError)


def text_layout(item: SourceFile, encoding: str) -> TextLayout:
    """Sniff the first bytes: a byte-order mark wins over --encoding; NUL bytes end in one line."""
    try:
        with open_stream(item) as stream:
            head = stream.read(SNIFF_BYTES)
    except READ_ERRORS as error:
        raise read_error(item, error) from None
    if not head:
        hint = "a header row and data rows" if item.format in ("csv", "tsv") else "records"
        raise UserError(f"{item.uri}: the file is empty; it needs {hint}")
    for mark, found in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            if codecs.lookup(encoding).name.split("-")[:2] != codecs.lookup(found).name.split("-")[:2]:
                item.notes.append(f"{item.uri}: starts with a {found.upper()} byte-order mark; read as that, not as --encoding {encoding}")
            if found == "utf-8":
                return TextLayout("utf-8", skip=len(mark))
            return TextLayout("utf-8", transcode_from=found)  # the codec reads the mark and the byte order
    if not ascii_compatible(encoding):
        return TextLayout("utf-8", transcode_from=encoding)
    for signature, what in SIGNATURES:
        if head.startswith(signature) and not (is_compressed(item) and signature in (b"\x1f\x8b", b"BZh")):
            raise UserError(f"{item.uri}: this is not {item.format.upper()} text but {what}")
    controls = sum(1 for byte in head if byte in CONTROL_BYTES)
    if head.count(0) and (utf16 := utf16_without_mark(head)):
        raise UserError(f"{item.uri}: looks like {utf16.upper()} text without a byte-order mark; pass {flag_hint('encoding', utf16)}")
    if controls > BINARY_SHARE * len(head):
        first = next(index for index, byte in enumerate(head) if byte in CONTROL_BYTES)
        raise UserError(
            f"{item.uri}: this is binary data, not {item.format.upper()} text ({controls} control bytes in its first"
            f" {len(head)}, the first at byte {first}); check that it is the file you meant"
        )
    return TextLayout(encoding)


def utf16_without_mark(head: bytes) -> str:
    """ "utf-16-le" or "utf-16-be" where NULs fall on one side of each byte pair and the sample decodes."""
    zeros = [index % 2 for index, byte in enumerate(head) if byte == 0]
    odd = sum(zeros)
    for encoding, share in (("utf-16-le", odd), ("utf-16-be", len(zeros) - odd)):
        if share >= 0.9 * len(zeros) and len(zeros) >= 0.05 * len(head):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
            except UnicodeDecodeError:
                continue
            if "\n" in text or len(head) < SNIFF_BYTES:
                return encoding
    return ""


def open_text(item: SourceFile, layout: TextLayout):
    """The file's bytes as `layout` says: BOM skipped, or transcoded to UTF-8."""
    stream = open_stream(item)
    if layout.skip:
        stream.read(layout.skip)
    if layout.transcode_from:
        return pa.transcoding_input_stream(stream, layout.transcode_from, "utf-8")
    return stream


def read_delimited(
    item: SourceFile, text_column: str, label_column: str, delimiter: str, encoding: str
) -> Iterator[SourceBatch | SourceReject]:
    """The header row is read as bytes like the rest, so a header in cp1252 works with --encoding cp1252."""
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
    for column, flag in wanted_columns(text_column, label_column):
        if column not in header:
            raise missing_column_error(item, column, flag, header)
    fields = [f"f{header.index(column)}" for column, _ in wanted_columns(text_column, label_column)]
    text_field = fields[0]
    try:
        reader = pacsv.open_csv(
            open_text(item, layout),
            read_options=pacsv.ReadOptions(block_size=1 << 22, autogenerate_column_names=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                include_columns=fields,
                column_types=dict.fromkeys(fields, pa.binary()),
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
            yield SourceBatch(
                item.name,
                item.split,
                positions,
                batch.column(text_field).to_pylist(),
                batch.column(fields[-1]).to_pylist() if label_column else [None] * batch.num_rows,
                layout.encoding,
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
    for column, flag in wanted_columns(text_column, label_column):
        if column not in record:
            raise missing_column_error(item, column, flag, list(record))


def json_kind(value) -> str:
    return "a JSON object" if isinstance(value, dict) else "a JSON array"


def wrong_type(item: SourceFile, position: str, record: dict, text_column: str, label_column: str, raw: str) -> SourceReject | None:
    """An object or array where the text or the label should be: quarantined, never stringified."""
    text, label = record.get(text_column), record.get(label_column)
    if isinstance(text, dict | list):
        detail = f"the {text_column!r} field is {json_kind(text)}, not text; pass --text_column naming a text field"
        return SourceReject(item.name, position, "text_not_a_string", detail, raw[:RAW_TEXT_KEPT])
    if isinstance(label, dict | list):
        detail = f"the {label_column!r} field is {json_kind(label)}; a label must be a string or a number"
        return SourceReject(item.name, position, "label_not_a_value", detail, raw[:RAW_TEXT_KEPT])
    return None


def append_record(batch: SourceBatch, position: str, record: dict, text_column: str, label_column: str) -> None:
    text, label = record.get(text_column), record.get(label_column)
    batch.positions.append(position)
    batch.texts.append(text if text is None or isinstance(text, str) else json.dumps(text))
    batch.labels.append(None if label is None else format_label(label))


def read_json(
    item: SourceFile, text_column: str, label_column: str, encoding: str, whole_array: bool
) -> Iterator[SourceBatch | SourceReject]:
    """JSON Lines; or, for a `.json` file that starts with `[`, a JSON array of objects."""
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
            yield from read_json_array(item, text_column, label_column, layout)
        else:
            yield from read_json_lines(item, text_column, label_column, layout)
    except READ_ERRORS as error:
        raise read_error(item, error) from None


def read_json_lines(item: SourceFile, text_column: str, label_column: str, layout: TextLayout) -> Iterator[SourceBatch | SourceReject]:
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
            if not batch.positions:
                check_record_columns(item, record, text_column, label_column)
            if reject := wrong_type(item, position, record, text_column, label_column, raw_line.decode(encoding, "replace")):
                yield reject
                continue
            append_record(batch, position, record, text_column, label_column)
            if len(batch.positions) >= BATCH_ROWS:
                yield batch
                batch = SourceBatch(item.name, item.split)
    if batch.positions:
        yield batch


def read_json_array(item: SourceFile, text_column: str, label_column: str, layout: TextLayout) -> Iterator[SourceBatch | SourceReject]:
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
        if not batch.positions:
            check_record_columns(item, record, text_column, label_column)
        if reject := wrong_type(item, position, record, text_column, label_column, json.dumps(record)):
            yield reject
            continue
        append_record(batch, position, record, text_column, label_column)
    if batch.positions:
        yield batch


def read_document(item: SourceFile, encoding: str, document_unit: str = "file") -> Iterator[SourceBatch | SourceReject]:
    """A plain-text file as one document, or one per paragraph, its bytes decoded later as CSV texts are
    (an undecodable one is quarantined then). A file that is not text is quarantined here: it is one of many."""
    try:
        raw, layout_encoding = document_bytes(item, encoding)
    except UserError as error:
        yield SourceReject(item.name, WHOLE_FILE, "unreadable_file", str(error))
        return
    if document_unit == "file":
        yield SourceBatch(item.name, item.split, [WHOLE_FILE], [raw], [None], layout_encoding)
        return
    paragraphs = [paragraph for paragraph in PARAGRAPH_BREAK.split(raw) if paragraph.strip()]
    positions = [f"paragraph {number}" for number in range(1, len(paragraphs) + 1)]
    yield SourceBatch(item.name, item.split, positions, paragraphs, [None] * len(paragraphs), layout_encoding)


def document_bytes(item: SourceFile, encoding: str) -> tuple[bytes, str]:
    """The file's bytes and their encoding (a byte-order mark's, else `encoding`); an empty file is an empty document."""
    if item.path.stat().st_size == 0:
        return b"", encoding
    layout = text_layout(item, encoding)
    try:
        with open_text(item, layout) as stream:
            return stream.read(), layout.encoding
    except READ_ERRORS as error:
        raise read_error(item, error) from None


def read_parquet(item: SourceFile, text_column: str, label_column: str) -> Iterator[SourceBatch | SourceReject]:
    import pyarrow.parquet as pq

    if item.path.stat().st_size == 0:
        raise UserError(f"{item.uri}: the file is empty (0 bytes), not Parquet; write or download it again")
    try:
        parquet = pq.ParquetFile(str(item.path))
    except READ_ERRORS as error:
        raise UserError(f"{item.uri}: not a readable Parquet file: {first_line(error)}") from None
    schema = parquet.schema_arrow
    for column, flag in wanted_columns(text_column, label_column):
        if column not in schema.names:
            raise missing_column_error(item, column, flag, schema.names)
    text_type = schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_binary(text_type)):
        raise UserError(f"{item.uri}: column {text_column!r} has type {text_type}; the text column must hold strings")
    label_type = schema.field(label_column).type if label_column else pa.string()
    if pa.types.is_nested(label_type) or pa.types.is_binary(label_type):
        raise UserError(f"{item.uri}: column {label_column!r} has type {label_type}; labels must be strings or numbers")
    rows_read = 0
    try:
        columns = [column for column, _ in wanted_columns(text_column, label_column)]
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            raw_labels = batch.column(label_column).to_pylist() if label_column else [None] * batch.num_rows
            labels = [None if value is None else format_label(value) for value in raw_labels]
            positions = [f"row {rows_read + index + 1}" for index in range(batch.num_rows)]
            rows_read += batch.num_rows
            yield SourceBatch(item.name, item.split, positions, batch.column(text_column).to_pylist(), labels)
    except READ_ERRORS as error:
        raise UserError(
            f"{item.uri}: the Parquet data is corrupt after row {rows_read} ({first_line(error)}); write or download the file again"
        ) from None


def format_label(value) -> str | None:
    """`7.0` -> "7", so numeric labels read the same from Parquet, JSON and CSV; NaN (pandas' missing value) -> None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_hf_dataset(hf_id: str, text_column: str, label_column: str) -> Iterator[SourceBatch | SourceReject]:
    name, _, config = hf_id.partition(":")
    try:
        import datasets
    except ImportError:
        raise UserError("hf:// inputs need the 'datasets' package: pip install datasets") from None
    offline_unless_hub_answers()
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
        for column, flag in wanted_columns(text_column, label_column):
            if column not in dataset.column_names:
                shown = ", ".join(dataset.column_names)
                raise UserError(f"{source}: no column {column!r} (columns: {shown}); pass {flag_hint(flag)} with the right name")
        class_names = getattr(dataset.features[label_column], "names", None) if label_column else None
        rows_read = 0
        for table in dataset.data.to_batches(max_chunksize=BATCH_ROWS):
            texts = table.column(text_column).to_pylist()
            labels = [
                None if value is None else class_names[value] if class_names else format_label(value)
                for value in (table.column(label_column).to_pylist() if label_column else [None] * len(texts))
            ]
            positions = [f"row {rows_read + index + 1}" for index in range(len(texts))]
            rows_read += len(texts)
            yield SourceBatch(source, split, positions, texts, labels)
