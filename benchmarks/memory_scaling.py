"""Benchmark 4: peak RSS of preprocess and tokenize at 100K and at 1M synthetic rows.

    python -m benchmarks.memory_scaling [--sizes 100000,1000000]

Synthetic rows of random words (tweet length, three labels) are written to Parquet in batches, so
making them costs no memory. Each stage then runs in a fresh process that reports its own peak
resident set size (ru_maxrss). The stages stream in record batches, so the figure at 1M rows
should stay close to the one at 100K.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import BASE_MODEL, machine, markdown_table, peak_rss_mb, run_json

WORDS = ["good", "bad", "great", "awful", "fine", "okay", "pain", "relief", "drug", "doctor", "week", "side", "effects", "helped", "worse", "better", "sleep", "nausea", "headache", "worked", "stopped", "dose", "mg", "day", "night", "really", "very", "not", "never", "always", "love", "hate"]  # fmt: skip
LABELS = ("negative", "neutral", "positive")


def write_rows(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    schema = pa.schema([("text", pa.string()), ("label", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 50_000):
            count = min(50_000, rows - start)
            texts = [" ".join(rng.choices(WORDS, k=rng.randint(5, 25))) + f" #{start + index}" for index in range(count)]
            writer.write_table(pa.table({"text": texts, "label": [rng.choice(LABELS) for _ in range(count)]}, schema=schema))


def measure_stage(stage: str, flags: dict) -> dict:
    """Run inside the child process: one stage, then its own peak RSS and wall time."""
    import importlib

    function = getattr(importlib.import_module(f"components.{stage}"), stage)
    started = time.perf_counter()
    function(**flags)
    return {"peak_rss_mb": round(peak_rss_mb(), 1), "seconds": round(time.perf_counter() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--flags", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.stage:
        print(json.dumps(measure_stage(arguments.stage, json.loads(arguments.flags))))
        return 0
    results = {"machine": machine(), "sizes": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for rows in (int(size) for size in arguments.sizes.split(",")):
            folder = Path(scratch) / str(rows)
            folder.mkdir()
            write_rows(folder / "source.parquet", rows)
            preprocess = run_json(
                "benchmarks.memory_scaling",
                "--stage",
                "preprocess",
                "--flags",
                json.dumps({"input_uri": str(folder / "source.parquet"), "output_uri": str(folder / "data")}),
            )
            tokenize = run_json(
                "benchmarks.memory_scaling",
                "--stage",
                "tokenize",
                "--flags",
                json.dumps(
                    {"data_uri": str(folder / "data"), "output_uri": str(folder / "tokens"), "base_model": BASE_MODEL, "max_length": 128}
                ),
            )
            results["sizes"][rows] = {
                "preprocess": preprocess,
                "tokenize": tokenize,
                "peak_rss_mb": max(preprocess["peak_rss_mb"], tokenize["peak_rss_mb"]),
            }
            print(f"{rows} rows: {results['sizes'][rows]}", file=sys.stderr, flush=True)
    sizes = sorted(results["sizes"])
    results["largest_over_smallest_peak_rss"] = round(
        results["sizes"][sizes[-1]]["peak_rss_mb"] / results["sizes"][sizes[0]]["peak_rss_mb"], 3
    )
    print(json.dumps(results))
    return 0


def markdown(results: dict) -> str:
    rows = [
        [
            f"{int(rows):,}",
            entry["preprocess"]["peak_rss_mb"],
            entry["preprocess"]["seconds"],
            entry["tokenize"]["peak_rss_mb"],
            entry["tokenize"]["seconds"],
        ]
        for rows, entry in sorted(results["sizes"].items(), key=lambda item: int(item[0]))
    ]
    return (
        f"Machine: {results['machine']}. Peak RSS at the largest size / at the smallest: {results['largest_over_smallest_peak_rss']}.\n\n"
        + markdown_table(["rows", "preprocess peak RSS MB", "preprocess s", "tokenize peak RSS MB", "tokenize s"], rows)
    )


if __name__ == "__main__":
    sys.exit(main())
