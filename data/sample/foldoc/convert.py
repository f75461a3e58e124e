"""Make foldoc.parquet, a multi-label sample, from the Free On-line Dictionary of Computing (FOLDOC).

    apt-get download dict-foldoc=20230119-1        # no root needed; Debian 12's archive has it
    python data/sample/foldoc/convert.py dict-foldoc_20230119-1_all.deb

Each FOLDOC entry is a computing term, maybe other names for it, and a definition that opens with its
subject tags:

    bang on
    pound on

       <testing, jargon> (Or "pound on") To {stress-test} {hardware} or
       {software}.  E.g., "I banged on the simulator all day yesterday ...

       [{Jargon File}]

       (2022-03-13)

The tags are the labels (a definition with numbered senses, "1. <a> ... 2. <b> ...", gets the tags of
all of them). The text is the definition on one line, with cross-references "{like this (this.html)}"
as plain words and without what would give the labels away: the tag groups, the headword lines, the
date stamp, and the paragraphs that are only a note in square brackets (sources such as
"[{Jargon File}]", references to papers, editors' queries such as "[Details?]"). Only labels on at
least MIN_LABEL_ROWS entries are kept: rarer ones are dropped from each row's set, and a row left
with no label is dropped, as is an entry whose text is empty without its notes.

Written: `term` (the first headword), `text`, `labels` (label names, sorted, joined by "|"), one row
per distinct entry, sorted, zstd-compressed. The same .deb always gives the same file.

The .deb is read here (ar, then data.tar.xz), so neither dpkg nor root is needed, and it must be the
file whose sha256 is PACKAGE_SHA256. Licence: FOLDOC is under the GNU FDL 1.1 or any later version
("The Free On-line Dictionary of Computing, https://foldoc.org/, Editor Denis Howe"); the entries
that the Debian package adds from its Dictionary.debian (under a verbatim-copying licence) are left
out, and so are the two entries in GARBLED.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PACKAGE = "dict-foldoc 20230119-1"
PACKAGE_SHA256 = "745cbedb55c2da609cc88ee0284e9d11a67a11ae3709daf7bad0e895ac3294c3"
DICTIONARY = "usr/share/dictd/foldoc.dict.dz"  # dictzip: a gzip file
INDEX = "usr/share/dictd/foldoc.index"  # headword <TAB> offset <TAB> length, numbers in base 64
DEBIAN_ADDITIONS = "usr/share/doc/dict-foldoc/Dictionary.debian"
OUTPUT = Path(__file__).resolve().parent / "foldoc.parquet"
MIN_LABEL_ROWS = 100
BASE64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# A definition's paragraphs are separated by blank lines. A paragraph that opens the definition, or
# a later one at FOLDOC's own three-space indent (code and examples are indented deeper), may start
# with a head of tag groups "<testing, jargon>", sense numbers "2.", a pronunciation "/zed/" and
# abbreviations "(IVR)", in any order: its tag groups are the entry's subject tags.
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
HEAD_ITEM = re.compile(r"\s*(?:\d+\.|/[^/\n]+/|\([^()\n]*\)|<(?P<tags>[^<>@{}]+)>)")
DATE_STAMP = re.compile(r"^[ \t]*\(\d{4}-?\d{2}-\d{2}\)[ \t]*$", re.M)  # "(2014-10-25)"; one reads "(200705-05)"
CROSS_REFERENCE = re.compile(r"\{([^{}]*?)(?:\s+\([^(){}]*\))?\}")  # "{foo (foo.html)}" -> "foo"
# Two entries are garbled upstream: words of other entries, tags included, are spliced into their text.
GARBLED = {"Metropolitan Area Network", "drive-by download"}


class Refused(Exception):
    """A file that is not the expected package: one line, exit status 2."""


def read_package(deb_path: Path) -> dict[str, bytes]:
    """The dictionary, its index and the Debian additions, from the checked .deb."""
    try:
        deb = deb_path.read_bytes()
    except OSError as error:
        raise Refused(f"{deb_path}: cannot read it ({error.strerror}); run `apt-get download dict-foldoc` first") from error
    digest = hashlib.sha256(deb).hexdigest()
    if digest != PACKAGE_SHA256:
        raise Refused(f"{deb_path}: sha256 {digest}, expected {PACKAGE_SHA256} ({PACKAGE}); refusing another file")
    wanted = {DICTIONARY, INDEX, DEBIAN_ADDITIONS}
    files = {}
    with tarfile.open(fileobj=io.BytesIO(ar_member(deb, "data.tar")), mode="r:*") as data:
        for member in data.getmembers():
            path = member.name.removeprefix("./")
            if path in wanted:
                files[path] = data.extractfile(member).read()
    if missing := wanted - files.keys():
        raise Refused(f"{deb_path}: no {', '.join(sorted(missing))} in its data archive")
    return files


def ar_member(archive: bytes, name_prefix: str) -> bytes:
    """The first member of an ar archive (a .deb is one) whose name starts with `name_prefix`."""
    if not archive.startswith(b"!<arch>\n"):
        raise Refused("not a .deb: no ar signature")
    position = 8
    while position + 60 <= len(archive):
        header = archive[position : position + 60]  # name 16, dates and modes 32, size 10, magic 2
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii"))
        if name.startswith(name_prefix):
            return archive[position + 60 : position + 60 + size]
        position += 60 + size + size % 2  # members start on even offsets
    raise Refused(f"not a .deb: no {name_prefix}* member")


def entries(files: dict[str, bytes]) -> list[tuple[str, str, list[str]]]:
    """(term, text, tags in order of appearance) for each distinct FOLDOC entry that has a tag."""
    dictionary = gzip.decompress(files[DICTIONARY])
    debian_text = " ".join(files[DEBIAN_ADDITIONS].decode("utf-8").split())
    spans = set()
    for line in files[INDEX].decode("utf-8").splitlines():
        headword, offset, length = line.split("\t")
        if not headword.startswith("00-database"):  # dictd's own metadata entries
            spans.add((base64_number(offset), base64_number(length)))  # synonyms share one span
    rows = []
    for offset, length in sorted(spans):
        lines = dictionary[offset : offset + length].decode("utf-8").splitlines()
        headwords = []
        while lines and lines[0].strip() and not lines[0][0].isspace():
            headwords.append(lines.pop(0).strip())
        definition = "\n".join(lines)
        if not definition.strip() or " ".join(definition.split()) in debian_text:
            continue  # an entry that the Debian package added: its text is in Dictionary.debian
        tags, text = parse_definition(definition)
        if tags and text and headwords[0] not in GARBLED:
            rows.append((headwords[0], text, tags))
    return rows


def base64_number(digits: str) -> int:
    number = 0
    for digit in digits:
        number = number * 64 + BASE64_DIGITS.index(digit)
    return number


def parse_definition(definition: str) -> tuple[list[str], str]:
    """The subject tags, in order, and the definition as one line without anything that names them: the
    tag groups, the date stamp, and the notes in square brackets that make up a whole paragraph (sources
    such as "[{Jargon File}]", references, editors' queries such as "[Details?]")."""
    tags, paragraphs = [], []
    for number, paragraph in enumerate(PARAGRAPH_BREAK.split(definition)):
        if number == 0 or re.match(r"   \S", paragraph):
            paragraph = take_head_tags(paragraph, tags)
        paragraph = DATE_STAMP.sub("", paragraph)
        if not is_bracketed_note(paragraph):
            paragraphs.append(paragraph)
    text = CROSS_REFERENCE.sub(r"\1", " ".join(paragraphs))
    return tags, " ".join(text.split())


def take_head_tags(paragraph: str, tags: list[str]) -> str:
    """Adds the tags of the paragraph's head to `tags`, and returns the paragraph without its tag groups."""
    position, kept = 0, []
    while item := HEAD_ITEM.match(paragraph, position):
        if item["tags"]:
            for tag in item["tags"].split(","):
                tag = " ".join(tag.split()).lower()
                if tag and tag not in tags:
                    tags.append(tag)
        else:
            kept.append(item[0])
        position = item.end()
    return "".join(kept) + " " + paragraph[position:]


def is_bracketed_note(paragraph: str) -> bool:
    """Whether the paragraph is one [...] (a full stop after it allowed), its brackets balanced."""
    note = paragraph.strip().removesuffix(".")
    depth = 0
    for index, character in enumerate(note):
        depth += (character == "[") - (character == "]")
        if depth == 0:
            return index == len(note) - 1 and index > 0
    return False


def frequent_labels_table(rows: list[tuple[str, str, list[str]]], min_rows: int = MIN_LABEL_ROWS) -> pa.Table:
    counts = collections.Counter(tag for _, _, tags in rows for tag in tags)
    kept = []
    for term, text, tags in rows:
        labels = sorted(tag for tag in tags if counts[tag] >= min_rows)
        if labels:
            kept.append((term, text, "|".join(labels)))
    kept.sort()
    return pa.table({name: pa.array(column, pa.string()) for name, column in zip(("term", "text", "labels"), zip(*kept))})


def describe(table: pa.Table) -> str:
    label_sets = [labels.split("|") for labels in table.column("labels").to_pylist()]
    counts = collections.Counter(label for labels in label_sets for label in labels)
    multi = sum(len(labels) > 1 for labels in label_sets)
    sizes = collections.Counter(len(labels) for labels in label_sets)
    return "\n".join(
        [
            f"{table.num_rows} rows, {len(counts)} labels, {multi} rows with more than one label ({multi / table.num_rows:.1%})",
            "labels per row: " + ", ".join(f"{size}: {rows}" for size, rows in sorted(sizes.items())),
            "label rows: " + ", ".join(f"{label} {rows}" for label, rows in counts.most_common()),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deb", type=Path, help="dict-foldoc_20230119-1_all.deb")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"the Parquet file to write (default {OUTPUT})")
    args = parser.parse_args()
    try:
        table = frequent_labels_table(entries(read_package(args.deb)))
    except Refused as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    pq.write_table(table, args.output, compression="zstd", compression_level=19)
    print(describe(table))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
