"""The label set: decided once in preprocess, carried as `labels.json` into the registered model.

Raw labels reach an id in one of two ways:
- by name: `--label_names negative,neutral,positive` (the order is the id order), matched without
  regard to case or surrounding spaces;
- by rating: `--rating_buckets "negative:1-4,neutral:5-6,positive:7-10"`, inclusive numeric ranges.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from components.lib.errors import UserError

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
        if self.buckets is None:
            return self.ids.get(raw.strip().lower())
        try:
            value = float(raw)
        except ValueError:
            return None
        if math.isnan(value):
            return None
        for bucket in self.buckets:
            if bucket.low <= value <= bucket.high:
                return self.ids[bucket.name.strip().lower()]
        return None


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
