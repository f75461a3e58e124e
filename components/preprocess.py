"""preprocess: raw labelled text in, clean train/validation/test Parquet splits out.

    python -m components.preprocess --input_uri data/sample/drugscom --output_uri runs/x/data \\
        --text_column review --label_column rating

Reads CSV, TSV, JSON, JSON Lines or Parquet (a file, a folder of shards, local or s3://), or an
`hf://name[:config]` dataset. Cleans each text, maps labels to ids, drops empty texts and duplicates (ignoring case),
keeps a text that appears in two splits in one only (reported as leakage), and splits: the
source's own splits where its file names say train/validation/test, a seeded stratified split
otherwise. Every rejected row goes to `rejects.parquet` with its reason: rows in = rows kept +
rows rejected. A warning gives the share rejected and the commonest reasons, each with its first row.

Rejected rows are normal in real data, a few at a time. A large share rejected is not: it comes
from one cause that hits many rows alike (an unquoted comma in the texts, another encoding, a label
spelled `postive`, ratings without `--rating_buckets`), and training on what is left would silently
learn from a different data set. So above `--max_reject_share` of the rows (10% by default: far
above the handful a real set loses, well below what one such cause loses) the stage fails and says
why. Duplicates do not count: dropping them is deduplication at work, not bad data.

It works in two streaming passes, so memory holds 16 bytes per row rather than the texts:
1. read, clean and check every row; keep a hash, label and split per candidate, and spool the
   candidates to a scratch Parquet file;
2. decide duplicates and splits from those arrays, then route the spooled rows to their files.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.data.augment import augment_train_split
from components.lib.data.contract import CLEAN_SCHEMA, REJECTS_FILE, REJECTS_SCHEMA, SPLITS, STATS_FILE, split_file
from components.lib.data.labels import LabelMapper, write_labels
from components.lib.data.readers import Source, SourceBatch, encoding_hint, open_source, read_source
from components.lib.data.textclean import TextCleaning, clean_text
from components.lib.errors import UserError
from components.lib.storage.artifacts import staged_output

log = logging.getLogger("components.preprocess")  # not __main__: our INFO lines show under python -m

UNASSIGNED = -1
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}
# Which copy of a repeated text to keep, indexed by split code + 1: test first, then validation,
# then train, then rows with no split yet.
KEEP_PRIORITY = np.array([3, 2, 1, 0])
WRITE_BATCH_ROWS = 8192
DUPLICATE_TEXT = "duplicate_text"
LEAKED_ACROSS_SPLITS = "leaked_across_splits"
DEDUPLICATION_REASONS = (DUPLICATE_TEXT, LEAKED_ACROSS_SPLITS)  # not counted against --max_reject_share
REASONS_SHOWN = 3


def preprocess(
    *,
    input_uri: str,
    output_uri: str,
    text_column: str = "text",
    label_column: str = "label",
    label_names: str = "negative,neutral,positive",
    rating_buckets: str = "",
    delimiter: str = "",
    encoding: str = "utf-8",
    mask_urls: bool = False,
    mask_mentions: bool = False,
    max_chars: int = 20000,
    use_source_splits: bool = True,
    validation_ratio: float = 0.1,
    test_ratio: float = 0.1,
    seed: int = 42,
    allow_missing_classes: bool = False,
    max_reject_share: float = 0.1,
    augment_factor: int = 0,
    augment_alpha: float = 0.1,
    expected_source_fingerprint: str = "",
    executor_input: str = "",
) -> StageResult:
    """Clean, label, deduplicate and split raw labelled text into Parquet.

    Args:
      input_uri: Source data: a file or folder (local or s3://) of CSV/TSV/JSON/JSONL/Parquet, or hf://name[:config].
      output_uri: Folder (local or s3://) for the splits, labels.json, stats.json and rejects.parquet.
      text_column: Name of the column that holds the text.
      label_column: Name of the column that holds the label (a name or a numeric rating).
      label_names: Label names in id order, comma-separated, or "auto" to take the sorted names found in the data.
      rating_buckets: Map numeric ratings to labels instead, e.g. "negative:1-4,neutral:5-6,positive:7-10".
      delimiter: Field delimiter for delimited text; default "," for .csv and tab for .tsv.
      encoding: Text encoding of CSV/TSV/JSON files; rows that do not decode are quarantined.
      mask_urls: Replace URLs with "http" (for tweets).
      mask_mentions: Replace @user mentions with "@user" (for tweets).
      max_chars: Quarantine texts longer than this many characters after cleaning.
      use_source_splits: Keep the splits named by the source files (train/validation/test); false to re-split.
      validation_ratio: Share of rows for validation when it is split off here.
      test_ratio: Share of rows for test when it is split off here.
      seed: Seed of the stratified split.
      allow_missing_classes: Accept a validation or test split that lacks a class instead of failing.
      max_reject_share: Fail above this share of rejected rows, duplicates aside (1: never); 0.1 lets a few through, not a broken file.
      augment_factor: EDA augmentation (Wei and Zou 2019) of the train split only: this many new versions of each row; 0: none.
      augment_alpha: Share of a text's words each augmentation changes (synonyms from WordNet, insertions, swaps, deletions).
      expected_source_fingerprint: Fail if the source's content fingerprint differs (set by the pipeline; pins the cache key to the data).
      executor_input: Set by Kubeflow; leave empty when running by hand.
    """
    check_ratios(validation_ratio, test_ratio)
    check_max_reject_share(max_reject_share)
    check_encoding(encoding)
    check_augmentation(augment_factor, augment_alpha)
    mapper = LabelMapper.from_flags(label_names, rating_buckets)
    fingerprint = source_fingerprint(input_uri, expected_source_fingerprint)
    cleaning = Cleaning(encoding, mask_urls, mask_mentions, max_chars)
    lineage = {"source_uri": input_uri, "source_fingerprint": fingerprint, **TextCleaning(mask_urls, mask_mentions).lineage()}
    with (
        open_source(input_uri) as source,
        tempfile.TemporaryDirectory(prefix="preprocess-") as scratch,
        staged_output(output_uri, extra={"lineage": lineage}) as out,
    ):
        rejects = RejectsWriter(out / REJECTS_FILE)
        spool_path = Path(scratch) / "candidates.parquet"
        candidates = spool_candidates(
            read_source(source, text_column, label_column, delimiter, encoding),
            cleaning,
            mapper,
            rejects,
            spool_path,
        )
        notes = source.all_notes() + check_files(candidates, source, encoding, text_column, label_column)
        rule = label_rule(mapper)
        if mapper is not None and mapper.by_index:
            notes.append(rule)  # names were asked for and numbers found: a warning, kept in stats.json
        label_names_found = candidates.finish_labels(mapper)
        use_sources = use_source_splits and source.has_named_splits
        keep, reasons = find_duplicates(candidates, use_sources)
        carve = carved_splits(candidates, keep, use_sources, validation_ratio, test_ratio)
        splits = assign_splits(candidates, keep, use_sources, carve, seed)
        counts = route_rows(spool_path, candidates, keep, reasons, splits, out, rejects, label_names_found)
        rejects.close()
        stats = build_stats(candidates, keep, splits, counts, rejects, label_names_found, lineage, use_sources)
        stats["label_rule"] = rule
        if augment_factor:  # after the split, so no copy of a validation or test text is trained on
            stats["augmentation"] = augment_train_split(out, augment_factor, augment_alpha, seed)
            stats["splits"]["train"]["rows_augmented"] = stats["augmentation"]["rows_added"]
            notes.append(augmentation_note(stats["augmentation"]))
        check_outcome(stats, label_names_found, input_uri, allow_missing_classes, carve, max_reject_share)
        if stats["rows_rejected"]:
            notes.append(rejects_note(stats, input_uri))
        stats["notes"] = notes
        write_labels(out, label_names_found)
        (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    if rule not in notes:  # the index rule is a note already
        log.info(rule)
    for note in notes:
        log.warning(note)
    return StageResult(
        summary={"stage": "preprocess", "output_uri": output_uri, **{key: stats[key] for key in ("rows_in", "rows_kept", "rows_rejected")}},
        artifact_metadata={
            "dataset": {key: stats[key] for key in ("rows_in", "rows_kept", "rows_rejected", "leaked_across_splits")}
            | {"labels": label_names_found, "source_fingerprint": fingerprint}
        },
    )


def check_augmentation(factor: int, alpha: float) -> None:
    if factor < 0:
        raise UserError(f"--augment_factor: must not be negative, got {factor}")
    if factor and not 0.0 < alpha <= 0.5:
        raise UserError(f"--augment_alpha: must be in (0, 0.5], got {alpha}")


def augmentation_note(augmentation: dict) -> str:
    operations = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in augmentation["operations"].items())
    return (f"augmented the train split (--augment_factor {augmentation['factor']}, --augment_alpha {augmentation['alpha']}):"
            f" {augmentation['rows_added']} rows added to {augmentation['rows_before']}; {operations}")  # fmt: skip


def check_ratios(validation_ratio: float, test_ratio: float) -> None:
    for name, ratio in (("validation_ratio", validation_ratio), ("test_ratio", test_ratio)):
        if not 0.0 <= ratio < 1.0:
            raise UserError(f"--{name}: must be at least 0 and below 1, got {ratio}")
    if validation_ratio + test_ratio >= 0.9:
        raise UserError("--validation_ratio plus --test_ratio leave under 10% of the rows for training")


def check_max_reject_share(max_reject_share: float) -> None:
    if not 0.0 < max_reject_share <= 1.0:
        raise UserError(f"--max_reject_share: must be above 0 and at most 1 (1 never fails), got {max_reject_share}")


def check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UserError(f"--encoding: unknown encoding {encoding!r}; e.g. utf-8, cp1252, latin-1, utf-16") from None
    try:
        codecs.getincrementaldecoder(encoding)
        "".encode(encoding)
    except (LookupError, TypeError):
        raise UserError(f"--encoding: {encoding!r} is not a text encoding; e.g. utf-8, cp1252, latin-1, utf-16") from None


def source_fingerprint(input_uri: str, expected: str) -> str:
    if input_uri.startswith("hf://"):
        return input_uri
    found = storage.fingerprint(input_uri)
    if expected and expected != found:
        raise UserError(
            f"{input_uri}: the data changed since the run was set up (fingerprint {found[:12]}, expected"
            f" {expected[:12]}); submit the run again so its cache key matches the data"
        )
    return found


@dataclass
class Cleaning:
    encoding: str
    mask_urls: bool
    mask_mentions: bool
    max_chars: int


def writable(value: str) -> str:
    """`value` with any lone surrogate (from a JSON `\\ud83d` escape) as U+FFFD: Parquet holds UTF-8 only."""
    if value.isascii():
        return value
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in value)


class RejectsWriter:
    """Streams quarantined rows to `rejects.parquet`, counting them by reason."""

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, REJECTS_SCHEMA)
        self.rows: dict[str, list] = {name: [] for name in REJECTS_SCHEMA.names}
        self.by_reason: Counter[str] = Counter()
        self.first_example: dict[str, str] = {}

    def add(self, source: str, position: str, reason: str, detail: str, text: str, label: str) -> None:
        for name, value in zip(REJECTS_SCHEMA.names, (source, position, reason, detail, text, label)):
            self.rows[name].append(writable(value))
        self.by_reason[reason] += 1
        self.first_example.setdefault(reason, f"{source} {position}: {detail}")
        if len(self.rows["reason"]) >= WRITE_BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows["reason"]:
            self.writer.write_table(pa.table(self.rows, schema=REJECTS_SCHEMA))
            self.rows = {name: [] for name in REJECTS_SCHEMA.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


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


def spool_candidates(records, cleaning: Cleaning, mapper: LabelMapper | None, rejects: RejectsWriter, spool_path: Path) -> Candidates:
    candidates = Candidates()
    with pq.ParquetWriter(spool_path, CLEAN_SCHEMA) as spool:
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
    texts, labels, rows, hashes, lengths = [], [], [], [], []
    encoding = candidates.encodings.setdefault(batch.source, batch.encoding or cleaning.encoding)
    for position, raw_text, raw_label in zip(batch.positions, batch.texts, batch.labels):
        candidates.rows_in += 1
        text, label_text, problem = decode_row(raw_text, raw_label, encoding)
        if problem is None and not (raw_text.isascii() and (raw_label is None or raw_label.isascii())):
            candidates.files.setdefault(batch.source, Counter())["decoded_non_ascii"] += 1
        if problem is not None and problem[0] == "undecodable_text":
            candidates.first_undecodable.setdefault(batch.source, b"\n".join(v for v in (raw_text, raw_label) if isinstance(v, bytes)))
        if problem is None:
            text = clean_text(text, cleaning.mask_urls, cleaning.mask_mentions)
            problem = check_text(text, cleaning.max_chars) or check_label_present(label_text) or check_unicode(text, label_text)
        label = None
        if problem is None:
            label = to_label_code(label_text, mapper, candidates)
            if label is None:
                problem = ("unknown_label", mapper.unknown(label_text))
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
    split_code = SPLIT_CODES.get(batch.split, UNASSIGNED) if batch.split else UNASSIGNED
    candidates.hashes.append(np.array(hashes, dtype=np.uint64))
    candidates.label_codes.append(np.array(labels, dtype=np.int32))
    candidates.source_splits.append(np.full(len(texts), split_code, dtype=np.int8))
    candidates.lengths.append(np.array(lengths, dtype=np.int32))
    return pa.table({"text": texts, "label": labels, "source_row": rows}, schema=CLEAN_SCHEMA)


def text_key(text: str) -> int:
    """Duplicates are found by this 8-byte hash of the cleaned text, ignoring case."""
    return int.from_bytes(hashlib.blake2b(text.casefold().encode("utf-8"), digest_size=8).digest(), "little")


def decode_row(raw_text, raw_label, encoding: str) -> tuple[str | None, str | None, tuple[str, str] | None]:
    hint = "pass --encoding if the file uses another"
    label_text, problem = raw_label, None
    if isinstance(raw_label, bytes):
        try:
            label_text = raw_label.decode(encoding)
        except UnicodeDecodeError as error:
            label_text = raw_label.decode(encoding, "replace")
            problem = ("undecodable_text", f"the label is not valid {encoding}: {error.reason} at byte {error.start}; {hint}")
    if raw_text is None:
        return None, label_text, ("missing_text", "the text is null")
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


def find_duplicates(candidates: Candidates, use_sources: bool) -> tuple[np.ndarray, np.ndarray]:
    """Keep one row per distinct text; say why each other copy goes.

    The copy kept is the one in the most precious split (test, then validation, then train), and
    the first in source order within it. Returns a keep mask and a reason code per row
    (0 kept, 1 duplicate in the same split, 2 leaked across splits).
    """
    count = len(candidates)
    keep = np.ones(count, dtype=bool)
    reasons = np.zeros(count, dtype=np.int8)
    if count == 0:
        return keep, reasons
    split = candidates.source_split if use_sources else np.full(count, UNASSIGNED, dtype=np.int8)
    priority = KEEP_PRIORITY[split + 1]
    order = np.lexsort((np.arange(count), priority, candidates.hash))
    sorted_hash = candidates.hash[order]
    repeats = np.concatenate([[False], sorted_hash[1:] == sorted_hash[:-1]])
    group_start = np.maximum.accumulate(np.where(~repeats, np.arange(count), 0))
    keeper = order[group_start]
    dropped = order[repeats]
    keep[dropped] = False
    reasons[dropped] = np.where(split[dropped] == split[keeper[repeats]], 1, 2)
    return keep, reasons


def carved_splits(
    candidates: Candidates, keep: np.ndarray, use_sources: bool, validation_ratio: float, test_ratio: float
) -> dict[str, float]:
    """The splits drawn here from the training pool, with their shares: all of them without source
    splits, else those the source does not name."""
    ratios = {"validation": validation_ratio, "test": test_ratio}
    if not use_sources:
        return ratios
    present = set(np.unique(candidates.source_split[keep]).tolist())
    return {name: ratio for name, ratio in ratios.items() if SPLIT_CODES[name] not in present}


def rows_taken(members: int, ratio: float) -> int:
    """How many of a class's `members` rows a split with share `ratio` takes: at least one from 3 rows on."""
    take = round(members * ratio)
    if ratio > 0 and take == 0 and members >= 3:
        take = 1
    return take


def rows_needed_per_class(carve: dict[str, float]) -> int:
    """The fewest distinct rows of a class that give every carved split, and train, at least one."""
    for members in range(1, 10_000):
        taken = [rows_taken(members, ratio) for ratio in carve.values() if ratio > 0]
        if all(taken) and members - sum(taken) >= 1:
            return members
    return 10_000


def assign_splits(candidates: Candidates, keep: np.ndarray, use_sources: bool, carve: dict[str, float], seed: int) -> np.ndarray:
    """The split of every kept row: the source's own where used, a stratified draw for the rest."""
    rng = np.random.default_rng(seed)
    split = candidates.source_split.copy() if use_sources else np.full(len(candidates), UNASSIGNED, dtype=np.int8)
    pool = keep & (split == SPLIT_CODES["train"]) if use_sources else keep.copy()
    split[pool] = SPLIT_CODES["train"]
    for label in np.unique(candidates.label[pool]):
        members = rng.permutation(np.flatnonzero(pool & (candidates.label == label)))
        start = 0
        for name, ratio in carve.items():
            take = rows_taken(len(members), ratio)
            split[members[start : start + take]] = SPLIT_CODES[name]
            start += take
    return split


def route_rows(
    spool_path: Path,
    candidates: Candidates,
    keep: np.ndarray,
    reasons: np.ndarray,
    splits: np.ndarray,
    out: Path,
    rejects: RejectsWriter,
    names: list[str],
) -> dict[str, int]:
    """Second pass: copy each spooled row to its split file, or to the rejects with its reason.

    Labels are taken from `candidates.label`, which holds the final ids (see `finish_labels`).
    """
    writers = {name: pq.ParquetWriter(split_file(out, name), CLEAN_SCHEMA) for name in SPLITS}
    counts = Counter()
    start = 0
    for batch in pq.ParquetFile(spool_path).iter_batches(batch_size=WRITE_BATCH_ROWS):
        window = slice(start, start + batch.num_rows)
        table = pa.Table.from_batches([batch]).set_column(1, "label", pa.array(candidates.label[window], pa.int32()))
        for code, name in enumerate(SPLITS):
            mask = keep[window] & (splits[window] == code)
            if mask.any():
                writers[name].write_table(table.filter(pa.array(mask)))
                counts[name] += int(mask.sum())
        for index in np.flatnonzero(~keep[window]):
            row = table.slice(int(index), 1).to_pylist()[0]
            source, _, position = row["source_row"].rpartition(":")
            if reasons[start + index] == 2:
                reason, detail = (
                    LEAKED_ACROSS_SPLITS,
                    "the same text is kept in a more protected split (test before validation before train)",
                )
            else:
                reason, detail = DUPLICATE_TEXT, "the same text is kept at an earlier row"
            rejects.add(source, position, reason, detail, row["text"], names[row["label"]])
        start += len(table)
    for writer in writers.values():
        writer.close()
    return counts


def percentiles(values: np.ndarray) -> dict[str, int]:
    if len(values) == 0:
        return {}
    points = np.percentile(values, [50, 90, 95, 99])
    return {"p50": int(points[0]), "p90": int(points[1]), "p95": int(points[2]), "p99": int(points[3]), "max": int(values.max())}


def build_stats(candidates, keep, splits, counts, rejects, names, lineage, use_sources) -> dict:
    per_split = {}
    for code, name in enumerate(SPLITS):
        mask = keep & (splits == code)
        class_counts = np.bincount(candidates.label[mask], minlength=len(names)) if mask.any() else np.zeros(len(names), int)
        per_split[name] = {
            "rows": int(counts.get(name, 0)),
            "class_counts": {label: int(class_counts[index]) for index, label in enumerate(names)},
            "text_chars": percentiles(candidates.length[mask]),
        }
    rows_kept = sum(counts.values())
    return {
        "rows_in": candidates.rows_in,
        "rows_kept": rows_kept,
        "rows_rejected": rejects.total,
        "rejected_by_reason": dict(sorted(rejects.by_reason.items())),
        "first_reject_by_reason": dict(sorted(rejects.first_example.items())),
        "leaked_across_splits": rejects.by_reason.get(LEAKED_ACROSS_SPLITS, 0),
        "labels": names,
        "split_method": "source files" if use_sources else "stratified",
        "splits": per_split,
        **lineage,
    }


def check_files(candidates: Candidates, source: Source, encoding: str, text_column: str, label_column: str) -> list[str]:
    """Refuse, in one line, a file whose rows fail for one cause that is the file's, not the rows':

    - most of its rows do not decode, and none with non-ASCII bytes does: it is in another encoding;
    - every record holds a JSON object or array where the text or the label should be: the column
      named is the wrong one.

    Returns a note for each file that lost only some rows to decoding, with the flag that may save them.
    """
    uris = {item.name: item.uri for item in source.files}
    notes = []
    for name, counts in candidates.files.items():
        uri, rows, encoding = uris.get(name, name), counts["rows"], candidates.encodings.get(name, encoding)
        undecodable = counts["undecodable_text"]
        sample = candidates.first_undecodable.get(name, b"")
        if undecodable * 2 > rows and not counts["decoded_non_ascii"]:
            first = candidates.first_position[(name, "undecodable_text")]
            raise UserError(
                f"{uri}: {undecodable} of {rows} rows are not valid {encoding} (the first at {first}), and no row with non-ASCII"
                f" characters is; the file is in another encoding:"
                f" pass it, e.g. {encoding_hint(sample, encoding)}"
            )
        if undecodable:
            notes.append(
                f"{uri}: {undecodable} of {rows} rows are not valid {encoding} and were quarantined;"
                f" if the file was saved in another encoding, pass it, e.g. {encoding_hint(sample, encoding)}"
            )
        for reason, column, flag in (
            ("text_not_a_string", text_column, "text_column"),
            ("label_not_a_value", label_column, "label_column"),
        ):
            if rows and counts[reason] == rows:
                first = candidates.first_position[(name, reason)]
                raise UserError(
                    f"{uri}: the {column!r} field of every record is a JSON object or array, not"
                    f" {'text' if flag == 'text_column' else 'a label'} (the first at {first}); pass --{flag} naming the right field"
                )
    return notes


def label_rule(mapper: LabelMapper | None) -> str:
    return mapper.rule() if mapper is not None else "labels are the sorted names found in the data (--label_names auto)"


def bad_rows(stats: dict) -> dict[str, int]:
    """Rows rejected by reason, duplicates aside."""
    return {reason: count for reason, count in stats["rejected_by_reason"].items() if reason not in DEDUPLICATION_REASONS}


def commonest_reasons(counts: dict[str, int], stats: dict) -> str:
    """'45 malformed_row (first at reviews.csv record 3: expected 2 fields, found 3); ...', the commonest first."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = [f"{count} {reason} (first at {stats['first_reject_by_reason'][reason]})" for reason, count in ranked[:REASONS_SHOWN]]
    if len(ranked) > REASONS_SHOWN:
        shown.append(f"{len(ranked) - REASONS_SHOWN} more reasons in {STATS_FILE}")
    return "; ".join(shown)


def rejects_note(stats: dict, input_uri: str) -> str:
    share = stats["rows_rejected"] / stats["rows_in"]
    return (
        f"{input_uri}: {stats['rows_rejected']} of {stats['rows_in']} rows ({share:.1%}) rejected and quarantined in {REJECTS_FILE}:"
        f" {commonest_reasons(stats['rejected_by_reason'], stats)}"
    )


def check_reject_share(stats: dict, input_uri: str, max_reject_share: float) -> None:
    bad = bad_rows(stats)
    share = sum(bad.values()) / stats["rows_in"]
    if share > max_reject_share:
        raise UserError(
            f"{input_uri}: {sum(bad.values())} of {stats['rows_in']} rows ({share:.1%}) were rejected, over --max_reject_share"
            f" {max_reject_share:g}: {commonest_reasons(bad, stats)}. Fix the data or the flags, or pass --max_reject_share 1"
            " to keep the other rows"
        )


def check_outcome(
    stats: dict, names: list[str], input_uri: str, allow_missing_classes: bool, carve: dict[str, float], max_reject_share: float
) -> None:
    if stats["rows_in"] != stats["rows_kept"] + stats["rows_rejected"]:
        raise AssertionError(f"row accounting broke: {stats['rows_in']} in, {stats['rows_kept']} kept, {stats['rows_rejected']} rejected")
    if stats["rows_in"] == 0:
        raise UserError(f"{input_uri}: no data rows (a header only?); the input needs labelled rows")
    if stats["rows_kept"] == 0:
        reasons = ", ".join(f"{count} {reason}" for reason, count in stats["rejected_by_reason"].items())
        example = next(iter(stats["first_reject_by_reason"].values()))
        raise UserError(f"{input_uri}: every one of {stats['rows_in']} rows was rejected ({reasons}); first: {example}")
    check_reject_share(stats, input_uri, max_reject_share)
    if stats["splits"]["train"]["rows"] == 0:
        raise UserError(f"{input_uri}: no training rows; the source names only other splits (train/validation/test in the file names)")
    train_classes = [name for name, count in stats["splits"]["train"]["class_counts"].items() if count > 0]
    if len(train_classes) < 2:
        raise UserError(
            f"{input_uri}: only one class ({', '.join(train_classes)}) among the kept training rows;"
            f" a classifier needs at least two: check --label_column and --label_names ({', '.join(names)})"
        )
    for split in SPLITS:
        missing = [name for name, count in stats["splits"][split]["class_counts"].items() if count == 0]
        short = [name for name in missing if sum(stats["splits"][part]["class_counts"][name] for part in SPLITS) > 0]
        if short and split in carve and carve[split] > 0 and not allow_missing_classes:
            check_enough_distinct_rows(stats, input_uri, short, rows_needed_per_class(carve), carve)
        if missing and (split == "train" or not allow_missing_classes):
            raise UserError(
                f"{input_uri}: the {split} split has no rows of class {', '.join(repr(name) for name in missing)};"
                " add some, fix --label_names" + ("" if split == "train" else ", or pass --allow_missing_classes")
            )


def check_enough_distinct_rows(stats: dict, input_uri: str, short: list[str], needed: int, carve: dict[str, float]) -> None:
    """A split lacks classes that have rows, too few to share out: say so, with the counts."""
    have = {name: sum(stats["splits"][part]["class_counts"][name] for part in SPLITS) for name in short}
    classes = ", ".join(f"{name!r} has {count}" for name, count in have.items())
    other = sum(bad_rows(stats).values())
    duplicates = stats["rows_rejected"] - other
    splits = "/".join(["train", *(split for split, ratio in carve.items() if ratio > 0)])
    raise UserError(
        f"{input_uri}: too few distinct rows to make the splits: {stats['rows_in']} rows read, {stats['rows_kept']} distinct"
        f" kept ({duplicates} duplicates and {other} other rows rejected), and the {splits} splits need at least {needed}"
        f" distinct rows of each class, but {classes}; add rows, or pass --allow_missing_classes"
    )


if __name__ == "__main__":
    run_stage(preprocess)
