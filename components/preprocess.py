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
   candidates to a scratch Parquet file (components/lib/data/candidates.py);
2. decide duplicates and splits from those arrays, then route the spooled rows to their files
   (splitting.py). Rejected rows go to the quarantine (quarantine.py); stats.json and the checks
   that fail the stage are in outcome.py. Augmentation, if asked, comes last, on train alone.

What it reads and writes is the task's (components/lib/tasks/): labelled texts as above
(components/lib/data/labelled.py); with `--task causal_lm` an unlabelled corpus (also plain-text files,
a document each), written as document-level splits without labels, near-duplicates removed
(components/lib/data/corpus.py).
"""

from __future__ import annotations

import codecs
import logging

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import DELIMITER, TEXT_COLUMN, takes_common_flags
from components.lib.data.augment import check_augmentation
from components.lib.data.contract import CLASSIFICATION
from components.lib.data.readers import DOCUMENT_UNITS, installed_data_path
from components.lib.errors import UserError
from components.lib.stage_flags import PreprocessFlags
from components.lib.tasks import task_named

log = logging.getLogger("components.preprocess")  # not __main__: our INFO lines show under python -m


@takes_common_flags
def preprocess(
    *,
    input_uri: str,
    output_uri: str,
    task: str = CLASSIFICATION,
    text_column: str = TEXT_COLUMN.default,
    label_column: str = "label",
    label_columns: str = "",
    label_delimiter: str = "|",
    label_names: str = PreprocessFlags.DEFAULT_LABEL_NAMES,
    rating_buckets: str = "",
    delimiter: str = DELIMITER.default,
    encoding: str = "utf-8",
    mask_urls: bool = False,
    mask_mentions: bool = False,
    max_chars: int = 20000,
    near_duplicate_threshold: float = 0.8,
    document_unit: str = "file",
    use_source_splits: bool = True,
    validation_ratio: float = 0.1,
    test_ratio: float = 0.1,
    seed: int = 42,
    allow_missing_classes: bool = False,
    max_reject_share: float = 0.1,
    augment_factor: int = 0,
    augment_alpha: float = 0.1,
    label_audit_folds: int = 5,
    drop_label_issues: bool = False,
    slice_columns: str = "",
    expected_source_fingerprint: str = "",
    executor_input: str = "",
) -> StageResult:
    """Clean, label, deduplicate and split raw labelled text into Parquet.

    Args:
      input_uri: Source data: a file or folder (local, s3:// or package://package/path) of CSV/TSV/JSON/JSONL/Parquet, or hf://name[:config].
      output_uri: Folder (local or s3://) for the splits, labels.json, stats.json and rejects.parquet.
      task: sequence_classification (one label per text, the default), multi_label_classification (any number), or causal_lm (unlabelled).
      label_column: Name of the column that holds the label (a name or a numeric rating); multi-label: the labels, split on label_delimiter.
      label_columns: multi_label_classification only: comma-separated names of 0/1 columns, one per label, instead of label_column.
      label_delimiter: multi_label_classification only: what separates the labels in a label_column cell, as in "toxic|insult".
      label_names: Label names in id order, comma-separated, or "auto" to take the sorted names found in the data.
      rating_buckets: Map numeric ratings to labels instead, e.g. "negative:1-4,neutral:5-6,positive:7-10".
      encoding: Text encoding of CSV/TSV/JSON files; rows that do not decode are quarantined.
      mask_urls: Replace URLs with "http" (for tweets).
      mask_mentions: Replace @user mentions with "@user" (for tweets).
      max_chars: Quarantine texts longer than this many characters after cleaning.
      near_duplicate_threshold: causal_lm only: quarantine a document this similar to a kept one (MinHash Jaccard, 5-grams); 0: off.
      document_unit: causal_lm only, .txt files: one document per file, or per paragraph (for one long work, such as a novel).
      use_source_splits: Keep the splits named by the source files (train/validation/test); false to re-split.
      validation_ratio: Share of rows for validation when it is split off here.
      test_ratio: Share of rows for test when it is split off here.
      seed: Seed of the stratified split.
      allow_missing_classes: Accept a validation or test split that lacks a class instead of failing.
      max_reject_share: Fail above this share of rejected rows, duplicates aside (1: never); 0.1 lets a few through, not a broken file.
      augment_factor: EDA augmentation (Wei and Zou 2019) of the train split only: this many new versions of each row; 0: none.
      augment_alpha: Share of a text's words each augmentation changes (synonyms from WordNet, insertions, swaps, deletions).
      label_audit_folds: Rank suspect labels (cleanlab on out-of-fold TF-IDF probabilities, this many folds): label_issues.parquet; 0: off.
      drop_label_issues: Move the audit's suspect train rows to rejects.parquet (validation and test kept whole, to measure the effect).
      slice_columns: Comma-separated source columns (e.g. "condition,language") kept with each row; test scores are reported by each value.
      expected_source_fingerprint: Fail if the source's content fingerprint differs (set by the pipeline; pins the cache key to the data).
    """
    chosen = task_named(task)
    check_ratios(validation_ratio, test_ratio)
    check_max_reject_share(max_reject_share)
    check_encoding(encoding)
    check_near_duplicate_threshold(near_duplicate_threshold)
    if document_unit not in DOCUMENT_UNITS:
        raise UserError(f"--document_unit: {document_unit!r} is not one of {', '.join(DOCUMENT_UNITS)}")
    check_augmentation(augment_factor, augment_alpha)
    if label_audit_folds == 1 or label_audit_folds < 0:
        raise UserError(f"--label_audit_folds: must be 0 (no audit) or at least 2, got {label_audit_folds}")
    if drop_label_issues and not label_audit_folds:
        raise UserError("--drop_label_issues: drops the rows the label audit finds; it needs --label_audit_folds 2 or more, not 0")
    flags = PreprocessFlags(
        input_uri=input_uri,
        output_uri=output_uri,
        source_fingerprint=source_fingerprint(input_uri, expected_source_fingerprint),
        text_column=text_column,
        label_column=label_column,
        label_columns=tuple(name.strip() for name in label_columns.split(",") if name.strip()),
        label_delimiter=label_delimiter,
        label_names=label_names,
        rating_buckets=rating_buckets,
        delimiter=delimiter,
        encoding=encoding,
        mask_urls=mask_urls,
        mask_mentions=mask_mentions,
        max_chars=max_chars,
        near_duplicate_threshold=near_duplicate_threshold,
        document_unit=document_unit,
        use_source_splits=use_source_splits,
        validation_ratio=validation_ratio,
        test_ratio=test_ratio,
        seed=seed,
        allow_missing_classes=allow_missing_classes,
        max_reject_share=max_reject_share,
        augment_factor=augment_factor,
        augment_alpha=augment_alpha,
        label_audit_folds=label_audit_folds,
        drop_label_issues=drop_label_issues,
        slice_columns=tuple(dict.fromkeys(name.strip() for name in slice_columns.split(",") if name.strip())),
    )
    return chosen.preprocess(flags)


def check_near_duplicate_threshold(threshold: float) -> None:
    if not 0.0 <= threshold < 1.0:
        raise UserError(f"--near_duplicate_threshold: must be at least 0 (off) and below 1, got {threshold}")


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
    found = storage.fingerprint(installed_data_path(input_uri))
    if expected and expected != found:
        raise UserError(
            f"{input_uri}: the data changed since the run was set up (fingerprint {found[:12]}, expected"
            f" {expected[:12]}); submit the run again so its cache key matches the data"
        )
    return found


if __name__ == "__main__":
    run_stage(preprocess)
