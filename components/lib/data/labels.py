"""The label set: decided once in preprocess, carried as `labels.json` into the registered model.

Raw labels reach an id in one of these ways:
- by name: `--label_names negative,neutral,positive` (the order is the id order), matched without
  regard to case or surrounding spaces;
- by index, the Hugging Face convention: the labels are the ids 0, 1, 2 into `--label_names`. The
  rule is decided once, by the first label read: if it matches no name and is a whole number from
  0 to len(label_names) - 1, every label is read as an index; otherwise every label is read as a
  name. The other kind is then refused row by row (an `unknown_label` reject), so a column that
  mixes the two is never half read one way and half the other. A rating column (1-10) starts as an
  index only by chance of a first rating below len(label_names), and then its higher ratings are
  refused with a hint to use `--rating_buckets`;
- by rating: `--rating_buckets "negative:1-4,neutral:5-6,positive:7-10"`, inclusive numeric ranges.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from components.lib.errors import UserError, flag_hint

LABELS_FILE = "labels.json"
AUTO = "auto"


def write_labels(folder: Path, names: list[str]) -> None:
    (folder / LABELS_FILE).write_text(json.dumps({"labels": names}, indent=2) + "\n")


def read_labels(folder: Path) -> list[str]:
    path = folder / LABELS_FILE
    try:
        names = json.loads(path.read_text())["labels"]
    except FileNotFoundError:
        raise UserError(f"{path}: missing; this folder must come from preprocess (or a stage after it)") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f'{path}: not a labels file: expected {{"labels": [names in id order]}}') from None
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(name, str) for name in names):
        raise UserError(f"{path}: expected at least two label names in id order")
    return names


@dataclass(frozen=True)
class RatingBucket:
    name: str
    low: float
    high: float


class LabelMapper:
    """Maps a raw label value to a label id, or None when the value fits no label."""

    def __init__(self, names: list[str], buckets: list[RatingBucket] | None = None) -> None:
        self.names = names
        self.buckets = buckets
        self.ids = {name.strip().lower(): index for index, name in enumerate(names)}
        self.first_label: str | None = None  # the label that decided between names and indices
        self.by_index = False

    @classmethod
    def from_flags(cls, label_names: str, rating_buckets: str) -> LabelMapper | None:
        """None means 'infer the names from the data' (`--label_names auto`)."""
        if rating_buckets:
            buckets = parse_rating_buckets(rating_buckets)
            names = list(dict.fromkeys(bucket.name for bucket in buckets))
            return cls(names, buckets)
        if label_names.strip().lower() == AUTO:
            return None
        return cls(parse_label_names(label_names))

    def to_id(self, raw: str) -> int | None:
        if self.buckets is not None:
            return self.bucket_id(raw, self.buckets)
        if self.first_label is None:
            self.first_label = raw.strip()
            self.by_index = self.name_id(raw) is None and self.index_id(raw) is not None
        return self.index_id(raw) if self.by_index else self.name_id(raw)

    def name_id(self, raw: str) -> int | None:
        return self.ids.get(raw.strip().lower())

    def index_id(self, raw: str) -> int | None:
        value = as_number(raw)
        if value is not None and value.is_integer() and 0 <= value < len(self.names):
            return int(value)
        return None

    def bucket_id(self, raw: str, buckets: list[RatingBucket]) -> int | None:
        value = as_number(raw)
        if value is None:
            return None
        for bucket in buckets:
            if bucket.low <= value <= bucket.high:
                return self.ids[bucket.name.strip().lower()]
        return None

    def rule(self) -> str:
        """Which rule turned labels into ids, in words, for the log."""
        if self.buckets is not None:
            ranges = ", ".join(f"{bucket.name} {bucket.low:g}-{bucket.high:g}" for bucket in self.buckets)
            return f"labels are ratings mapped by --rating_buckets ({ranges})"
        if self.by_index:
            return (
                f"labels are read as indices into --label_names ({self.numbered_names()}), the Hugging Face convention:"
                f" the first label, {self.first_label!r}, is a number and not a name"
            )
        return f"labels are matched by name to --label_names ({', '.join(self.names)}), ignoring case"

    def rejection(self, raw: str) -> str:
        """The reject reason of a label `to_id` does not map."""
        return "unknown_label"

    def unknown(self, raw: str) -> str:
        """Why `raw` fits no label, and what to pass instead: the detail of its reject."""
        value = raw.strip()
        if self.buckets is not None:
            ranges = ", ".join(f"{bucket.name}:{bucket.low:g}-{bucket.high:g}" for bucket in self.buckets)
            return f"{value!r} is in none of the --rating_buckets ranges ({ranges})"
        ratings = f"; for ratings pass {flag_hint('rating_buckets')}" if as_number(value) is not None else ""
        if self.by_index:
            return (
                f"{value!r} is not an index 0-{len(self.names) - 1} into --label_names ({self.numbered_names()}), and labels are"
                f" read as indices because the first label, {self.first_label!r}, is one{ratings}"
            )
        nearest = difflib.get_close_matches(value.lower(), list(self.ids), n=1)
        hint = f" (did you mean {self.names[self.ids[nearest[0]]]!r}?)" if nearest else ""
        return (
            f"{value!r} is not one of the labels {', '.join(self.names)}{hint}{ratings}; if the data's labels are right,"
            f" pass {flag_hint('label_names', 'auto')} to take the labels found in the data"
        )

    def numbered_names(self) -> str:
        return ", ".join(f"{index} {name}" for index, name in enumerate(self.names))


def as_number(raw: str) -> float | None:
    """The number `raw` spells, or None (also for NaN)."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def parse_label_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) < 2:
        raise UserError(f"--label_names: need at least two comma-separated names, got {text!r}")
    if len({name.lower() for name in names}) != len(names):
        raise UserError(f"--label_names: names repeat in {text!r}")
    return names


BUCKET_PATTERN = re.compile(r"^\s*([^:,]+?)\s*:\s*(-?[\d.]+)\s*-\s*(-?[\d.]+)\s*$")


def parse_rating_buckets(text: str) -> list[RatingBucket]:
    buckets = []
    for part in text.split(","):
        match = BUCKET_PATTERN.match(part)
        if not match:
            raise UserError(
                f"--rating_buckets: cannot read {part.strip()!r}; write name:low-high, as in negative:1-4,neutral:5-6,positive:7-10"
            )
        name, low, high = match.group(1), float(match.group(2)), float(match.group(3))
        if low > high:
            raise UserError(f"--rating_buckets: {part.strip()!r} has low > high")
        buckets.append(RatingBucket(name, low, high))
    for first, second in zip(sorted(buckets, key=lambda b: b.low), sorted(buckets, key=lambda b: b.low)[1:]):
        if second.low <= first.high:
            raise UserError(f"--rating_buckets: the ranges of {first.name!r} and {second.name!r} overlap")
    if len({bucket.name for bucket in buckets}) < 2:
        raise UserError("--rating_buckets: need at least two label names")
    return buckets
