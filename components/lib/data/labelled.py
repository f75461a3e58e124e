"""preprocess for labelled texts: read the source, clean, map labels, quarantine bad rows, deduplicate,
split (stratified, or as the source files name the splits), optionally augment the train split, and
write the splits with labels.json, stats.json and rejects.parquet (components/preprocess.py's docstring).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.lib.cli import StageResult
from components.lib.data.augment import augment_train_split
from components.lib.data.candidates import SPLIT_CODES, Cleaning, spool_candidates
from components.lib.data.contract import LABEL_ISSUES_KEY, REJECTS_FILE, STATS_FILE, TASK_KEY
from components.lib.data.label_audit import audit_labels, drop_train_suspects
from components.lib.data.labels import LabelMapper, write_labels
from components.lib.data.outcome import build_stats, check_files, check_outcome, label_rule
from components.lib.data.quarantine import RejectsWriter, rejects_note
from components.lib.data.readers import installed_data_path, open_source, read_source
from components.lib.data.splitting import assign_splits, carved_splits, find_duplicates, route_rows
from components.lib.data.textclean import TextCleaning
from components.lib.stage_flags import PreprocessFlags
from components.lib.stage_outputs import DATASET_ARTIFACT
from components.lib.storage.artifacts import staged_output

log = logging.getLogger("components.preprocess")


@dataclass(frozen=True)
class LabelRules:
    """How a task reads labels: the mapper from a label cell to an id (None: classification's names
    found in the data), and the checks of the written splits' labels before anything is committed."""

    mapper: Any
    check_outcome: Callable[[dict, list[str], str, bool, dict[str, float], float], None] = check_outcome
    audits_labels: bool = True  # rank suspect labels (label_audit.py); single-label classification's


def preprocess_labelled(flags: PreprocessFlags, task: str, rules: LabelRules | None = None) -> StageResult:
    """Labelled texts of `task` in, clean splits out; classification's labels unless `rules` says otherwise."""
    rules = rules or LabelRules(LabelMapper.from_flags(flags.label_names, flags.rating_buckets))
    mapper = rules.mapper
    fingerprint = flags.source_fingerprint
    cleaning = Cleaning(flags.encoding, flags.mask_urls, flags.mask_mentions, flags.max_chars)
    text_cleaning = TextCleaning(flags.mask_urls, flags.mask_mentions).lineage()
    lineage = {TASK_KEY: task, "source_uri": flags.input_uri, "source_fingerprint": fingerprint, **text_cleaning}
    with (
        open_source(installed_data_path(flags.input_uri)) as source,
        tempfile.TemporaryDirectory(prefix="preprocess-") as scratch,
        staged_output(flags.output_uri, extra={"lineage": lineage}) as out,
    ):
        rejects = RejectsWriter(out / REJECTS_FILE)
        spool_path = Path(scratch) / "candidates.parquet"
        candidates = spool_candidates(
            read_source(
                source,
                flags.text_column,
                flags.label_column,
                flags.delimiter,
                flags.encoding,
                label_columns=flags.label_columns,
                slice_columns=flags.slice_columns,
            ),
            cleaning,
            mapper,
            rejects,
            spool_path,
            flags.slice_columns,
        )
        notes = source.all_notes() + check_files(candidates, source, flags.encoding, flags.text_column, flags.label_column)
        rule = label_rule(mapper)
        if mapper is not None and mapper.by_index:
            notes.append(rule)  # names were asked for and numbers found: a warning, kept in stats.json
        label_names_found = candidates.finish_labels(mapper)
        use_sources = flags.use_source_splits and source.has_named_splits
        keep, reasons = find_duplicates(candidates, use_sources)
        carve = carved_splits(candidates, keep, use_sources, flags.validation_ratio, flags.test_ratio)
        splits = assign_splits(candidates, keep, use_sources, carve, flags.seed)
        counts = route_rows(spool_path, candidates, keep, reasons, splits, out, rejects, label_names_found)
        stats = build_stats(candidates, keep, splits, counts, rejects, label_names_found, lineage, use_sources)
        stats["label_rule"] = rule
        rules.check_outcome(stats, label_names_found, flags.input_uri, flags.allow_missing_classes, carve, flags.max_reject_share)
        if rules.audits_labels and flags.label_audit_folds:  # before augmentation: only the rows the source gave are judged
            audit, suspects = audit_labels(out, label_names_found, flags.label_audit_folds, flags.seed)
            if flags.drop_label_issues and suspects is not None:
                audit["dropped_from_train"] = drop_suspects(out, suspects, rejects, keep, splits, counts)
                stats = build_stats(candidates, keep, splits, counts, rejects, label_names_found, lineage, use_sources)
                stats["label_rule"] = rule
            stats[LABEL_ISSUES_KEY] = audit
            notes += [audit["skipped"]] if "skipped" in audit else []
        rejects.close()
        if flags.augment_factor:  # after the split, so no copy of a validation or test text is trained on
            stats["augmentation"] = augment_train_split(out, flags.augment_factor, flags.augment_alpha, flags.seed)
            stats["splits"]["train"]["rows_augmented"] = stats["augmentation"]["rows_added"]
            notes.append(augmentation_note(stats["augmentation"]))
        if stats["rows_rejected"]:
            notes.append(rejects_note(stats, flags.input_uri))
        stats["notes"] = notes
        write_labels(out, label_names_found)
        (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    if rule not in notes:  # the index rule is a note already
        log.info(rule)
    for note in notes:
        log.warning(note)
    return StageResult(
        summary={
            "stage": "preprocess",
            "output_uri": flags.output_uri,
            **{key: stats[key] for key in ("rows_in", "rows_kept", "rows_rejected")},
        },
        artifact_metadata={
            DATASET_ARTIFACT: {key: stats[key] for key in ("rows_in", "rows_kept", "rows_rejected", "leaked_across_splits")}
            | {"labels": label_names_found, "source_fingerprint": fingerprint}
        },
    )


def drop_suspects(out: Path, suspects, rejects: RejectsWriter, keep: np.ndarray, splits: np.ndarray, counts: dict[str, int]) -> int:
    """Take the audit's suspect train rows out of the train split into the rejects; `keep` and `counts`
    updated to match, for stats.json. How many were dropped."""
    dropped = drop_train_suspects(out, suspects, rejects)
    keep[np.flatnonzero(keep & (splits == SPLIT_CODES["train"]))[dropped]] = False
    counts["train"] -= len(dropped)
    return len(dropped)


def augmentation_note(augmentation: dict) -> str:
    operations = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in augmentation["operations"].items())
    return (f"augmented the train split (--augment_factor {augmentation['factor']}, --augment_alpha {augmentation['alpha']}):"
            f" {augmentation['rows_added']} rows added to {augmentation['rows_before']}; {operations}")  # fmt: skip
