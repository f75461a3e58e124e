"""Preprocess's second pass: duplicates decided (the copy in the most protected split is kept), the
splits drawn (stratified, seeded), and every spooled row routed to its split file or the rejects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.data.candidates import SPLIT_CODES, UNASSIGNED, Candidates
from components.lib.data.contract import SPLITS, split_file
from components.lib.data.quarantine import DUPLICATE_TEXT, LEAKED_ACROSS_SPLITS, WRITE_BATCH_ROWS, RejectsWriter

# Which copy of a repeated text to keep, indexed by split code + 1: test first, then validation,
# then train, then rows with no split yet.
KEEP_PRIORITY = np.array([3, 2, 1, 0])


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
    writers = {name: pq.ParquetWriter(split_file(out, name), candidates.schema) for name in SPLITS}
    counts: Counter[str] = Counter()
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
