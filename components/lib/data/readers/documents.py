"""Plain-text files, each one document or one per paragraph (an unlabelled corpus)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from components.lib.data.readers.common import WHOLE_FILE, SourceBatch, SourceFile, SourceReject
from components.lib.data.readers.sniff import READ_ERRORS, open_text, read_error, text_layout
from components.lib.errors import UserError

# A paragraph ends at a line holding nothing but spaces (a no-break space too, as UTF-8); these bytes
# are ASCII or UTF-8, which every encoding a .txt file is read in here keeps them as (UTF-16/32 are
# transcoded to UTF-8 first).
PARAGRAPH_BREAK = re.compile(rb"\r?\n(?:[ \t\f\v]|\xc2\xa0)*\r?\n(?:(?:[ \t\f\v]|\xc2\xa0)*\r?\n)*")


def read_document(item: SourceFile, encoding: str, document_unit: str = "file") -> Iterator[SourceBatch | SourceReject]:
    """A plain-text file as one document, or one per paragraph, its bytes decoded later as CSV texts are
    (an undecodable one is quarantined then). A file that is not text is quarantined here: it is one of many."""
    try:
        raw, layout_encoding = document_bytes(item, encoding)
    except UserError as error:
        yield SourceReject(item.name, WHOLE_FILE, "unreadable_file", str(error))
        return
    if document_unit == "file":
        yield SourceBatch(item.name, item.split, [WHOLE_FILE], [raw], [None], layout_encoding)
        return
    paragraphs = [paragraph for paragraph in PARAGRAPH_BREAK.split(raw) if paragraph.strip()]
    positions = [f"paragraph {number}" for number in range(1, len(paragraphs) + 1)]
    yield SourceBatch(item.name, item.split, positions, paragraphs, [None] * len(paragraphs), layout_encoding)


def document_bytes(item: SourceFile, encoding: str) -> tuple[bytes, str]:
    """The file's bytes and their encoding (a byte-order mark's, else `encoding`); an empty file is an empty document."""
    if item.path.stat().st_size == 0:
        return b"", encoding
    layout = text_layout(item, encoding)
    try:
        with open_text(item, layout) as stream:
            return stream.read(), layout.encoding
    except READ_ERRORS as error:
        raise read_error(item, error) from None
