"""Stratified K-fold cross-validation over the train and validation splits together.

`python -m components.tokenize --num_folds 5 --fold 2` writes fold 2: the rows of fold 2 become the
validation split, the other folds the train split, and the test split stays as it is. Folds are a
pure function of the rows' labels, K and the seed, so every fold of one run partitions the same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.data.contract import TOKENIZED_SCHEMA, read_split, split_file
from components.lib.errors import UserError


def stratified_folds(labels: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """The fold of every row: each class's rows, shuffled with the seed, dealt round-robin, so every
    fold holds each class within one row of its share."""
    folds = np.empty(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    next_fold = 0
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        folds[rows] = (np.arange(len(rows)) + next_fold) % num_folds
        next_fold = (next_fold + len(rows)) % num_folds  # the next class starts where this one stopped, so fold sizes even out
    return folds


def check_fold_flags(num_folds: int, fold: int) -> None:
    if num_folds == 0:
        if fold:
            raise UserError(f"--fold {fold}: needs --num_folds (2 or more)")
        return
    if num_folds < 2:
        raise UserError(f"--num_folds: must be 0 (no folds) or at least 2, got {num_folds}")
    if not 0 <= fold < num_folds:
        raise UserError(f"--fold: must be in 0..{num_folds - 1} for --num_folds {num_folds}, got {fold}")


def write_fold(folder: Path, num_folds: int, fold: int, seed: int) -> dict[str, int]:
    """Rewrite the tokenized train and validation splits in `folder` as fold `fold` of `num_folds`."""
    pooled = pa.concat_tables([read_split(folder, split, TOKENIZED_SCHEMA) for split in ("train", "validation")])
    labels = pooled.column("label").to_numpy()
    smallest = int(np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0
    if smallest < num_folds:
        raise UserError(f"--num_folds {num_folds}: a class has only {smallest} train and validation rows; every fold needs one of each")
    held_out = stratified_folds(labels, num_folds, seed) == fold
    pq.write_table(pooled.filter(pa.array(~held_out)), split_file(folder, "train"))
    pq.write_table(pooled.filter(pa.array(held_out)), split_file(folder, "validation"))
    return {"train": int((~held_out).sum()), "validation": int(held_out.sum())}
