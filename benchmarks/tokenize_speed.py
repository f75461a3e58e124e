"""Benchmark 2: tokenize rows/s beside the raw `tokenizers` batch encode, which is the limit.

    python -m benchmarks.tokenize_speed [--rows 200000]

The same texts (the first sentence of each bundled review, tweet length, repeated to `rows`), the
same tokenizer (all-MiniLM-L6-v2), truncation at 128, no padding, batches of 4096:
- raw: `tokenizers.Tokenizer.encode_batch` and `encode_batch_fast` over Python lists in memory;
- ours: the tokenize stage's own loop, which also reads the Parquet split and writes the token
  Parquet (`tokenize_split`), and the whole stage as a command would run it (load, verify, commit).

Each path runs once per round, the four taking turns, for `--rounds` rounds; the figures are each
path's median rows/s, with its slowest and fastest round beside it. One run of each varies by
+-15% on a shared 2-core machine, more than the gap these figures judge.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import BASE_MODEL, SAMPLE, first_sentence, machine, markdown_table, timed

BATCH = 4096
MAX_LENGTH = 128
PATHS = ("raw_encode_batch", "raw_encode_batch_fast", "stage_loop", "whole_stage")


def texts(rows: int) -> list[str]:
    base = [first_sentence(text) for text in pq.read_table(SAMPLE / "train.parquet", columns=["review"]).column("review").to_pylist()]
    return [base[index % len(base)] for index in range(rows)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    rows = arguments.rows

    from components.lib.data.labelled_tokenize import prepare_encoder
    from components.lib.modelling.sources import bundled_model_path, load_tokenizer

    corpus = texts(rows)
    tokenizer = load_tokenizer(BASE_MODEL, str(bundled_model_path("all-MiniLM-L6-v2")))
    encoder = prepare_encoder(tokenizer, MAX_LENGTH)
    encoder.encode_batch_fast(corpus[:BATCH])  # warm up
    rates: dict[str, list[float]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory() as scratch:
        runs = paths(corpus, encoder, Path(scratch))
        for _ in range(arguments.rounds):
            for path in PATHS:
                seconds, processed = timed(runs[path])
                rates[path].append(processed / seconds)
    median = {path: statistics.median(rates[path]) for path in PATHS}
    best_raw = max(median["raw_encode_batch"], median["raw_encode_batch_fast"])
    result = {"machine": machine(), "rows": rows, "rounds": arguments.rounds}
    for path in PATHS:
        result[f"{path}_rows_per_second"] = round(median[path])
        result[f"{path}_range"] = [round(min(rates[path])), round(max(rates[path]))]
    for path in ("stage_loop", "whole_stage"):
        result[f"{path}_vs_fastest_raw"] = round(median[path] / best_raw, 3)
    print(json.dumps(result))
    return 0


def paths(corpus: list[str], encoder, scratch: Path) -> dict:
    """Each path as a function returning the rows it tokenized; the stage's input is written once, here."""
    from components.lib.data.contract import CLEAN_SCHEMA
    from components.lib.data.labelled_tokenize import tokenize_split
    from components.lib.data.labels import write_labels
    from components.lib.storage.artifacts import commit
    from components.tokenize import tokenize

    rows = len(corpus)
    batches = [corpus[start : start + BATCH] for start in range(0, rows, BATCH)]
    data = scratch / "data"
    data.mkdir()
    for split, share in (("train", rows), ("validation", 10), ("test", 10)):
        labels = [index % 3 for index in range(share)]
        table = pa.table({"text": corpus[:share], "label": labels, "source_row": [""] * share}, schema=CLEAN_SCHEMA)
        pq.write_table(table, data / f"{split}.parquet")
    write_labels(data, ["negative", "neutral", "positive"])
    commit(data, str(data))

    def raw(method) -> int:
        for batch in batches:
            [encoding.ids for encoding in method(batch)]
        return rows

    def stage_loop() -> int:
        out = scratch / "loop"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        tokenize_split(data, out, "train", encoder, MAX_LENGTH, BATCH)
        return rows

    def whole_stage() -> int:
        output = scratch / "stage"
        shutil.rmtree(output, ignore_errors=True)
        tokenize(data_uri=str(data), output_uri=str(output), base_model=BASE_MODEL, max_length=MAX_LENGTH)
        return rows + 20

    return {
        "raw_encode_batch": lambda: raw(encoder.encode_batch),
        "raw_encode_batch_fast": lambda: raw(encoder.encode_batch_fast),
        "stage_loop": stage_loop,
        "whole_stage": whole_stage,
    }


LABELS = {
    "raw_encode_batch": "raw tokenizers encode_batch (in memory)",
    "raw_encode_batch_fast": "raw tokenizers encode_batch_fast (in memory)",
    "stage_loop": "tokenize stage loop (Parquet in, Parquet out)",
    "whole_stage": "whole tokenize stage (load, verify, commit too)",
}


def markdown(result: dict) -> str:
    best_raw = max(result["raw_encode_batch_rows_per_second"], result["raw_encode_batch_fast_rows_per_second"])
    rows = [
        [
            LABELS[path],
            f"{result[f'{path}_rows_per_second']:,}",
            "{:,} - {:,}".format(*result[f"{path}_range"]),
            f"{result[f'{path}_rows_per_second'] / best_raw:.2f}",
        ]
        for path in PATHS
    ]
    return (
        f"Machine: {result['machine']}. {result['rows']:,} review first sentences (tweet length, repeated), max_length 128;"
        f" {result['rounds']} rounds, the paths taking turns in each.\n\n"
        + markdown_table(["path", "median rows/s", "slowest - fastest round", "share of the faster raw median"], rows)
    )


if __name__ == "__main__":
    sys.exit(main())
