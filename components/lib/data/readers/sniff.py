"""Sniffing a text file before it is parsed: its encoding (a byte-order mark wins), and bytes that are not text."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import pyarrow as pa

from components.lib.data.readers.common import COMPRESSION_SUFFIXES, SourceFile, first_line
from components.lib.errors import UserError, flag_hint

SNIFF_BYTES = 1 << 16
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# What other files look like when they are given a text name, by their first bytes.
SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?); export the sheet as CSV"),
    (b"PAR1", "a Parquet file; name it .parquet"),
    (b"\x1f\x8b", "gzip-compressed; add .gz to its name"),
    (b"BZh", "bzip2-compressed; add .bz2 to its name"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; add .zst to its name"),
    (b"\x04\x22\x4d\x18", "lz4-compressed; add .lz4 to its name"),
    (b"%PDF", "a PDF document; export the data as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls (or other Office) file; export the sheet as CSV"),
)
# Bytes that text in an ASCII-compatible encoding does not hold (NUL and the C0 controls other
# than tab, newlines and form feed, and DEL). Random or compressed bytes are about 11% of them,
# text about none: more than 5% of a sample means the file is not text.
CONTROL_BYTES = frozenset(range(0x20)) - frozenset(b"\t\n\r\x0b\x0c\x1b") | {0x7F}
BINARY_SHARE = 0.05


@dataclass
class TextLayout:
    """How to read a text file's bytes: `encoding` decodes the stream `open_text` gives."""

    encoding: str
    skip: int = 0  # bytes of a UTF-8 byte-order mark to skip
    transcode_from: str = ""  # an encoding that is not ASCII-compatible, transcoded to UTF-8 while reading


def ascii_compatible(encoding: str) -> bool:
    sample = "text,label\t\n\r\"'[]{}:0123456789"
    try:
        return sample.encode(encoding) == sample.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def encoding_hint(raw: bytes, tried: str) -> str:
    """`--encoding X` for the likely encodings in which `raw` does decode, other than `tried`."""
    tried_name = codecs.lookup(tried).name
    fits = []
    for candidate in ("utf-8", "cp1252", "latin-1"):
        if codecs.lookup(candidate).name == tried_name:
            continue
        try:
            raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        fits.append(f"--encoding {candidate}")
    return " or ".join(fits[:2]) + (" (cp1252 is what Excel on Windows writes)" if "--encoding cp1252" in fits[:2] else "")


def open_stream(item: SourceFile):
    return pa.input_stream(str(item.path), compression="detect")


def is_compressed(item: SourceFile) -> bool:
    return item.path.name.lower().endswith(COMPRESSION_SUFFIXES)


def read_error(item: SourceFile, error: Exception, where: str = "") -> UserError:
    """One line for a file that stops being readable: cut compression, a damaged UTF-16 file, bad CSV."""
    at = f" {where}" if where else ""
    if isinstance(error, UnicodeDecodeError):  # from transcoding, which reads ahead of the records parsed: no position
        return UserError(f"{item.uri}: not valid {error.encoding} ({error.reason}); the file is damaged: save or export it again")
    if is_compressed(item) and not str(error).startswith("CSV parse error"):
        return UserError(
            f"{item.uri}: the compressed data is truncated or corrupt{at} ({first_line(error)}); download or compress the file again"
        )
    if isinstance(error, pa.ArrowInvalid):
        return UserError(f"{item.uri}: cannot parse{at}: {first_line(error)}")
    return UserError(f"{item.uri}: cannot read it{at} ({first_line(error)})")


READ_ERRORS = (OSError, pa.ArrowInvalid, UnicodeDecodeError)


def text_layout(item: SourceFile, encoding: str) -> TextLayout:
    """Sniff the first bytes: a byte-order mark wins over --encoding; NUL bytes end in one line."""
    try:
        with open_stream(item) as stream:
            head = stream.read(SNIFF_BYTES)
    except READ_ERRORS as error:
        raise read_error(item, error) from None
    if not head:
        hint = "a header row and data rows" if item.format in ("csv", "tsv") else "records"
        raise UserError(f"{item.uri}: the file is empty; it needs {hint}")
    for mark, found in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            if codecs.lookup(encoding).name.split("-")[:2] != codecs.lookup(found).name.split("-")[:2]:
                item.notes.append(f"{item.uri}: starts with a {found.upper()} byte-order mark; read as that, not as --encoding {encoding}")
            if found == "utf-8":
                return TextLayout("utf-8", skip=len(mark))
            return TextLayout("utf-8", transcode_from=found)  # the codec reads the mark and the byte order
    if not ascii_compatible(encoding):
        return TextLayout("utf-8", transcode_from=encoding)
    for signature, what in SIGNATURES:
        if head.startswith(signature) and not (is_compressed(item) and signature in (b"\x1f\x8b", b"BZh")):
            raise UserError(f"{item.uri}: this is not {item.format.upper()} text but {what}")
    controls = sum(1 for byte in head if byte in CONTROL_BYTES)
    if head.count(0) and (utf16 := utf16_without_mark(head)):
        raise UserError(f"{item.uri}: looks like {utf16.upper()} text without a byte-order mark; pass {flag_hint('encoding', utf16)}")
    if controls > BINARY_SHARE * len(head):
        first = next(index for index, byte in enumerate(head) if byte in CONTROL_BYTES)
        raise UserError(
            f"{item.uri}: this is binary data, not {item.format.upper()} text ({controls} control bytes in its first"
            f" {len(head)}, the first at byte {first}); check that it is the file you meant"
        )
    return TextLayout(encoding)


def utf16_without_mark(head: bytes) -> str:
    """ "utf-16-le" or "utf-16-be" where NULs fall on one side of each byte pair and the sample decodes."""
    zeros = [index % 2 for index, byte in enumerate(head) if byte == 0]
    odd = sum(zeros)
    for encoding, share in (("utf-16-le", odd), ("utf-16-be", len(zeros) - odd)):
        if share >= 0.9 * len(zeros) and len(zeros) >= 0.05 * len(head):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
            except UnicodeDecodeError:
                continue
            if "\n" in text or len(head) < SNIFF_BYTES:
                return encoding
    return ""


def open_text(item: SourceFile, layout: TextLayout):
    """The file's bytes as `layout` says: BOM skipped, or transcoded to UTF-8."""
    stream = open_stream(item)
    if layout.skip:
        stream.read(layout.skip)
    if layout.transcode_from:
        return pa.transcoding_input_stream(stream, layout.transcode_from, "utf-8")
    return stream
