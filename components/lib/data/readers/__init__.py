"""Raw data sources for preprocess: CSV, TSV, JSON, JSON Lines, Parquet, folders of shards, hf:// ids;
and, for an unlabelled corpus (`--task causal_lm`), plain-text files, each file one document.

Every reader yields `SourceBatch`es of raw (text, label) pairs, plus a `SourceReject` for each
record it could not parse (a row with too many fields, a broken JSON line, an object where the
text should be). Nothing is dropped here: each record read comes out as one or the other.

Text files are sniffed before they are parsed (`text_layout`): a byte-order mark decides the
encoding (UTF-8, UTF-16 or UTF-32, which are transcoded to UTF-8 on the fly); NUL bytes without
one mean UTF-16 without a mark or binary data, and either ends in one line. A file that cannot be
decompressed or parsed ends in one line naming it, never a traceback.

One module per format (delimited, json_records, parquet, documents, hub); `common` holds the records
and the finding of files, `sniff` the encoding sniffing, `multi_label` the 0/1 label columns
(`label_columns`, joined by MULTI_LABEL_JOIN), `dispatch` the `read_source` that picks the reader.
This package re-exports the names the stages import.
"""

from components.lib.data.readers.common import (
    DOCUMENT_FORMATS,
    DOCUMENT_UNITS,
    HF_SCHEME,
    PACKAGE_SCHEME,
    WHOLE_FILE,
    Source,
    SourceBatch,
    SourceReject,
    installed_data_path,
    locate_files,
    open_source,
    split_from_name,
)
from components.lib.data.readers.dispatch import read_source
from components.lib.data.readers.hub import read_hf_dataset
from components.lib.data.readers.multi_label import MULTI_LABEL_JOIN
from components.lib.data.readers.sniff import encoding_hint

__all__ = [
    "DOCUMENT_FORMATS",
    "DOCUMENT_UNITS",
    "HF_SCHEME",
    "MULTI_LABEL_JOIN",
    "PACKAGE_SCHEME",
    "WHOLE_FILE",
    "Source",
    "SourceBatch",
    "SourceReject",
    "encoding_hint",
    "installed_data_path",
    "locate_files",
    "open_source",
    "read_hf_dataset",
    "read_source",
    "split_from_name",
]
