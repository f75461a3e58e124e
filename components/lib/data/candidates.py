"""Preprocess's first pass: every source row decoded, cleaned and checked, and the rows that pass
kept as candidates (a hash, a label and a source split each) and spooled to scratch Parquet."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.data.contract import CLEAN_SCHEMA, SLICE_COLUMN_PREFIX, SPLITS, with_slice_columns
from components.lib.data.labels import LabelMapper
from components.lib.data.quarantine import RejectsWriter
from components.lib.data.readers import SourceBatch
from components.lib.data.readers.common import RawValue, format_label
from components.lib.data.textclean import clean_text

UNASSIGNED = -1
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}


@dataclass
class Cleaning:
    encoding: str
    mask_urls: bool
    mask_mentions: bool
    max_chars: int


@dataclass
class Candidates:
    """Rows that passed the row checks, in source order: 8-byte text hash, label, source split."""

    hashes: list[np.ndarray] = field(default_factory=list)
    label_codes: list[np.ndarray] = field(default_factory=list)
    source_splits: list[np.ndarray] = field(default_factory=list)
    lengths: list[np.ndarray] = field(default_factory=list)
    label_keys: dict[str, int] = field(default_factory=dict)
    rows_in: int = 0
    # per source file: rows read, rows by reject reason, and "decoded_non_ascii" (rows whose
    # non-ASCII bytes did decode: evidence the encoding is right); and its first bad row's bytes
    files: dict[str, Counter] = field(default_factory=dict)
    first_undecodable: dict[str, bytes] = field(default_factory=dict)
    first_position: dict[tuple[str, str], str] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)  # what each file's bytes were decoded with
    schema: pa.Schema = CLEAN_SCHEMA  # the spool's and the splits': with a column per --slice_columns name

    def tally(self, source: str, position: str, reason: str | None) -> None:
        counts = self.files.setdefault(source, Counter())
        counts["rows"] += 1
        if reason is not None:
            counts[reason] += 1
            self.first_position.setdefault((source, reason), position)

    def finish_labels(self, mapper: LabelMapper | None) -> list[str]:
        """Freeze the arrays; with `--label_names auto`, turn first-seen codes into sorted ids."""
        self.hash = np.concatenate(self.hashes) if self.hashes else np.zeros(0, np.uint64)
        self.label = np.concatenate(self.label_codes) if self.label_codes else np.zeros(0, np.int32)
        self.source_split = np.concatenate(self.source_splits) if self.source_splits else np.zeros(0, np.int8)
        self.length = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        if mapper is not None:
            return mapper.names
        names = sorted(self.label_keys)
        if self.label_keys:
            first_seen_to_sorted = np.array([names.index(key) for key in self.label_keys], dtype=np.int32)
            self.label = first_seen_to_sorted[self.label]
        return names

    def __len__(self) -> int:
        return len(self.hash)


def spool_candidates(
    records, cleaning: Cleaning, mapper: LabelMapper | None, rejects: RejectsWriter, spool_path: Path, slice_columns: tuple[str, ...] = ()
) -> Candidates:
    candidates = Candidates(schema=with_slice_columns(CLEAN_SCHEMA, slice_columns))
    with pq.ParquetWriter(spool_path, candidates.schema) as spool:
        for record in records:
            if isinstance(record, SourceBatch):
                table = check_rows(record, cleaning, mapper, rejects, candidates)
                if table.num_rows:
                    spool.write_table(table)
            else:
                candidates.rows_in += 1
                candidates.tally(record.source, record.position, record.reason)
                rejects.add(record.source, record.position, record.reason, record.detail, record.raw, "")
    return candidates


def check_rows(
    batch: SourceBatch, cleaning: Cleaning, mapper: LabelMapper | None, rejects: RejectsWriter, candidates: Candidates
) -> pa.Table:
    """Decode, clean and label one batch; quarantine what fails; return the rows that pass."""
    texts, labels, rows, hashes, lengths, kept = [], [], [], [], [], []
    encoding = candidates.encodings.setdefault(batch.source, batch.encoding or cleaning.encoding)
    for index, (position, raw_text, raw_label) in enumerate(zip(batch.positions, batch.texts, batch.labels)):
        candidates.rows_in += 1
        text, label_text, problem = decode_row(raw_text, raw_label, encoding)
        if problem is None and not all_ascii(raw_text, raw_label):
            candidates.files.setdefault(batch.source, Counter())["decoded_non_ascii"] += 1
        if problem is not None and problem[0] == "undecodable_text":
            candidates.first_undecodable.setdefault(batch.source, b"\n".join(v for v in (raw_text, raw_label) if isinstance(v, bytes)))
        if problem is None:
            text = clean_text(text, cleaning.mask_urls, cleaning.mask_mentions)
            problem = check_text(text, cleaning.max_chars) or check_label_present(label_text) or check_unicode(text, label_text or "")
        label = None
        if problem is None:
            assert label_text is not None  # check_label_present passed
            label = to_label_code(label_text, mapper, candidates)
            if label is None:
                assert mapper is not None  # without a mapper every label gets a code
                problem = (mapper.rejection(label_text), mapper.unknown(label_text))
        candidates.tally(batch.source, position, problem[0] if problem else None)
        if problem is not None:
            reason, detail = problem
            rejects.add(batch.source, position, reason, detail, text or "", label_text or "")
            continue
        texts.append(text)
        labels.append(label)
        rows.append(f"{batch.source}:{position}")
        hashes.append(text_key(text))
        lengths.append(len(text))
        kept.append(index)
    split_code = SPLIT_CODES.get(batch.split, UNASSIGNED) if batch.split else UNASSIGNED
    candidates.hashes.append(np.array(hashes, dtype=np.uint64))
    candidates.label_codes.append(np.array(labels, dtype=np.int32))
    candidates.source_splits.append(np.full(len(texts), split_code, dtype=np.int8))
    candidates.lengths.append(np.array(lengths, dtype=np.int32))
    slices = {
        SLICE_COLUMN_PREFIX + column: [slice_value(values[index], encoding) for index in kept] for column, values in batch.slices.items()
    }
    return pa.table({"text": texts, "label": labels, "source_row": rows, **slices}, schema=candidates.schema)


def slice_value(raw, encoding: str) -> str | None:
    """A --slice_columns cell as text: numbers as labels are read (`7.0` -> "7"); empty or missing: None."""
    if isinstance(raw, bytes):
        raw = raw.decode(encoding, "replace")
    value = None if raw is None else format_label(raw)
    return value.strip() or None if value is not None else None


def text_key(text: str) -> int:
    """Duplicates are found by this 8-byte hash of the cleaned text, ignoring case."""
    return int.from_bytes(hashlib.blake2b(text.casefold().encode("utf-8"), digest_size=8).digest(), "little")


def all_ascii(*values: RawValue) -> bool:
    """No value holds a non-ASCII character or byte (None holds none)."""
    return all(value is None or value.isascii() for value in values)


def decode_row(raw_text, raw_label, encoding: str) -> tuple[str, str | None, tuple[str, str] | None]:
    """The text ("" when there is none), the label, and what is wrong with them, if anything."""
    hint = "pass --encoding if the file uses another"
    label_text, problem = raw_label, None
    if isinstance(raw_label, bytes):
        try:
            label_text = raw_label.decode(encoding)
        except UnicodeDecodeError as error:
            label_text = raw_label.decode(encoding, "replace")
            problem = ("undecodable_text", f"the label is not valid {encoding}: {error.reason} at byte {error.start}; {hint}")
    if raw_text is None:
        return "", label_text, ("missing_text", "the text is null")
    if isinstance(raw_text, bytes):
        try:
            return raw_text.decode(encoding), label_text, problem
        except UnicodeDecodeError as error:
            detail = f"not valid {encoding}: {error.reason} at byte {error.start}; {hint}"
            return raw_text.decode(encoding, "replace")[:10_000], label_text, ("undecodable_text", detail)
    return raw_text, label_text, problem


def check_text(text: str, max_chars: int) -> tuple[str, str] | None:
    if not text:
        return "empty_text", "the text is empty after cleaning"
    if len(text) > max_chars:
        return "text_too_long", f"{len(text)} characters, over --max_chars {max_chars}"
    return None


def check_unicode(text: str, label_text: str) -> tuple[str, str] | None:
    """A lone surrogate (JSON's `\\ud83d` escape without its pair: an emoji cut in half) is not text."""
    for what, value in (("text", text), ("label", label_text)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return (
                "invalid_unicode",
                f"the {what} holds a lone surrogate {value[error.start]!r} at character {error.start} (an emoji cut in half?)",
            )
    return None


def check_label_present(label_text: str | None) -> tuple[str, str] | None:
    if label_text is None or not label_text.strip():
        return "missing_label", "the label is null or empty"
    return None


def to_label_code(label_text: str, mapper: LabelMapper | None, candidates: Candidates) -> int | None:
    if mapper is not None:
        return mapper.to_id(label_text)
    key = label_text.strip()
    return candidates.label_keys.setdefault(key, len(candidates.label_keys))
