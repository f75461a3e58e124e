"""Suspect labels: preprocess ranks the rows whose given label is most likely wrong, with cleanlab
(confident learning, Northcutt et al. 2021), from out-of-fold probabilities.

The probabilities come from a cheap cross-fit over every split's rows: a TF-IDF logistic regression
trained on the other folds predicts each row, so no row is judged by a model that saw its label. The
ranked rows go to LABEL_ISSUES_FILE in preprocess's folder (split, source row, text, given label, the
label the cross-fit suggests, cleanlab's label quality); stats.json keeps their count and the top ones,
which tokenize carries on and evaluate's report shows. Nothing is dropped unless --drop_label_issues
asks: then the suspect rows of the train split alone move to rejects.parquet (reason LABEL_ISSUE), and
validation and test stay as they were, so the test score says what dropping them did.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.data.contract import CLEAN_SCHEMA, LABEL_ISSUES_FILE, SPLITS, read_split, split_file, split_file_name
from components.lib.data.quarantine import RejectsWriter

log = logging.getLogger("components.preprocess")
TOP_SHOWN = 10  # suspect rows kept in stats.json, and shown in the report
# Above this many rows a seeded random sample of them is audited (and the log says so): the cross-fit
# grows with the rows, and a sample this size already ranks the suspects among its own rows.
MAX_AUDITED_ROWS = 100_000
READ_BATCH_ROWS = 10_000
SHOWN_CHARACTERS = 200
LABEL_ISSUE = "label_issue"  # rejects.parquet's reason for a train row --drop_label_issues took out
METHOD = "cleanlab find_label_issues (self_confidence) on out-of-fold TF-IDF logistic regression probabilities"
ISSUES_SCHEMA = pa.schema(
    [("rank", pa.int32()), ("split", pa.string()), ("source_row", pa.string()), ("text", pa.string()), ("label", pa.string()),
     ("suggested", pa.string()), ("label_quality", pa.float32())]
)  # fmt: skip


def audit_labels(out: Path, label_names: list[str], folds: int, seed: int) -> tuple[dict, pa.Table | None]:
    """Write LABEL_ISSUES_FILE for the splits in `out`; what stats.json keeps of it, and the suspect rows
    of the train split (ISSUES_SCHEMA and their index in the split as `row`; None if the audit did not run)."""
    rows = audited_rows(out, seed)
    labels = rows.column("label").to_numpy()
    counts = np.bincount(labels, minlength=len(label_names))
    if (counts < folds).any():
        scarce = ", ".join(f"{name!r} ({count})" for name, count in zip(label_names, counts) if count < folds)
        return {"skipped": f"label audit: fewer rows than its {folds} folds of {scarce}; not run"}, None
    started = time.monotonic()
    probabilities = cross_fitted_probabilities(rows.column("text").to_pylist(), labels, folds, seed)
    ranked, quality = ranked_issues(labels, probabilities)
    issues = issues_table(rows, ranked, quality, probabilities.argmax(axis=1), label_names)
    pq.write_table(issues, out / LABEL_ISSUES_FILE)
    log.info("label audit: %d of %d rows have a suspect label (%.1f s; %s)", len(ranked), len(labels), time.monotonic() - started,
             LABEL_ISSUES_FILE)  # fmt: skip
    top = issues.slice(0, TOP_SHOWN).to_pylist()
    for row in top:
        row["text"] = row["text"][:SHOWN_CHARACTERS]
    in_train = pa.array(issues.column("split").to_numpy(zero_copy_only=False) == "train")
    suspects = issues.append_column("row", rows.column("row").take(pa.array(ranked, pa.int64()))).filter(in_train)
    return {"rows_audited": len(labels), "found": len(ranked), "folds": folds, "method": METHOD, "top": top}, suspects


def audited_rows(out: Path, seed: int) -> pa.Table:
    """Every split's rows with their split's name; above MAX_AUDITED_ROWS in all, each row kept with a seeded
    chance that leaves about that many (said in the log), read in batches so that the rest never sit in memory."""
    present = [split for split in SPLITS if (out / split_file_name(split)).is_file()]
    total = sum(count_rows(out, split) for split in present)
    share = min(1.0, MAX_AUDITED_ROWS / max(total, 1))
    if share < 1.0:
        log.warning(
            "label audit: %d rows; auditing a random %.0f%% of them, about %d (seed %d)", total, 100 * share, MAX_AUDITED_ROWS, seed
        )
    generator = np.random.default_rng(seed)
    tables = []
    for split in present:
        start = 0  # the index in the split of the batch's first row
        for batch in pq.ParquetFile(out / split_file_name(split)).iter_batches(batch_size=READ_BATCH_ROWS, columns=CLEAN_SCHEMA.names):
            table = pa.Table.from_batches([batch])
            table = table.append_column("row", pa.array(np.arange(start, start + len(table)), pa.int64()))
            start += len(table)
            if share < 1.0:
                table = table.filter(pa.array(generator.random(len(table)) < share))
            tables.append(table.append_column("split", pa.array([split] * len(table), pa.string())))
    return pa.concat_tables(tables)


def count_rows(out: Path, split: str) -> int:
    return pq.ParquetFile(out / split_file_name(split)).metadata.num_rows


def cross_fitted_probabilities(texts: list[str], labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's class probabilities from a TF-IDF logistic regression fitted on the other folds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2), LogisticRegression(max_iter=1000))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, texts, labels, cv=splitter, method="predict_proba")


def ranked_issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the rows cleanlab finds mislabelled, most likely first, and every row's label quality."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(ranked, dtype=np.int64), get_label_quality_scores(labels, probabilities)


def issues_table(rows: pa.Table, ranked: np.ndarray, quality: np.ndarray, suggested: np.ndarray, label_names: list[str]) -> pa.Table:
    names = np.array(label_names, dtype=object)
    chosen = rows.take(pa.array(ranked, pa.int64()))
    return pa.table(
        {
            "rank": np.arange(1, len(ranked) + 1, dtype=np.int32),
            "split": chosen.column("split"),
            "source_row": chosen.column("source_row"),
            "text": chosen.column("text"),
            "label": names[chosen.column("label").to_numpy()].tolist(),
            "suggested": names[suggested[ranked]].tolist(),
            "label_quality": quality[ranked].astype(np.float32),
        },
        schema=ISSUES_SCHEMA,
    )


def drop_train_suspects(out: Path, suspects: pa.Table, rejects: RejectsWriter) -> np.ndarray:
    """Rewrite the train split without the suspect rows, each quarantined to the rejects with its label
    quality and the label the cross-fit suggests; their indices in the split, sorted."""
    indices = np.sort(suspects.column("row").to_numpy())
    train = read_split(out, "train", CLEAN_SCHEMA)
    kept = np.ones(len(train), dtype=bool)
    kept[indices] = False
    pq.write_table(train.filter(pa.array(kept)), split_file(out, "train"))
    for row in suspects.to_pylist():
        source, _, position = row["source_row"].rpartition(":")
        detail = f"label quality {row['label_quality']:.3f}; the cross-fit suggests {row['suggested']!r} (--drop_label_issues)"
        rejects.add(source, position, LABEL_ISSUE, detail, row["text"], row["label"])
    log.info("label audit: %d suspect train rows dropped (--drop_label_issues); validation and test are kept whole", len(indices))
    return indices
