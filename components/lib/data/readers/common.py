"""The records every reader yields, and finding an input URI's files and the format and split of each."""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from components.lib import storage
from components.lib.errors import UserError, flag_hint
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
    encoding: str = ""  # of the bytes in `texts` and `labels` ("": the --encoding flag's)
    slices: dict[str, list] = field(default_factory=dict)  # --slice_columns: {column: a raw value per row}


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
    known = {name: kind for name in located if (kind := file_format(name, formats)) is not None}
    unsupported = [name for name in located if name not in known]
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
        files = [SourceFile(local[name], name, known[name], split_from_name(name), located[name]) for name in sorted(local)]
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


def wanted_columns(text_column: str, label_column: str, label_columns: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(column, flag) of each column to read: the text column first, then the 0/1 label columns if any
    are named, else the label column if one is named."""
    if label_columns:
        return [(text_column, "text_column")] + [(column, "label_columns") for column in label_columns]
    return [(text_column, "text_column")] + ([(label_column, "label_column")] if label_column else [])


def check_slice_columns(item: SourceFile, slice_columns: tuple[str, ...], present: list[str]) -> None:
    """Refuse in one line a file that lacks a column named by --slice_columns."""
    for column in slice_columns:
        if column not in present:
            raise missing_column_error(item, column, "slice_columns", present)


def missing_column_error(item: SourceFile, column: str, flag: str, present: list[str]) -> UserError:
    shown = ", ".join(repr(name) for name in present[:12]) or "none"
    return UserError(f"{item.uri}: no column {column!r} (columns: {shown}); pass {flag_hint(flag)} with the right name")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def format_label(value) -> str | None:
    """`7.0` -> "7", so numeric labels read the same from Parquet, JSON and CSV; NaN (pandas' missing value) -> None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
