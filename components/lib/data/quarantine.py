"""Quarantine: rows preprocess rejects go to rejects.parquet with their reason, and too many of them
fail the stage, since a large share comes from one cause that hits many rows alike."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.data.contract import REJECTS_FILE, REJECTS_SCHEMA, STATS_FILE
from components.lib.errors import UserError, flag_hint

DUPLICATE_TEXT = "duplicate_text"
LEAKED_ACROSS_SPLITS = "leaked_across_splits"
WRITE_BATCH_ROWS = 8192
DEDUPLICATION_REASONS = (DUPLICATE_TEXT, LEAKED_ACROSS_SPLITS)  # not counted against --max_reject_share
REASONS_SHOWN = 3


def writable(value: str) -> str:
    """`value` with any lone surrogate (from a JSON `\\ud83d` escape) as U+FFFD: Parquet holds UTF-8 only."""
    if value.isascii():
        return value
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in value)


class RejectsWriter:
    """Streams quarantined rows to `rejects.parquet`, counting them by reason."""

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, REJECTS_SCHEMA)
        self.rows: dict[str, list] = {name: [] for name in REJECTS_SCHEMA.names}
        self.by_reason: Counter[str] = Counter()
        self.first_example: dict[str, str] = {}

    def add(self, source: str, position: str, reason: str, detail: str, text: str, label: str) -> None:
        for name, value in zip(REJECTS_SCHEMA.names, (source, position, reason, detail, text, label)):
            self.rows[name].append(writable(value))
        self.by_reason[reason] += 1
        self.first_example.setdefault(reason, f"{source} {position}: {detail}")
        if len(self.rows["reason"]) >= WRITE_BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows["reason"]:
            self.writer.write_table(pa.table(self.rows, schema=REJECTS_SCHEMA))
            self.rows = {name: [] for name in REJECTS_SCHEMA.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


def bad_rows(stats: dict) -> dict[str, int]:
    """Rows rejected by reason, duplicates aside."""
    return {reason: count for reason, count in stats["rejected_by_reason"].items() if reason not in DEDUPLICATION_REASONS}


def commonest_reasons(counts: dict[str, int], stats: dict) -> str:
    """'45 malformed_row (first at reviews.csv record 3: expected 2 fields, found 3); ...', the commonest first."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = [f"{count} {reason} (first at {stats['first_reject_by_reason'][reason]})" for reason, count in ranked[:REASONS_SHOWN]]
    if len(ranked) > REASONS_SHOWN:
        shown.append(f"{len(ranked) - REASONS_SHOWN} more reasons in {STATS_FILE}")
    return "; ".join(shown)


def rejects_note(stats: dict, input_uri: str) -> str:
    share = stats["rows_rejected"] / stats["rows_in"]
    return (
        f"{input_uri}: {stats['rows_rejected']} of {stats['rows_in']} rows ({share:.1%}) rejected and quarantined in {REJECTS_FILE}:"
        f" {commonest_reasons(stats['rejected_by_reason'], stats)}"
    )


def check_reject_share(stats: dict, input_uri: str, max_reject_share: float) -> None:
    bad = bad_rows(stats)
    share = sum(bad.values()) / stats["rows_in"]
    if share > max_reject_share:
        raise UserError(
            f"{input_uri}: {sum(bad.values())} of {stats['rows_in']} rows ({share:.1%}) were rejected, over --max_reject_share"
            f" {max_reject_share:g}: {commonest_reasons(bad, stats)}. Fix the data or the flags, or pass {flag_hint('max_reject_share', 1)}"
            " to keep the other rows"
        )
