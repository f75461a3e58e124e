"""tokenize for labelled data: the base model's fast tokenizer, truncating to `max_length` (capped at the
model's own limit; 0 chooses it from the train split) and padding nothing: padding happens per batch at
training time. Works one record batch at a time, so memory does not grow with the data. With
`num_folds`, train and validation are pooled and cut into stratified folds (components/lib/data/folds.py).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.lib.cli import StageResult
from components.lib.data.contract import (
    CLEAN_SCHEMA,
    LABEL_ISSUES_KEY,
    SPLITS,
    STATS_FILE,
    TOKENIZED_SCHEMA,
    TOKENIZER_DIR,
    open_split,
    read_split,
    slice_columns_of,
    split_file,
    with_slice_columns,
)
from components.lib.data.folds import write_fold
from components.lib.data.labels import LABELS_FILE, read_labels
from components.lib.data.language import PROFILE_SAMPLE_ROWS, language_shares
from components.lib.data.lm_tokenize import BASE
from components.lib.data.profile import length_shares, unknown_rate
from components.lib.errors import UserError
from components.lib.model_sources import load_tokenizer, local_model_source, model_max_positions
from components.lib.stage_flags import TokenizeFlags
from components.lib.stage_outputs import TOKENIZED_ARTIFACT, TOKENIZED_URI_OUTPUT
from components.lib.storage.artifacts import staged_input, staged_output

log = logging.getLogger("components.tokenize")
AUTO_LENGTH = 0  # --max_length: choose it from the train split's token lengths
# Long enough for nearly every text, short enough that one outlier does not set the cut: the
# README's 600 drug reviews have p99 208 of 256+ tokens, tweets p99 42.
AUTO_LENGTH_PERCENTILE = 99
AUTO_LENGTH_BATCH_ROWS = 4096  # rows measured at a time, so memory does not grow with the data


def tokenize_labelled(flags: TokenizeFlags) -> StageResult:
    """Labelled splits in, token ids out (see the module's docstring)."""
    if flags.tokenizer != BASE:
        raise UserError(
            f"--tokenizer {flags.tokenizer}: only for causal_lm data; a classifier needs its base model's vocabulary (--tokenizer base)"
        )
    data_uri, output_uri, base_model, max_length = flags.data_uri, flags.output_uri, flags.base_model, flags.max_length
    num_folds, fold, fold_seed, batch_size = flags.num_folds, flags.fold, flags.fold_seed, flags.batch_size
    with staged_input(data_uri) as (data_dir, data_manifest), local_model_source(base_model) as source:
        label_names = read_labels(data_dir)
        text_tokenizer = load_tokenizer(base_model, source, flags.trust_remote_code)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, trust_remote_code=flags.trust_remote_code)
        model_limit = model_max_positions(text_tokenizer, config)
        if max_length == AUTO_LENGTH:
            effective_length = length_from_data(data_dir, text_tokenizer, model_limit)
        else:
            effective_length = min(max_length, model_limit)
            if effective_length < max_length:
                log.warning("--max_length %d is above what %s takes; using %d, the model's limit", max_length, base_model, effective_length)
        encoder = prepare_encoder(text_tokenizer, effective_length)
        folds = {"folds": {"num_folds": num_folds, "fold": fold, "seed": fold_seed}} if num_folds else {}
        lineage = {**data_manifest.get("lineage", {}), "base_model": base_model, "max_length": effective_length, **folds}
        with staged_output(output_uri, extra={"lineage": lineage}) as out:
            unknown_id = text_tokenizer.unk_token_id
            split_stats = {
                split: tokenize_split(data_dir, out, split, encoder, effective_length, batch_size, unknown_id) for split in SPLITS
            }
            if num_folds:
                for split, fold_rows in write_fold(out, num_folds, fold, fold_seed).items():
                    split_stats[split] = {"rows": fold_rows, "fold": f"{fold} of {num_folds}"}
                log.info("fold %d of %d: %d train rows, %d validation rows (the held-out fold)",
                         fold, num_folds, split_stats["train"]["rows"], split_stats["validation"]["rows"])  # fmt: skip
            for split, entry in split_stats.items():
                entry["class_counts"] = class_counts(out, split, label_names)
            text_tokenizer.model_max_length = effective_length
            text_tokenizer.save_pretrained(out / TOKENIZER_DIR)
            shutil.copyfile(data_dir / LABELS_FILE, out / LABELS_FILE)
            stats = {
                "base_model": base_model,
                "max_length": effective_length,
                "requested_max_length": max_length,
                "labels": label_names,
                "splits": split_stats,
                **folds,
                **carried_audit(data_dir),
            }
            (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    rows = {split: entry["rows"] for split, entry in split_stats.items()}
    return StageResult(
        summary={"stage": "tokenize", "output_uri": output_uri, "max_length": effective_length, "rows": rows},
        artifact_metadata={TOKENIZED_ARTIFACT: {"max_length": effective_length, "base_model": base_model, "rows": rows}},
        parameters={TOKENIZED_URI_OUTPUT: output_uri},
        artifact_uri_parameters={TOKENIZED_URI_OUTPUT: TOKENIZED_ARTIFACT},
    )


def length_from_data(data_dir, tokenizer, model_limit: int) -> int:
    """--max_length 0: the AUTO_LENGTH_PERCENTILE of the train split's token lengths, rounded up to a
    multiple of 8 and within the model's limit. Training pads each batch only to its longest row, so
    the cut decides which texts lose their end, and the cost of the rare very long one."""
    encoder = prepare_encoder(tokenizer, model_limit)
    batches = open_split(data_dir, "train", CLEAN_SCHEMA).iter_batches(batch_size=AUTO_LENGTH_BATCH_ROWS, columns=["text"])
    per_batch = [[len(encoding.ids) for encoding in encoder.encode_batch_fast(batch.column("text").to_pylist())] for batch in batches]
    lengths = np.concatenate([np.asarray(batch, dtype=np.int64) for batch in per_batch]) if per_batch else np.zeros(0, np.int64)
    if len(lengths) == 0:
        return model_limit
    percentile = float(np.percentile(lengths, AUTO_LENGTH_PERCENTILE))
    chosen = min(model_limit, max(8, int(math.ceil(percentile / 8) * 8)))
    # lengths were measured cut at the model's limit: one that reaches it was longer, or exactly as long
    truncated = float((lengths > chosen).mean() if chosen < model_limit else (lengths >= model_limit).mean())
    log.info(
        "--max_length 0: %d tokens, the %gth percentile of %d train texts' lengths rounded up to a multiple of 8"
        " (longest %d, model limit %d); %.1f%% of train texts are cut",
        chosen, AUTO_LENGTH_PERCENTILE, len(lengths), int(lengths.max()), model_limit, 100 * truncated,
    )  # fmt: skip
    return chosen


def prepare_encoder(tokenizer, max_length: int):
    """The Rust tokenizer itself, set to truncate at `max_length` and never pad.

    Calling it directly skips the Python wrapper's per-call work, which is most of the cost on
    short texts. The same settings are saved with the tokenizer, so serving truncates alike.
    """
    encoder = tokenizer.backend_tokenizer
    encoder.no_padding()
    encoder.enable_truncation(max_length)
    return encoder


def tokens_table(batch: pa.RecordBatch, ids: list[list[int]], schema: pa.Schema = TOKENIZED_SCHEMA) -> pa.Table:
    """The tokenized rows of `batch`; `schema`'s --slice_columns copied from it as they are."""
    length = np.fromiter((len(row) for row in ids), dtype=np.int32, count=len(ids))
    token_ids = pa.array(ids, TOKENIZED_SCHEMA.field("input_ids").type)
    columns = [batch.column("text"), batch.column("label"), token_ids, pa.array(length), batch.column("source_row")]
    columns += [batch.column(name) for name in schema.names[len(TOKENIZED_SCHEMA) :]]
    return pa.table(columns, schema=schema)


def encoded_ahead(batches, encode):
    """(batch, encode(batch)) for each batch, in order, the next batch encoding in a thread while the
    caller turns this one into Arrow and writes it. The Rust encoder releases the GIL, so the Python
    side no longer leaves a core idle (benchmarks/tokenize_speed.py measures the loop)."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
        for batch in batches:
            submitted = (batch, worker.submit(encode, batch))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = submitted
        if pending is not None:
            yield pending[0], pending[1].result()


def class_counts(out, split: str, label_names: list[str]) -> dict[str, int]:
    """Rows per label of a written split: evaluate's majority-class baseline reads these, not the split."""
    labels = read_split(out, split, TOKENIZED_SCHEMA, columns=["label"]).column("label").to_numpy()
    counts = np.bincount(labels, minlength=len(label_names))
    return {name: int(counts[index]) for index, name in enumerate(label_names)}


def tokenize_split(data_dir, out, split: str, encoder, max_length: int, batch_size: int, unknown_id: int | None) -> dict:
    """Write the split's token ids; its profile (components/lib/data/profile.py) for stats.json."""
    source = open_split(data_dir, split, CLEAN_SCHEMA)
    slices = slice_columns_of(source.schema_arrow)
    schema = with_slice_columns(TOKENIZED_SCHEMA, slices)
    batches = source.iter_batches(batch_size=batch_size, columns=["text", "label", "source_row"] + schema.names[len(TOKENIZED_SCHEMA) :])
    lengths: list[np.ndarray] = []
    unknown, seen, sample = 0, 0, []
    profile_step = max(1, source.metadata.num_rows // PROFILE_SAMPLE_ROWS)  # every profile_step-th row's language is profiled
    with pq.ParquetWriter(split_file(out, split), schema) as writer:
        for batch, encodings in encoded_ahead(batches, lambda batch: encoder.encode_batch_fast(batch.column("text").to_pylist())):
            table = tokens_table(batch, [encoding.ids for encoding in encodings], schema)
            writer.write_table(table)
            picked = np.arange((-seen) % profile_step, table.num_rows, profile_step)
            sample += table.column("text").take(pa.array(picked)).to_pylist()
            seen += table.num_rows
            lengths.append(table.column("length").to_numpy())
            if unknown_id is not None:
                unknown += int(np.count_nonzero(pc.list_flatten(table.column("input_ids")).to_numpy() == unknown_id))
    every = np.concatenate(lengths) if lengths else np.zeros(0, np.int32)
    if len(every) == 0:
        return {"rows": 0}
    points = np.percentile(every, [50, 90, 99])
    return {
        "rows": int(len(every)),
        "tokens": {"p50": int(points[0]), "p90": int(points[1]), "p99": int(points[2]), "max": int(every.max())},
        "truncated_share": round(float((every >= max_length).mean()), 4),
        "padding_share_if_padded_to_max_length": round(1.0 - float(every.mean()) / max_length, 4),
        "length_shares": length_shares(every),
        "unknown_token_rate": None if unknown_id is None else unknown_rate(unknown, int(every.sum())),
        "language_shares": language_shares(sample),
    }


def carried_audit(data_dir: Path) -> dict:
    """preprocess's label audit (its count and top rows), carried on for evaluate's report; {} when none ran."""
    stats = json.loads((data_dir / STATS_FILE).read_text()) if (data_dir / STATS_FILE).is_file() else {}
    return {LABEL_ISSUES_KEY: stats[LABEL_ISSUES_KEY]} if LABEL_ISSUES_KEY in stats else {}
