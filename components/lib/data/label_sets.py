"""Multi-label data: every text has a set of labels (`toxic|insult`), kept in the stages' one-label schemas.

A row's `label` is the id of its label SET, and labels.json lists the sets that occur, each as its
label names joined by SET_JOIN in the order of the label names ("insult|toxic"). So preprocess,
tokenize, the folds and the batching run unchanged: splits are stratified by label set (the label
powerset), class counts are per set, and a row stays one int32. The label names are the union of the
sets (`label_names_of`); the model has one output per label name, and `membership` turns set ids into
the 0/1 targets it is trained and scored on.
"""

from __future__ import annotations

import numpy as np

from components.lib.data.contract import SPLITS
from components.lib.data.outcome import check_rows_accounted
from components.lib.data.quarantine import check_reject_share
from components.lib.data.readers import MULTI_LABEL_JOIN
from components.lib.errors import UserError, flag_hint

SET_JOIN = MULTI_LABEL_JOIN  # labels.json's spelling of a set: what the readers join --label_columns with


class LabelSetMapper:
    """preprocess's label mapper for multi-label data: a label cell (`toxic|insult`, split on the
    delimiter) to the id of its set; a set holding a name outside --label_names is unknown."""

    by_index = False  # the classification mapper's rule for numeric labels: never here

    def __init__(self, label_names: list[str] | None, delimiter: str) -> None:
        self.declared = label_names  # None: any names, taken from the data
        self.delimiter = delimiter
        self.names: list[str] = []  # the sets' keys, by id (first seen)
        self.ids: dict[str, int] = {}

    def to_id(self, raw: str) -> int | None:
        parts = {part.strip() for part in raw.split(self.delimiter) if part.strip()}
        if self.declared is not None:
            lowered = {name.lower(): name for name in self.declared}
            if any(part.lower() not in lowered for part in parts):
                return None
            parts = {lowered[part.lower()] for part in parts}
            key = SET_JOIN.join(name for name in self.declared if name in parts)
        else:
            key = SET_JOIN.join(sorted(parts))
        if not key:
            return None
        if key not in self.ids:
            self.ids[key] = len(self.names)
            self.names.append(key)
        return self.ids[key]

    def rejection(self, raw: str) -> str:
        """The reject reason of a label cell `to_id` does not map: no label in it, or an unknown one."""
        return "unknown_label" if any(part.strip() for part in raw.split(self.delimiter)) else "empty_label_set"

    def unknown(self, raw: str) -> str:
        parts = [part.strip() for part in raw.split(self.delimiter) if part.strip()]
        if not parts:
            return f"{raw!r} names no label once split on --label_delimiter {self.delimiter!r}"
        lowered = {name.lower() for name in self.declared or []}
        strangers = [part for part in parts if part.lower() not in lowered]
        return f"{', '.join(repr(part) for part in strangers)} not in --label_names ({', '.join(self.declared or [])})"

    def rule(self) -> str:
        declared = (
            f"matched by name to --label_names ({', '.join(self.declared)}), ignoring case" if self.declared else "taken from the data"
        )
        return f"labels are sets split on --label_delimiter {self.delimiter!r}, {declared}"


def label_names_of(set_keys: list[str]) -> list[str]:
    """The label names of labels.json's sets, sorted."""
    return sorted({name for key in set_keys for name in key.split(SET_JOIN)})


def membership(set_keys: list[str], label_names: list[str]) -> np.ndarray:
    """(sets x labels) 0/1 matrix: row s says which labels set s holds."""
    matrix = np.zeros((len(set_keys), len(label_names)), dtype=np.float32)
    column = {name: index for index, name in enumerate(label_names)}
    for row, key in enumerate(set_keys):
        for name in key.split(SET_JOIN):
            matrix[row, column[name]] = 1.0
    return matrix


def label_counts(set_counts: dict[str, int], label_names: list[str]) -> dict[str, int]:
    """Rows per label, from rows per label set (tokenize's class counts)."""
    counts = dict.fromkeys(label_names, 0)
    for key, rows in set_counts.items():
        for name in key.split(SET_JOIN):
            counts[name] += rows
    return counts


def check_label_set_outcome(
    stats: dict, set_keys: list[str], input_uri: str, allow_missing_labels: bool, carve: dict[str, float], max_reject_share: float
) -> None:
    """preprocess's checks of multi-label splits, by label rather than by set (a rare set may well be in one
    split only): at least two labels in train, and every label in every split. Each split's rows per
    label go into stats.json."""
    check_rows_accounted(stats, input_uri, "data rows", "the input needs labelled rows")
    check_reject_share(stats, input_uri, max_reject_share)
    names = label_names_of(set_keys)
    for split in SPLITS:
        stats["splits"][split]["label_counts"] = label_counts(stats["splits"][split]["class_counts"], names)
    train = stats["splits"]["train"]
    if train["rows"] == 0:
        raise UserError(f"{input_uri}: no training rows; the source names only other splits (train/validation/test in the file names)")
    if sum(1 for count in train["label_counts"].values() if count) < 2:
        raise UserError(f"{input_uri}: fewer than two labels among the kept training rows; check {flag_hint('label_column')}"
                        f" and {flag_hint('label_delimiter')} ({', '.join(names)})")  # fmt: skip
    for split in SPLITS:
        missing = [name for name, count in stats["splits"][split]["label_counts"].items() if count == 0]
        if missing and (split == "train" or not allow_missing_labels):
            raise UserError(
                f"{input_uri}: the {split} split has no rows with label {', '.join(repr(name) for name in missing)};"
                + (" add some" if split == "train" else f" add some, or pass {flag_hint('allow_missing_classes', True)}")
            )
