"""hf:// datasets from the Hugging Face Hub."""

from __future__ import annotations

from collections.abc import Iterator

from components.lib.data.readers.common import BATCH_ROWS, SPLIT_WORDS, SourceBatch, SourceReject, first_line, format_label, wanted_columns
from components.lib.data.readers.multi_label import with_joined_labels
from components.lib.errors import UserError, flag_hint
from components.lib.model_sources import offline_unless_hub_answers


def read_hf_dataset(
    hf_id: str, text_column: str, label_column: str, *, label_columns: tuple[str, ...] = (), slice_columns: tuple[str, ...] = ()
) -> Iterator[SourceBatch | SourceReject]:
    """The train/validation/test splits of a Hub dataset; with `label_columns`, each of those must hold 0 or 1 (multi_label.py)."""
    name, _, config = hf_id.partition(":")
    try:
        import datasets
    except ImportError:
        raise UserError("hf:// inputs need the 'datasets' package: pip install datasets") from None
    offline_unless_hub_answers()
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as error:  # the hub client raises many types; each means "could not load"
        raise UserError(
            f"hf://{hf_id}: cannot load it from the Hugging Face Hub ({type(error).__name__}:"
            f" {first_line(error)[:160]}); check the id and the network, or download it and pass a path"
        ) from None
    for split_name, dataset in loaded.items():
        split = SPLIT_WORDS.get(split_name.lower())
        if split is None:
            continue
        source = f"hf://{hf_id}/{split_name}"
        wanted = wanted_columns(text_column, label_column, label_columns) + [(column, "slice_columns") for column in slice_columns]
        for column, flag in wanted:
            if column not in dataset.column_names:
                shown = ", ".join(dataset.column_names)
                raise UserError(f"{source}: no column {column!r} (columns: {shown}); pass {flag_hint(flag)} with the right name")
        class_names = getattr(dataset.features[label_column], "names", None) if label_column and not label_columns else None
        rows_read = 0
        for table in dataset.data.to_batches(max_chunksize=BATCH_ROWS):
            texts = table.column(text_column).to_pylist()
            if label_columns:
                positions = [f"row {rows_read + index + 1}" for index in range(len(texts))]
                rows_read += len(texts)
                values = [table.column(column).to_pylist() for column in label_columns]
                yield from with_joined_labels(SourceBatch(source, split, positions, texts), label_columns, values)
                continue
            labels = [
                None if value is None else class_names[value] if class_names else format_label(value)
                for value in (table.column(label_column).to_pylist() if label_column else [None] * len(texts))
            ]
            positions = [f"row {rows_read + index + 1}" for index in range(len(texts))]
            rows_read += len(texts)
            slices = {column: class_named(dataset, column, table.column(column).to_pylist()) for column in slice_columns}
            yield SourceBatch(source, split, positions, texts, labels, slices=slices)


def class_named(dataset, column: str, values: list) -> list:
    """A ClassLabel column's values as their names (a slice reads "condition = Depression", not "= 3")."""
    names = getattr(dataset.features[column], "names", None)
    return [names[value] if names and value is not None else value for value in values]
