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

from benchmarks import vader_tweets

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample" / "drugscom"
BASE_MODEL = "bundled://all-MiniLM-L6-v2"
FIRST_SENTENCE_CHARS = 280  # a tweet's limit: the first sentences are cut to tweet length
# The two training datasets, by key, and what they are. The short one is NOT tweets: it is the first
# sentence of each bundled drug review, labelled with the whole review's rating.
DATASETS = {
    "first_sentences": "review first sentences (tweet length)",
    "reviews": "whole reviews",
    "vader_tweets": "VADER tweets (vaderSentiment sdist)",
    "movie_snippets": f"VADER movie-review snippets ({vader_tweets.SNIPPET_SAMPLE_ROWS:,}, tweet length, not tuned on)",
}
SENTENCE = re.compile(r"(.+?[.!?])(\s|$)")


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        if cpuinfo.exists()
        else []
    )
    return names[0] if names else platform.processor() or "unknown CPU"


def machine() -> str:
    import torch

    from components.lib.modelling.precision import cpu_has_native_bf16

    cores = os.cpu_count()
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only ({cpu_model()}, {bf16}), {cores} cores"
    return f"{platform.machine()}, {device}, Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_sentence(text: str) -> str:
    """A review's first sentence, cut at 280 characters on a word boundary: a text of tweet length.

    It keeps the whole review's rating as its label, so a first sentence may say less about the
    rating than the review did. Like tweets, these vary a lot in length (median 19 tokens, 90th percentile 38, longest 73 with
    all-MiniLM-L6-v2's tokenizer), which is what makes padding matter.
    """
    text = re.sub(r"\s+", " ", text.replace('"', "")).strip()
    match = SENTENCE.match(text)
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= FIRST_SENTENCE_CHARS else sentence[:FIRST_SENTENCE_CHARS].rsplit(" ", 1)[0]


STANDARD_DATASETS = ("first_sentences", "reviews", "vader_tweets")  # prepared unless others are named; movie_snippets only when named


def prepare_datasets(workdir: Path, names: tuple[str, ...] = STANDARD_DATASETS) -> dict[str, dict[str, Path]]:
    """The bundled reviews as they are ("reviews", cut at 256 tokens), and the first sentence of each
    review with the whole review's rating as its label ("first_sentences", cut at 128 tokens), the
    VADER tweets (benchmarks/vader_tweets.py, cut at 128 tokens), and 8,000 of its movie-review snippets
    ("movie_snippets", cut at 64); preprocessed and tokenized by the pipeline's own stages. Only `names` are made."""
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    sentences_source = workdir / "first-sentences-source"
    sentences_source.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        table = pq.read_table(SAMPLE / f"{split}.parquet", columns=["review", "rating"])
        texts = [first_sentence(text) for text in table.column("review").to_pylist()]
        pq.write_table(pa.table({"review": texts, "rating": table.column("rating")}), sentences_source / f"{split}.parquet")
    reviews = {"text_column": "review", "label_column": "rating"}
    sources = (
        ("first_sentences", lambda: sentences_source, reviews, 128),
        ("reviews", lambda: SAMPLE, reviews, 256),
        ("vader_tweets", lambda: vader_tweets.fetch_tweets(workdir / "vader-source"), vader_tweets.PREPROCESS_OPTIONS,
         vader_tweets.MAX_LENGTH),
        ("movie_snippets", lambda: vader_tweets.movie_snippet_sample(workdir), vader_tweets.SNIPPET_PREPROCESS_OPTIONS,
         vader_tweets.SNIPPET_MAX_LENGTH),
    )  # fmt: skip
    datasets = {}
    for name, source_of, reading, max_length in sources:
        if name not in names:
            continue
        source = source_of()
        data, tokens = workdir / name / "data", workdir / name / "tokens"
        if not (tokens / "MANIFEST.json").exists():
            preprocess(input_uri=str(source), output_uri=str(data), **reading)
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
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **(env or {})},
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


def majority_class_macro_f1(data: Path) -> dict[str, float]:
    """Macro-F1 on validation and test of a model that always predicts the train split's most
    frequent label: the score a classifier stuck at the majority class gets."""
    import numpy as np

    from components.lib.data.labels import read_labels
    from components.lib.reporting.metrics import classification_metrics

    labels = read_labels(data)
    train = np.asarray(pq.read_table(data / "train.parquet", columns=["label"]).column("label").to_pylist())
    majority = int(np.bincount(train, minlength=len(labels)).argmax())
    scores = {"label": labels[majority]}
    for split in ("validation", "test"):
        gold = np.asarray(pq.read_table(data / f"{split}.parquet", columns=["label"]).column("label").to_pylist())
        scores[f"{split}_macro_f1"] = round(classification_metrics(gold, np.full_like(gold, majority), labels)["macro_f1"], 4)
    return scores
