"""EDA augmentation of training texts (Wei and Zou 2019, "EDA: Easy Data Augmentation Techniques for
Boosting Performance on Text Classification Tasks"): synonym replacement, random insertion, random swap
and random deletion, each changing about `alpha` of a text's words.

Each row gets `factor` new versions, the operations taken in turn from a random first one, so each is
used about as often as the others, as in the paper. Synonyms come from WordNet (components.lib.data.wordnet).
The operations work on whitespace tokens; a token's word is looked up without its edge punctuation,
which a replacement keeps, as it keeps the word's capitalisation. The masks of text cleaning (`http`,
`@user`) are never replaced, moved, deleted or looked up. A copy equal to its text or to an earlier
copy is tried again with the next operation, then dropped and counted.

A row's copies come from a generator seeded by (seed, text), so they do not depend on the rows'
order or on the process (str seeds go through SHA-512, not Python's salted hash).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from components.lib.data.textclean import MENTION_MASK, URL_MASK
from components.lib.data.wordnet import wordnet
from components.lib.errors import UserError

OPERATIONS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")
UNCHANGED_DROPPED = "unchanged_dropped"
MASKS = frozenset({URL_MASK, MENTION_MASK})
MAX_ALPHA = 0.5  # the largest share the paper tried
INSERTION_TRIES = 10  # the paper's code tries ten random words for one that has a synonym
EDGE_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»…"
# EDA's stop words, never replaced nor the source of an inserted synonym: the list in the paper's code (jasonwei20/eda_nlp, code/eda.py).
EDA_STOP_WORDS = """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
it its itself they them their theirs themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while of at by for with
about against between into through during before after above below to from up down in out on off over under again
further then once here there when where why how all any both each few more most other some such no nor not only own
same so than too very s t can will just don should now"""
STOP_WORDS = frozenset(EDA_STOP_WORDS.split())


class AugmentedRows(NamedTuple):
    """The new rows only: texts, their labels, the index of the row each copies, and per-operation counts."""

    texts: list[str]
    labels: list
    origins: list[int]
    counts: Counter


def check_augmentation(factor: int, alpha: float) -> None:
    """One line naming the flag for a factor or share that makes no sense."""
    if factor < 0:
        raise UserError(f"--augment_factor: must be 0 (off) or more copies per training row, got {factor}")
    if factor and not 0.0 < alpha <= MAX_ALPHA:
        raise UserError(f"--augment_alpha: the share of words each operation changes must be in (0, {MAX_ALPHA}], got {alpha}")


def augment_rows(texts: Iterable[str], labels: list, factor: int, alpha: float, seed: int) -> AugmentedRows:
    """`factor` EDA copies of each text, with its label; counts has each operation's copies and the dropped ones."""
    check_augmentation(factor, alpha)
    augmented = AugmentedRows([], [], [], Counter(dict.fromkeys((*OPERATIONS, UNCHANGED_DROPPED), 0)))
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        for operation, copy in augment_text(text, factor, alpha, random.Random(f"{seed}:{text}"), augmented.counts):
            augmented.texts.append(copy)
            augmented.labels.append(label)
            augmented.origins.append(row)
            augmented.counts[operation] += 1
    return augmented


def augment_text(text: str, factor: int, alpha: float, rng: random.Random, counts: Counter) -> list[tuple[str, str]]:
    """(operation, copy) for up to `factor` copies of `text` that differ from it and from each other."""
    tokens = text.split()
    if not tokens:
        return []
    seen, copies = {text}, []
    first = rng.randrange(len(OPERATIONS))
    for index in range(factor):
        for attempt in range(len(OPERATIONS)):
            operation = OPERATIONS[(first + index + attempt) % len(OPERATIONS)]
            copy = " ".join(OPERATION_FUNCTIONS[operation](tokens, alpha, rng))
            if copy not in seen:
                seen.add(copy)
                copies.append((operation, copy))
                break
        else:
            counts[UNCHANGED_DROPPED] += 1
    return copies


def changes_for(tokens: list[str], alpha: float) -> int:
    """The paper's n = max(1, alpha x words) for replacement, insertion and swap."""
    return max(1, int(alpha * len(tokens)))


def split_token(token: str) -> tuple[str, str, str]:
    """(leading punctuation, word, trailing punctuation); the word is '' for a mask or punctuation alone."""
    word = "" if token in MASKS else token.strip(EDGE_PUNCTUATION)
    if not word:
        return token, "", ""
    start = token.index(word)
    return token[:start], word, token[start + len(word) :]


@lru_cache(maxsize=2**16)  # a text's tokens are looked at once per copy; most tokens recur across texts
def content_word(token: str) -> str:
    """The token's word, lower-cased, if it may take a synonym: letters only, not a stop word, not a mask; else ''."""
    word = split_token(token)[1].lower()
    return word if word.isalpha() and word not in STOP_WORDS else ""


@cache
def common_synonyms(word: str) -> tuple[str, ...]:
    """WordNet's synonyms less the capitalised ones: names and acronyms (`ok` -> `Oklahoma`) would change the meaning."""
    return tuple(synonym for synonym in wordnet().synonyms(word) if synonym == synonym.lower()) if word else ()


def in_case_of(original: str, synonym: str) -> str:
    if len(original) > 1 and original.isupper():
        return synonym.upper()
    if original[0].isupper():
        return synonym[0].upper() + synonym[1:]
    return synonym


def synonym_replacement(tokens: list[str], alpha: float, rng: random.Random) -> list[str]:
    """Replace every occurrence of up to n distinct non-stop words with a WordNet synonym, as the paper's code does."""
    candidates = sorted({word for token in tokens if (word := content_word(token))})
    rng.shuffle(candidates)
    replacements = {}
    for word in candidates:
        if synonyms := common_synonyms(word):
            replacements[word] = rng.choice(synonyms)
        if len(replacements) == changes_for(tokens, alpha):
            break
    return [replaced_token(token, replacements) for token in tokens]


def replaced_token(token: str, replacements: dict[str, str]) -> str:
    synonym = replacements.get(content_word(token))
    if synonym is None:
        return token
    lead, word, trail = split_token(token)
    return f"{lead}{in_case_of(word, synonym)}{trail}"


def random_insertion(tokens: list[str], alpha: float, rng: random.Random) -> list[str]:
    """Insert a synonym of a random word of the text, not a stop word (as the paper says), at a random place, n times."""
    tokens = list(tokens)
    for _ in range(changes_for(tokens, alpha)):
        for _try in range(INSERTION_TRIES):
            if synonyms := common_synonyms(content_word(rng.choice(tokens))):
                tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(synonyms))
                break
    return tokens


def random_swap(tokens: list[str], alpha: float, rng: random.Random) -> list[str]:
    """Swap two words n times; the masks stay where they are."""
    tokens = list(tokens)
    movable = [index for index, token in enumerate(tokens) if token not in MASKS]
    if len(movable) < 2:
        return tokens
    for _ in range(changes_for(tokens, alpha)):
        first, second = rng.sample(movable, 2)
        tokens[first], tokens[second] = tokens[second], tokens[first]
    return tokens


def random_deletion(tokens: list[str], alpha: float, rng: random.Random) -> list[str]:
    """Delete each word with probability alpha, never a mask, and never every word: one stays if all would go."""
    deletable = [index for index, token in enumerate(tokens) if token not in MASKS]
    deleted = {index for index in deletable if rng.random() < alpha}
    if deleted and deleted == set(deletable):
        deleted.discard(rng.choice(deletable))
    return [token for index, token in enumerate(tokens) if index not in deleted]


OPERATION_FUNCTIONS = {
    "synonym_replacement": synonym_replacement,
    "random_insertion": random_insertion,
    "random_swap": random_swap,
    "random_deletion": random_deletion,
}


def augment_train_split(folder: Path, factor: int, alpha: float, seed: int) -> dict:
    """Add augmented copies of the train split's rows to it (validation and test are never touched)."""
    from tqdm import tqdm

    from components.lib.data.contract import CLEAN_SCHEMA, read_split, split_file

    table = read_split(folder, "train", CLEAN_SCHEMA)
    texts = table.column("text").to_pylist()
    wordnet()  # a missing package fails here, before any work
    progress = tqdm(texts, desc="augment", unit="row", mininterval=1.0)  # iterated by the work itself, so the bar is honest
    added = augment_rows(progress, table.column("label").to_pylist(), factor, alpha, seed)
    sources = table.column("source_row").to_pylist()
    copies = table.take(pa.array(added.origins, pa.int64()))  # each copy keeps its row's --slice_columns values
    for name, values in (
        ("text", added.texts),
        ("label", added.labels),
        ("source_row", [f"{sources[row]} (augmented)" for row in added.origins]),
    ):
        index = CLEAN_SCHEMA.get_field_index(name)
        copies = copies.set_column(index, CLEAN_SCHEMA.field(name), pa.array(values, CLEAN_SCHEMA.field(name).type))
    pq.write_table(pa.concat_tables([table, copies]), split_file(folder, "train"))
    return {"factor": factor, "alpha": alpha, "rows_before": len(texts), "rows_added": len(added.texts), "operations": dict(added.counts)}
