"""Data drift between runs: tokenize profiles each split (length in tokens, label balance, the share of
tokens the tokenizer does not know, the language mix: components/lib/data/language.py), register keeps
the train split's profile in every version (DATA_PROFILE_FILE), and the next run's register compares its
own train split with production's: each shift beyond its threshold is one line, a warning or
(--drift_check refuse) a refusal.

Distributions are compared by their population stability index, sum((a - e) * ln(a / e)) over the
bins: below 0.1 is usually read as no shift, above 0.25 as a large one; DRIFT_PSI sits between.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.lib.data.contract import DATA_PROFILE_FILE, STATS_FILE
from components.lib.storage.registry import PRODUCTION, Registry

PROFILE_LENGTH_EDGES = (8, 16, 32, 64, 128, 256)  # tokens; the bins are [0, 8), [8, 16), ..., [256, inf)
DRIFT_PSI = 0.2
UNKNOWN_RATE_RISE = 0.01  # an unknown-token rate this much above production's (and at least twice it) is a shift
DRIFT_CHECKS = ("warn", "refuse", "off")
SHARE_FLOOR = 1e-4  # an empty bin counts as this share, so that the index stays finite


def length_shares(lengths: np.ndarray) -> list[float]:
    counts = np.bincount(np.searchsorted(PROFILE_LENGTH_EDGES, lengths, side="right"), minlength=len(PROFILE_LENGTH_EDGES) + 1)
    return [round(float(count) / max(len(lengths), 1), 6) for count in counts]


def stability_index(expected: list[float], actual: list[float]) -> float:
    e = np.maximum(np.asarray(expected, dtype=float), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_lines(production: dict, current: dict) -> list[str]:
    """Each shift of the current train split from production's beyond its threshold, in one line."""
    lines = []
    if "length_shares" in production and "length_shares" in current:
        index = stability_index(production["length_shares"], current["length_shares"])
        if index > DRIFT_PSI:
            lines.append(
                f"text length has shifted from production's training data: PSI {index:.3f} > {DRIFT_PSI} (median"
                f" {production['tokens']['p50']} -> {current['tokens']['p50']} tokens)"
            )
    names = list(production.get("class_counts", {}))
    if names and list(current.get("class_counts", {})) == names:
        before, after = (shares(profile["class_counts"], names) for profile in (production, current))
        index = stability_index(before, after)
        if index > DRIFT_PSI:
            moved = ", ".join(f"{name} {old:.2f} -> {new:.2f}" for name, old, new in zip(names, before, after))
            lines.append(f"label balance has shifted from production's training data: PSI {index:.3f} > {DRIFT_PSI} ({moved})")
    if "language_shares" in production and "language_shares" in current:
        lines += language_drift(production["language_shares"], current["language_shares"])
    old_rate, new_rate = production.get("unknown_token_rate"), current.get("unknown_token_rate")
    if old_rate is not None and new_rate is not None and new_rate > max(old_rate + UNKNOWN_RATE_RISE, 2 * old_rate):
        lines.append(f"the tokenizer knows fewer of the tokens: unknown-token rate {old_rate:.4f} -> {new_rate:.4f} (another language?)")
    return lines


def language_drift(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """The language mix's shift, in one line, if its PSI (over the languages of either profile) is over DRIFT_PSI."""
    languages = sorted(set(before) | set(after), key=lambda language: -max(before.get(language, 0.0), after.get(language, 0.0)))
    index = stability_index([before.get(language, 0.0) for language in languages], [after.get(language, 0.0) for language in languages])
    if index <= DRIFT_PSI:
        return []
    moved = ", ".join(f"{language} {before.get(language, 0.0):.2f} -> {after.get(language, 0.0):.2f}" for language in languages[:4])
    return [f"the language mix has shifted from production's training data: PSI {index:.3f} > {DRIFT_PSI} ({moved})"]


def shares(counts: dict[str, int], names: list[str]) -> list[float]:
    total = max(sum(counts.values()), 1)
    return [counts[name] / total for name in names]


def train_profile(data_dir: Path) -> dict | None:
    """The train split's profile that tokenize wrote; None for data tokenized before profiles existed."""
    path = data_dir / STATS_FILE
    profile = json.loads(path.read_text()).get("splits", {}).get("train") if path.is_file() else None
    return profile if profile and "length_shares" in profile else None


def drift_from_production(registry: Registry, data_dir: Path) -> list[str]:
    """The shifts of this run's train split from the production version's; none without both profiles."""
    current = train_profile(data_dir)
    if current is None or registry.read_alias(PRODUCTION) is None:
        return []
    with registry.fetch(PRODUCTION) as (_, folder, _manifest):
        path = folder / DATA_PROFILE_FILE
        return drift_lines(json.loads(path.read_text()), current) if path.is_file() else []


def unknown_rate(unknown: int, tokens: int) -> float | None:
    return round(unknown / tokens, 6) if tokens else None
