"""Shared by the benchmarks: the two datasets, the base model, measuring, and the results table.

Every benchmark prints one JSON object on stdout and returns rows for benchmarks/RESULTS.md.
Figures come from one run on one machine: compare rows of the same run only.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample" / "drugscom"
BASE_MODEL = "bundled://all-MiniLM-L6-v2"
TWEET_CHARS = 280  # the tweet limit
SENTENCE = re.compile(r"(.+?[.!?])(\s|$)")


def machine() -> str:
    import torch

    cores = os.cpu_count()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only, {cores} cores"
    return f"{platform.machine()}, {device}, Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tweet(text: str) -> str:
    """A review's first sentence, cut at 280 characters on a word boundary: a tweet-length text.

    Like tweets, these vary a lot in length (median 19 tokens, 90th percentile 38, longest 73 with
    all-MiniLM-L6-v2's tokenizer), which is what makes padding matter.
    """
    text = re.sub(r"\s+", " ", text.replace('"', "")).strip()
    match = SENTENCE.match(text)
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= TWEET_CHARS else sentence[:TWEET_CHARS].rsplit(" ", 1)[0]


def prepare_datasets(workdir: Path) -> dict[str, dict[str, Path]]:
    """The bundled reviews as they are (review length, cut at 256 tokens), and tweet-length
    versions of the same reviews with the same labels (their first sentences, cut at 128 tokens);
    preprocessed and tokenized by the pipeline's own stages."""
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    tweets_source = workdir / "tweets-source"
    tweets_source.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        table = pq.read_table(SAMPLE / f"{split}.parquet", columns=["review", "rating"])
        texts = [tweet(text) for text in table.column("review").to_pylist()]
        pq.write_table(pa.table({"review": texts, "rating": table.column("rating")}), tweets_source / f"{split}.parquet")
    datasets = {}
    for name, source, max_length in (("tweets", tweets_source, 128), ("reviews", SAMPLE, 256)):
        data, tokens = workdir / name / "data", workdir / name / "tokens"
        if not (tokens / "MANIFEST.json").exists():
            preprocess(input_uri=str(source), output_uri=str(data), text_column="review", label_column="rating")
            tokenize(data_uri=str(data), output_uri=str(tokens), base_model=BASE_MODEL, max_length=max_length)
        datasets[name] = {"data": data, "tokens": tokens, "max_length": max_length}
    return datasets


def run_json(module: str, *args: str, env: dict | None = None) -> dict:
    """Run `python -m module args...` in a fresh process (its own memory and threads); parse its last stdout line."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
