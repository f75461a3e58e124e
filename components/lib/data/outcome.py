"""What preprocess made of a source: stats.json, and the checks on it that fail the stage (an empty
split, a missing class, too few distinct rows, a column that is not there)."""

from __future__ import annotations

import numpy as np

from components.lib.data.candidates import Candidates
from components.lib.data.contract import SPLITS
from components.lib.data.labels import LabelMapper
from components.lib.data.quarantine import LEAKED_ACROSS_SPLITS, bad_rows, check_reject_share
from components.lib.data.readers import Source, encoding_hint
from components.lib.data.splitting import rows_needed_per_class
from components.lib.errors import UserError, flag_hint


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
                    f" {'text' if flag == 'text_column' else 'a label'} (the first at {first});"
                    f" pass {flag_hint(flag)} naming the right field"
                )
    return notes


def label_rule(mapper: LabelMapper | None) -> str:
    return mapper.rule() if mapper is not None else "labels are the sorted names found in the data (--label_names auto)"


def check_rows_accounted(stats: dict, input_uri: str, rows: str, needed: str) -> None:
    """Every row read is kept or rejected; refuse a source with no `rows`, or with every one rejected."""
    if stats["rows_in"] != stats["rows_kept"] + stats["rows_rejected"]:
        raise AssertionError(f"row accounting broke: {stats['rows_in']} in, {stats['rows_kept']} kept, {stats['rows_rejected']} rejected")
    if stats["rows_in"] == 0:
        raise UserError(f"{input_uri}: no {rows} (a header only?); {needed}")
    if stats["rows_kept"] == 0:
        reasons = ", ".join(f"{count} {reason}" for reason, count in stats["rejected_by_reason"].items())
        example = next(iter(stats["first_reject_by_reason"].values()))
        noun = rows.split()[-1]
        raise UserError(f"{input_uri}: every one of {stats['rows_in']} {noun} was rejected ({reasons}); first: {example}")


def check_outcome(
    stats: dict, names: list[str], input_uri: str, allow_missing_classes: bool, carve: dict[str, float], max_reject_share: float
) -> None:
    check_rows_accounted(stats, input_uri, "data rows", "the input needs labelled rows")
    check_reject_share(stats, input_uri, max_reject_share)
    if stats["splits"]["train"]["rows"] == 0:
        raise UserError(f"{input_uri}: no training rows; the source names only other splits (train/validation/test in the file names)")
    train_classes = [name for name, count in stats["splits"]["train"]["class_counts"].items() if count > 0]
    if len(train_classes) < 2:
        raise UserError(
            f"{input_uri}: only one class ({', '.join(train_classes)}) among the kept training rows;"
            f" a classifier needs at least two: check {flag_hint('label_column')} and {flag_hint('label_names')} ({', '.join(names)})"
        )
    for split in SPLITS:
        missing = [name for name, count in stats["splits"][split]["class_counts"].items() if count == 0]
        short = [name for name in missing if sum(stats["splits"][part]["class_counts"][name] for part in SPLITS) > 0]
        if short and split in carve and carve[split] > 0 and not allow_missing_classes:
            check_enough_distinct_rows(stats, input_uri, short, rows_needed_per_class(carve), carve)
        if missing and (split == "train" or not allow_missing_classes):
            raise UserError(
                f"{input_uri}: the {split} split has no rows of class {', '.join(repr(name) for name in missing)};"
                f" add some, fix {flag_hint('label_names')}"
                + ("" if split == "train" else f", or pass {flag_hint('allow_missing_classes', True)}")
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
        f" distinct rows of each class, but {classes}; add rows, or pass {flag_hint('allow_missing_classes', True)}"
    )
