"""Benchmark 2: tokenize rows/s beside the raw `tokenizers` batch encode, which is the limit.

    python -m benchmarks.tokenize_speed [--rows 200000]

The same texts (the first sentence of each bundled review, tweet length, repeated to `rows`), the
same tokenizer (all-MiniLM-L6-v2), truncation at 128, no padding, batches of 4096:
- raw: `tokenizers.Tokenizer.encode_batch` and `encode_batch_fast` over Python lists in memory;
- ours: the tokenize stage's own loop, which also reads the Parquet split and writes the token
  Parquet (`tokenize_split`), and the whole stage as a command would run it (load, verify, commit).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import BASE_MODEL, SAMPLE, first_sentence, machine, markdown_table, timed

BATCH = 4096
MAX_LENGTH = 128


def texts(rows: int) -> list[str]:
    base = [first_sentence(text) for text in pq.read_table(SAMPLE / "train.parquet", columns=["review"]).column("review").to_pylist()]
    return [base[index % len(base)] for index in range(rows)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    rows = parser.parse_args().rows

    from components.lib.data.contract import CLEAN_SCHEMA
    from components.lib.data.labels import write_labels
    from components.lib.modelling.sources import bundled_model_path, load_tokenizer
    from components.lib.storage.artifacts import commit
    from components.tokenize import prepare_encoder, tokenize, tokenize_split

    corpus = texts(rows)
    tokenizer = load_tokenizer(BASE_MODEL, str(bundled_model_path("all-MiniLM-L6-v2")))
    encoder = prepare_encoder(tokenizer, MAX_LENGTH)
    batches = [corpus[start : start + BATCH] for start in range(0, rows, BATCH)]
    raw = {}
    for name in ("encode_batch", "encode_batch_fast"):
        method = getattr(encoder, name)
        method(batches[0])  # warm up
        seconds, _ = timed(lambda method=method: [[encoding.ids for encoding in method(batch)] for batch in batches])
        raw[name] = rows / seconds
    with tempfile.TemporaryDirectory() as scratch:
        data, out = Path(scratch) / "data", Path(scratch) / "tokens"
        data.mkdir()
        for split, share in (("train", rows), ("validation", 10), ("test", 10)):
            labels = [index % 3 for index in range(share)]
            table = pa.table({"text": corpus[:share], "label": labels, "source_row": [""] * share}, schema=CLEAN_SCHEMA)
            pq.write_table(table, data / f"{split}.parquet")
        write_labels(data, ["negative", "neutral", "positive"])
        commit(data, str(data))
        out.mkdir()
        loop_seconds, _ = timed(tokenize_split, data, out, "train", encoder, MAX_LENGTH, BATCH)
        stage_seconds, _ = timed(
            tokenize, data_uri=str(data), output_uri=str(Path(scratch) / "stage"), base_model=BASE_MODEL, max_length=MAX_LENGTH
        )
    best_raw = max(raw.values())
    result = {
        "machine": machine(),
        "rows": rows,
        "raw_encode_batch_rows_per_second": round(raw["encode_batch"]),
        "raw_encode_batch_fast_rows_per_second": round(raw["encode_batch_fast"]),
        "stage_loop_rows_per_second": round(rows / loop_seconds),
        "stage_loop_vs_fastest_raw": round(rows / loop_seconds / best_raw, 3),
        "whole_stage_rows_per_second": round((rows + 20) / stage_seconds),
        "whole_stage_vs_fastest_raw": round((rows + 20) / stage_seconds / best_raw, 3),
    }
    print(json.dumps(result))
    return 0


def markdown(result: dict) -> str:
    rows = [
        ["raw tokenizers encode_batch (in memory)", result["raw_encode_batch_rows_per_second"], "-"],
        ["raw tokenizers encode_batch_fast (in memory)", result["raw_encode_batch_fast_rows_per_second"], "1.00"],
        [
            "tokenize stage loop (Parquet in, Parquet out)",
            result["stage_loop_rows_per_second"],
            f"{result['stage_loop_vs_fastest_raw']:.2f}",
        ],
        [
            "whole tokenize stage (load, verify, commit too)",
            result["whole_stage_rows_per_second"],
            f"{result['whole_stage_vs_fastest_raw']:.2f}",
        ],
    ]
    return (
        f"Machine: {result['machine']}. {result['rows']:,} review first sentences (tweet length, repeated), max_length 128.\n\n"
        + markdown_table(["path", "rows/s", "share of fastest raw"], rows)
    )


if __name__ == "__main__":
    sys.exit(main())
