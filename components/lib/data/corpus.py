"""preprocess --task causal_lm: an unlabelled corpus in, document-level train/validation/test splits out.

A document is a record's text column (CSV, TSV, JSON, JSON Lines, Parquet, hf://; no label column
is read) or a whole `.txt` file. It follows classification's two streaming passes and reuses its
parts, with every document as a row of one class:

1. read, decode and clean each document and check it (empty, over --max_chars, undecodable: to the
   quarantine with its reason); keep an 8-byte hash, a length, a source split and a MinHash
   signature per document in memory, and spool the texts to scratch Parquet;
2. drop exact duplicates (`find_duplicates`: same text ignoring case; across source splits the copy
   in the most protected split stays), then near-duplicates, then draw the splits (`assign_splits`
   with a single class is a seeded shuffle of documents), and route each spooled document, whole,
   to one split file or to the quarantine.

Cleaning is classification's (`TextCleaning`: HTML unescaped, NFKC, control characters removed,
masks) applied to each line, so a document keeps its line breaks, which a language model learns
paragraphs from: spaces within a line collapse, empty lines go, and lines are joined by one `\\n`.

Near-duplicates: MinHash (Broder 1997) over the document's character 5-grams, casefolded, which
works for every script, with or without spaces between words. A shingle's hash is a polynomial in
its code points modulo the Mersenne prime 2^31 - 1 (computed for all shingles at once with numpy);
the 128 hash functions are (a*x + b) mod that prime, so every product fits in 64 bits. LSH banding
picks the pairs to compare: the bands are as narrow as keeps a pair at the threshold sharing a band
with probability 0.99, and each candidate pair is then checked on the whole signature. Documents are
visited in keeping order (source order; with source splits, test before validation before train),
each compared with the documents kept so far: one whose estimated Jaccard similarity to a kept one
reaches --near_duplicate_threshold is quarantined as `near_duplicate`, naming the one kept. Like
exact duplicates, near-duplicates do not count against --max_reject_share.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.cli import StageResult
from components.lib.data.candidates import SPLIT_CODES, UNASSIGNED, Candidates, Cleaning, check_text, check_unicode, decode_row, text_key
from components.lib.data.contract import CAUSAL_LM, CORPUS_SCHEMA, REJECTS_FILE, SPLITS, STATS_FILE, TASK_KEY, split_file
from components.lib.data.outcome import check_files, check_rows_accounted, percentiles
from components.lib.data.quarantine import (
    DUPLICATE_TEXT,
    LEAKED_ACROSS_SPLITS,
    WRITE_BATCH_ROWS,
    RejectsWriter,
    bad_rows,
    check_reject_share,
    rejects_note,
)
from components.lib.data.readers import DOCUMENT_FORMATS, WHOLE_FILE, SourceBatch, installed_data_path, open_source, read_source
from components.lib.data.splitting import KEEP_PRIORITY, assign_splits, carved_splits, find_duplicates
from components.lib.data.textclean import TextCleaning, clean_text
from components.lib.errors import UserError, flag_hint
from components.lib.stage_flags import PreprocessFlags
from components.lib.stage_outputs import DATASET_ARTIFACT
from components.lib.storage.artifacts import staged_output

log = logging.getLogger("components.preprocess")

NEAR_DUPLICATE = "near_duplicate"
KEPT, DUPLICATE_CODE, LEAKED_CODE, NEAR_DUPLICATE_CODE = 0, 1, 2, 3  # 1 and 2 are find_duplicates' codes
SHINGLE_CHARS = 5
PERMUTATIONS = 128
MERSENNE_PRIME = (1 << 31) - 1
SHINGLE_BASE = 1_000_003  # the polynomial's base: any number below the prime
SHINGLE_CHUNK = 2048  # shingles hashed at a time: bounds memory (2 MiB) for a long document
BAND_RECALL = 0.99  # the chance a pair at the threshold shares an LSH band
_rng = np.random.default_rng(20240613)  # fixed: signatures must not depend on the run
HASH_A = _rng.integers(1, MERSENNE_PRIME, PERMUTATIONS, dtype=np.uint64)
HASH_B = _rng.integers(0, MERSENNE_PRIME, PERMUTATIONS, dtype=np.uint64)
BAND_MIXERS = _rng.integers(1, 1 << 63, PERMUTATIONS, dtype=np.uint64) | np.uint64(1)  # odd: folds a band into one key
SPOOL_SCHEMA = pa.schema([*CORPUS_SCHEMA, ("source", pa.string()), ("position", pa.string())])


@dataclass(frozen=True)
class CorpusFlags:
    input_uri: str
    output_uri: str
    source_fingerprint: str
    text_column: str
    delimiter: str
    cleaning: Cleaning
    use_source_splits: bool
    validation_ratio: float
    test_ratio: float
    seed: int
    max_reject_share: float
    near_duplicate_threshold: float
    document_unit: str = "file"


@dataclass
class Documents(Candidates):
    """Classification's candidates (every label 0), plus a MinHash signature per document."""

    signatures: list[np.ndarray] = field(default_factory=list)
    signing: bool = True  # off when near-duplicates are not looked for

    def add(self, hashes: list[int], lengths: list[int], signatures: list[np.ndarray], split: str | None) -> None:
        self.hashes.append(np.array(hashes, dtype=np.uint64))
        self.lengths.append(np.array(lengths, dtype=np.int32))
        self.label_codes.append(np.zeros(len(hashes), dtype=np.int32))
        self.source_splits.append(np.full(len(hashes), SPLIT_CODES.get(split, UNASSIGNED) if split else UNASSIGNED, dtype=np.int8))
        self.signatures.append(np.array(signatures, dtype=np.uint32).reshape(len(signatures), PERMUTATIONS))

    def finish(self) -> None:
        self.finish_labels(None)
        self.signature = np.concatenate(self.signatures) if self.signatures else np.zeros((0, PERMUTATIONS), np.uint32)


@dataclass
class Decision:
    keep: np.ndarray
    reasons: np.ndarray  # KEPT, DUPLICATE_CODE, LEAKED_CODE or NEAR_DUPLICATE_CODE per document
    near: dict[int, tuple[int, float]]  # near-duplicate -> (the document kept, estimated Jaccard similarity)
    splits: np.ndarray
    carve: dict[str, float]
    use_sources: bool


def preprocess_corpus_flags(flags: PreprocessFlags) -> StageResult:
    """preprocess's flags for an unlabelled corpus: those that need labels refused."""
    check_corpus_flags(flags.augment_factor, flags.rating_buckets, flags.slice_columns, flags.drop_label_issues)
    corpus = CorpusFlags(
        input_uri=flags.input_uri,
        output_uri=flags.output_uri,
        source_fingerprint=flags.source_fingerprint,
        text_column=flags.text_column,
        delimiter=flags.delimiter,
        cleaning=Cleaning(flags.encoding, flags.mask_urls, flags.mask_mentions, flags.max_chars),
        use_source_splits=flags.use_source_splits,
        validation_ratio=flags.validation_ratio,
        test_ratio=flags.test_ratio,
        seed=flags.seed,
        max_reject_share=flags.max_reject_share,
        near_duplicate_threshold=flags.near_duplicate_threshold,
        document_unit=flags.document_unit,
    )
    return preprocess_corpus(corpus)


def check_corpus_flags(
    augment_factor: int, rating_buckets: str, slice_columns: tuple[str, ...] = (), drop_label_issues: bool = False
) -> None:
    """Refuse the flags that need labels, which --task causal_lm does not read."""
    if slice_columns:
        raise UserError("--slice_columns: slices score a classifier's test rows; --task causal_lm has none, leave it empty")
    if drop_label_issues:
        raise UserError("--drop_label_issues: the label audit judges labels, and --task causal_lm reads none; leave it off")
    if augment_factor:
        raise UserError("--augment_factor: EDA augmentation is for labelled texts; with --task causal_lm pass 0")
    if rating_buckets:
        raise UserError("--rating_buckets: maps ratings to labels, and --task causal_lm reads no labels; leave it empty")


def preprocess_corpus(flags: CorpusFlags) -> StageResult:
    cleaning = TextCleaning(flags.cleaning.mask_urls, flags.cleaning.mask_mentions)
    lineage = {TASK_KEY: CAUSAL_LM, "source_uri": flags.input_uri, "source_fingerprint": flags.source_fingerprint, **cleaning.lineage()}
    with (
        open_source(installed_data_path(flags.input_uri), DOCUMENT_FORMATS) as source,
        tempfile.TemporaryDirectory(prefix="preprocess-") as scratch,
        staged_output(flags.output_uri, extra={"lineage": lineage}) as out,
    ):
        rejects = RejectsWriter(out / REJECTS_FILE)
        spool_path = Path(scratch) / "documents.parquet"
        records = read_source(source, flags.text_column, "", flags.delimiter, flags.cleaning.encoding, flags.document_unit)
        documents = spool_documents(records, flags, rejects, spool_path)
        notes = source.all_notes() + check_files(documents, source, flags.cleaning.encoding, flags.text_column, "")
        decision = decide(documents, flags, source.has_named_splits)
        route_documents(spool_path, decision, out, rejects)
        rejects.close()
        stats = build_corpus_stats(documents, decision, rejects, flags, lineage)
        check_corpus(stats, decision, flags)
        if stats["rows_rejected"]:
            notes.append(rejects_note(stats, flags.input_uri))
        stats["notes"] = notes
        (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    for note in notes:
        log.warning(note)
    counts = {key: stats[key] for key in ("rows_in", "rows_kept", "rows_rejected")}
    return StageResult(
        summary={"stage": "preprocess", "output_uri": flags.output_uri, **counts},
        artifact_metadata={
            DATASET_ARTIFACT: counts
            | {key: stats[key] for key in (TASK_KEY, "exact_duplicates", "near_duplicates", "leaked_across_splits", "source_fingerprint")}
        },
    )


# --- pass 1: read, clean, check, sign and spool


def spool_documents(records, flags: CorpusFlags, rejects: RejectsWriter, spool_path: Path) -> Documents:
    documents = Documents(signing=flags.near_duplicate_threshold > 0)
    with pq.ParquetWriter(spool_path, SPOOL_SCHEMA) as spool:
        for record in records:
            if isinstance(record, SourceBatch):
                table = check_documents(record, flags.cleaning, rejects, documents)
                if table.num_rows:
                    spool.write_table(table)
            else:
                documents.rows_in += 1
                documents.tally(record.source, record.position, record.reason)
                rejects.add(record.source, record.position, record.reason, record.detail, record.raw, "")
    documents.finish()
    return documents


def check_documents(batch: SourceBatch, cleaning: Cleaning, rejects: RejectsWriter, documents: Documents) -> pa.Table:
    """Decode, clean and check one batch; quarantine what fails; return the documents that pass."""
    encoding = documents.encodings.setdefault(batch.source, batch.encoding or cleaning.encoding)
    kept: dict[str, list] = {name: [] for name in SPOOL_SCHEMA.names}
    hashes, lengths, signatures = [], [], []
    for position, raw in zip(batch.positions, batch.texts):
        documents.rows_in += 1
        text, problem = decode_document(raw, encoding, batch.source, position, documents)
        if problem is None:
            text = clean_document(text, cleaning)
            problem = check_text(text, cleaning.max_chars) or check_unicode(text, "")
        if position != WHOLE_FILE:  # check_files judges a file's encoding by its rows; a whole file is one document
            documents.tally(batch.source, position, problem[0] if problem else None)
        if problem is not None:
            rejects.add(batch.source, position, *problem, text or "", "")
            continue
        for name, value in zip(SPOOL_SCHEMA.names, (text, source_row(batch.source, position), batch.source, position)):
            kept[name].append(value)
        hashes.append(text_key(text))
        lengths.append(len(text))
        signatures.append(minhash(text) if documents.signing else np.zeros(PERMUTATIONS, np.uint32))
    documents.add(hashes, lengths, signatures, batch.split)
    return pa.table(kept, schema=SPOOL_SCHEMA)


def decode_document(raw, encoding: str, source: str, position: str, documents: Documents) -> tuple[str, tuple[str, str] | None]:
    """The text, or why it is not text; records for check_files whether a record's non-ASCII bytes decoded."""
    text, _, problem = decode_row(raw, None, encoding)
    if position == WHOLE_FILE:
        return text, problem
    if problem is None and not raw.isascii():
        documents.files.setdefault(source, Counter())["decoded_non_ascii"] += 1
    if problem is not None and problem[0] == "undecodable_text":
        documents.first_undecodable.setdefault(source, raw)
    return text, problem


def clean_document(text: str, cleaning: Cleaning) -> str:
    """Each line cleaned as classification cleans a text; empty lines dropped; lines joined by one newline."""
    lines = (clean_text(line, cleaning.mask_urls, cleaning.mask_mentions) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def source_row(source: str, position: str) -> str:
    """Where a document came from: the file's name for a whole file, else `file:position` as classification writes it."""
    return source if position == WHOLE_FILE else f"{source}:{position}"


# --- MinHash


def shingle_hashes(text: str) -> np.ndarray:
    """The distinct hashes of the text's character 5-grams, casefolded, whitespace as one space."""
    points = np.frombuffer(" ".join(text.casefold().split()).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = min(SHINGLE_CHARS, len(points))
    count = len(points) - width + 1
    hashes = np.zeros(count, dtype=np.uint64)
    for offset in range(width):
        hashes = (hashes * np.uint64(SHINGLE_BASE) + points[offset : offset + count]) % np.uint64(MERSENNE_PRIME)
    return np.unique(hashes)


def minhash(text: str) -> np.ndarray:
    """The text's signature: per hash function, the least (a*x + b) mod p over its shingle hashes x."""
    signature = np.full(PERMUTATIONS, MERSENNE_PRIME, dtype=np.uint64)
    shingles = shingle_hashes(text)
    for start in range(0, len(shingles), SHINGLE_CHUNK):
        chunk = shingles[start : start + SHINGLE_CHUNK]
        hashed = (np.outer(HASH_A, chunk) + HASH_B[:, None]) % np.uint64(MERSENNE_PRIME)
        np.minimum(signature, hashed.min(axis=1), out=signature)
    return signature.astype(np.uint32)


def similarity(signatures: np.ndarray, one: int, others: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of document `one` to each of `others`: the share of equal minima."""
    return (signatures[others] == signatures[one]).mean(axis=1)


def band_rows(threshold: float) -> int:
    """Rows per LSH band: the most (fewest pairs to check) that still give a pair at `threshold` BAND_RECALL."""
    for rows in (64, 32, 16, 8, 4, 2):
        if 1 - (1 - threshold**rows) ** (PERMUTATIONS // rows) >= BAND_RECALL:
            return rows
    return 1


def band_keys(signatures: np.ndarray, rows: int) -> np.ndarray:
    """One uint64 key per document and band; documents with equal keys in a band are compared."""
    bands = signatures.astype(np.uint64).reshape(len(signatures), PERMUTATIONS // rows, rows)
    return (bands * BAND_MIXERS[:rows]).sum(axis=2)  # wraps modulo 2^64; a collision only costs a check


def sharing_a_band(keys: np.ndarray) -> np.ndarray:
    """Whether each document shares at least one band key with another: only those can be near-duplicates."""
    shared = np.zeros(len(keys), dtype=bool)
    for band in keys.T:
        _, inverse, counts = np.unique(band, return_inverse=True, return_counts=True)
        shared |= counts[inverse] > 1
    return shared


def find_near_duplicates(signatures: np.ndarray, order: np.ndarray, threshold: float) -> dict[int, tuple[int, float]]:
    """{near-duplicate: (kept document, similarity)}: each document in `order` against those kept before it."""
    keys = band_keys(signatures, band_rows(threshold))
    buckets: list[dict[int, list[int]]] = [{} for _ in range(keys.shape[1])]
    near = {}
    for index in order[sharing_a_band(keys)[order]].tolist():
        row = keys[index].tolist()
        earlier = {kept for band, key in enumerate(row) for kept in buckets[band].get(key, ())}
        if earlier:
            compared = np.array(sorted(earlier))
            scores = similarity(signatures, index, compared)
            if scores.max() >= threshold:
                near[index] = (int(compared[scores.argmax()]), float(scores.max()))
                continue
        for band, key in enumerate(row):
            buckets[band].setdefault(key, []).append(index)
    return near


# --- pass 2: decide, route


def keeping_order(documents: Documents, keep: np.ndarray, use_sources: bool) -> np.ndarray:
    """The kept documents, the one to keep of a near pair first: source order, by split priority with source splits."""
    split = documents.source_split if use_sources else np.full(len(documents), UNASSIGNED, dtype=np.int8)
    order = np.lexsort((np.arange(len(documents)), KEEP_PRIORITY[split + 1]))
    return order[keep[order]]


def decide(documents: Documents, flags: CorpusFlags, named_splits: bool) -> Decision:
    use_sources = flags.use_source_splits and named_splits
    keep, reasons = find_duplicates(documents, use_sources)
    near = {}
    if flags.near_duplicate_threshold > 0:
        near = find_near_duplicates(documents.signature, keeping_order(documents, keep, use_sources), flags.near_duplicate_threshold)
        keep[list(near)] = False
        reasons[list(near)] = NEAR_DUPLICATE_CODE
    carve = carved_splits(documents, keep, use_sources, flags.validation_ratio, flags.test_ratio)
    splits = assign_splits(documents, keep, use_sources, carve, flags.seed)
    return Decision(keep, reasons, near, splits, carve, use_sources)


def rows_of(spool_path: Path, indices: set[int]) -> dict[int, str]:
    """{index: source_row} of the spooled documents at `indices`."""
    wanted = sorted(indices)
    rows = pq.read_table(spool_path, columns=["source_row"]).column(0).take(pa.array(wanted, pa.int64())).to_pylist()
    return dict(zip(wanted, rows))


def rejection(index: int, decision: Decision, kept_rows: dict[int, str]) -> tuple[str, str]:
    """The reason and detail of a document dropped in pass 2."""
    code = decision.reasons[index]
    if code == LEAKED_CODE:
        return LEAKED_ACROSS_SPLITS, "the same text is kept in a more protected split (test before validation before train)"
    if code == DUPLICATE_CODE:
        return DUPLICATE_TEXT, "the same text is kept at an earlier row"
    kept, score = decision.near[index]
    return NEAR_DUPLICATE, f"estimated Jaccard similarity {score:.2f} to {kept_rows[kept]}, which is kept"


def route_documents(spool_path: Path, decision: Decision, out: Path, rejects: RejectsWriter) -> None:
    """Second pass: copy each spooled document, whole, to its split file, or to the rejects with its reason."""
    kept_rows = rows_of(spool_path, {kept for kept, _ in decision.near.values()})
    writers = {name: pq.ParquetWriter(split_file(out, name), CORPUS_SCHEMA) for name in SPLITS}
    start = 0
    for batch in pq.ParquetFile(spool_path).iter_batches(batch_size=WRITE_BATCH_ROWS):
        table = pa.Table.from_batches([batch])
        keep, splits = decision.keep[start : start + len(table)], decision.splits[start : start + len(table)]
        for code, name in enumerate(SPLITS):
            if (mask := keep & (splits == code)).any():
                writers[name].write_table(table.filter(pa.array(mask)).select(CORPUS_SCHEMA.names))
        for index in np.flatnonzero(~keep).tolist():
            row = table.slice(index, 1).to_pylist()[0]
            rejects.add(row["source"], row["position"], *rejection(start + index, decision, kept_rows), row["text"], "")
        start += len(table)
    for writer in writers.values():
        writer.close()


# --- what came of it


def build_corpus_stats(documents: Documents, decision: Decision, rejects: RejectsWriter, flags: CorpusFlags, lineage: dict) -> dict:
    splits = {}
    for code, name in enumerate(SPLITS):
        lengths = documents.length[decision.keep & (decision.splits == code)]
        splits[name] = {"documents": len(lengths), "characters": int(lengths.sum()), "document_chars": percentiles(lengths)}
    return {
        "rows_in": documents.rows_in,
        "rows_kept": sum(split["documents"] for split in splits.values()),
        "rows_rejected": rejects.total,
        "rejected_by_reason": dict(sorted(rejects.by_reason.items())),
        "first_reject_by_reason": dict(sorted(rejects.first_example.items())),
        "exact_duplicates": rejects.by_reason.get(DUPLICATE_TEXT, 0) + rejects.by_reason.get(LEAKED_ACROSS_SPLITS, 0),
        "leaked_across_splits": rejects.by_reason.get(LEAKED_ACROSS_SPLITS, 0),
        "near_duplicates": rejects.by_reason.get(NEAR_DUPLICATE, 0),
        "near_duplicate_threshold": flags.near_duplicate_threshold,
        "split_method": "source files" if decision.use_sources else "random by document",
        "splits": splits,
        **lineage,
    }


def check_corpus(stats: dict, decision: Decision, flags: CorpusFlags) -> None:
    check_rows_accounted(stats, flags.input_uri, "documents", "the corpus needs texts")
    duplicates_aside = {**stats, "rejected_by_reason": bad_rows(stats)}
    duplicates_aside["rejected_by_reason"].pop(NEAR_DUPLICATE, None)
    check_reject_share(duplicates_aside, flags.input_uri, flags.max_reject_share)
    for split in SPLITS:
        if stats["splits"][split]["documents"] == 0:
            raise empty_split_error(split, stats, decision, flags)


def empty_split_error(split: str, stats: dict, decision: Decision, flags: CorpusFlags) -> UserError:
    """One line for a split left with no document: how many there were, and what would fill it."""
    if decision.carve.get(split) == 0:
        remedy = f"raise --{split}_ratio above 0"
    elif decision.use_sources and split not in decision.carve:
        remedy = f"add documents to the source's {split} files, or pass {flag_hint('use_source_splits', 'false')}"
    else:
        remedy = "add documents"
    dropped = stats["rows_rejected"]
    return UserError(
        f"{flags.input_uri}: the {split} split is empty: {stats['rows_in']} documents read, {stats['rows_kept']} kept"
        f" ({dropped} rejected), too few to give each of train, validation and test one; {remedy}"
    )
