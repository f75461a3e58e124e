"""The contract between stages: the files each stage's output folder holds, and the Parquet schemas.

preprocess writes `<split>.parquet` with `CLEAN_SCHEMA`; tokenize writes `<split>.parquet` with
`TOKENIZED_SCHEMA` and the tokenizer files under `tokenizer/`. Both folders carry `labels.json`.

For `--task causal_lm` (a language model, no labels) preprocess writes documents with
`CORPUS_SCHEMA` and tokenize writes fixed-size blocks with `BLOCKS_SCHEMA`; no `labels.json`. The
task is declared once, by preprocess, in its manifest's lineage (`TASK_KEY`); every later stage
reads it from its input's lineage (`task_of`), which each stage copies forward.
A stage checks that its input folder is the output it needs (`require_output_of`) before it reads it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.lib import storage
from components.lib.errors import UserError
from components.lib.storage.artifacts import MANIFEST, read_manifest

SPLITS = ("train", "validation", "test")
# the tasks' names (components/lib/tasks/)
CLASSIFICATION, CAUSAL_LM, MULTI_LABEL = "sequence_classification", "causal_lm", "multi_label_classification"
TASK_KEY = "task"  # the lineage key that names the task
READS_OUTPUT_OF = {"tokenize": "preprocess", "train": "tokenize", "evaluate": "train", "export": "train"}
STATS_FILE = "stats.json"
REJECTS_FILE = "rejects.parquet"
LABEL_ISSUES_KEY = "label_issues"  # stats.json's account of the label audit, in preprocess's and tokenize's
LABEL_ISSUES_FILE = "label_issues.parquet"  # preprocess's suspect labels (components/lib/data/label_audit.py)
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer itself; serving needs only this one
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILES = (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, "special_tokens_map.json", "vocab.txt")

# train's model folder, besides the family's own weights and config (modelling/classifier.py)
MODEL_TYPE_FILE = "model_type.json"
MODEL_WEIGHTS_FILE = "model.safetensors"  # the name Hugging Face's save_pretrained uses; every family keeps to it
HISTORY_FILE = "training_history.json"
TRAIN_SUMMARY_FILE = "train_summary.json"
TRAINING_ARGS_FILE = "training_args.json"
LR_RANGE_TEST_FILE = "lr_range_test.json"
LR_RANGE_TEST_PICTURE = "lr_range_test.png"
CALIBRATION_FILE = "calibration.json"  # the temperature fitted on validation; export and register carry it
THRESHOLDS_FILE = "thresholds.json"  # multi-label: each label's decision threshold, tuned on validation; carried like calibration
# evaluate's folder
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.parquet"
REPORT_FILE = "report.html"
CONFUSION_MATRIX_PICTURE = "confusion_matrix.png"
PRECISION_RECALL_PICTURE = "precision_recall.png"
CONFIDENCE_PICTURE = "confidence.png"
TRAINING_CURVES_PICTURE = "training_curves.png"
RELIABILITY_PICTURE = "reliability.png"
SLICES_PICTURE = "slices.png"
COVERAGE_PICTURE = "coverage.png"
# export's folder
ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
EXPORT_REPORT_FILE = "export_report.json"
# register's decision and the card it writes into a registry version, and select_best's ranking of a sweep's trials
DECISION_FILE = "registration.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
DATA_PROFILE_FILE = "data_profile.json"  # a registered version's train split profile (components/lib/data/profile.py)
TUNING_RESULTS_FILE = "tuning_results.json"
ROUND_RESULTS_FILE = "round_results.json"  # select_survivors: one round of successive halving
# deploy's folder: the InferenceService it rendered, and what it did with it
INFERENCE_SERVICE_FILE = "inference_service.yaml"
DEPLOYMENT_FILE = "deployment.json"
# kfold_report's folder
KFOLD_RESULTS_FILE = "kfold_results.json"
KFOLD_PICTURE = "kfold_scores.png"

CLEAN_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("label", pa.int32()),
        ("source_row", pa.string()),
    ]
)

TOKENIZED_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("label", pa.int32()),
        ("input_ids", pa.list_(pa.int32())),
        ("length", pa.int32()),
        ("source_row", pa.string()),
    ]
)

# --slice_columns: each named source column rides along preprocess's and tokenize's splits as a string
# column `slice:<name>` after the schema's own, for evaluate and register to score the test rows by its values.
SLICE_COLUMN_PREFIX = "slice:"


def slice_field(column: str) -> pa.Field:
    return pa.field(SLICE_COLUMN_PREFIX + column, pa.string())


def with_slice_columns(schema: pa.Schema, columns: tuple[str, ...] | list[str]) -> pa.Schema:
    """`schema` with a `slice:<name>` string column for each of `columns` (--slice_columns names)."""
    return pa.schema(list(schema) + [slice_field(column) for column in columns])


def slice_columns_of(schema: pa.Schema) -> list[str]:
    """The --slice_columns a split carries, by their source names."""
    return [name.removeprefix(SLICE_COLUMN_PREFIX) for name in schema.names if name.startswith(SLICE_COLUMN_PREFIX)]


CORPUS_SCHEMA = pa.schema(  # causal_lm: one row per document
    [
        ("text", pa.string()),
        ("source_row", pa.string()),
    ]
)

BLOCKS_SCHEMA = pa.schema(  # causal_lm: the documents of a split joined by end-of-text, cut into blocks
    [
        ("input_ids", pa.list_(pa.int32())),
        ("length", pa.int32()),
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("position", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("text", pa.string()),
        ("label", pa.string()),
    ]
)


def task_of(manifest: dict) -> str:
    """The task a stage output belongs to, from its manifest's lineage; outputs from before tasks classify."""
    return manifest.get("lineage", {}).get(TASK_KEY, CLASSIFICATION)


def require_task(manifest: dict, task: str, uri: str) -> None:
    """Refuse in one line a stage input whose lineage names another task than the one at hand."""
    found = task_of(manifest)
    if found != task:
        raise UserError(f"{uri}: is {found} data, not {task} data; pass the tokenize output the model was trained on")


def produced_by(files: dict) -> str | None:
    """The stage that wrote a committed folder with these files, told by a file only it writes
    (a registry version holds export's files, and is told as export output)."""
    markers = (
        ("preprocess", REJECTS_FILE),
        ("export", EXPORT_REPORT_FILE),
        ("evaluate", METRICS_FILE),
        ("train", TRAIN_SUMMARY_FILE),
    )
    for stage, marker in markers:
        if marker in files:
            return stage
    if any(name.startswith(f"{TOKENIZER_DIR}/") for name in files):
        return "tokenize"
    return None


def require_output_of(producer: str, uri: str, flag: str) -> None:
    """Refuse in one line an input folder that is not `producer`'s committed output, saying what to pass.

    A folder that does not exist, is empty, has no manifest or is another stage's output each get
    their own words: the reader's own check would say "run it again" or blame the model hub.
    """
    wanted = f"pass {flag} the folder {producer} wrote (its --output_uri)"
    if not storage.exists(storage.join(uri, MANIFEST)):
        if not storage.is_s3(uri) and Path(uri).is_file():
            raise UserError(f"{uri}: is a file, not {producer} output; {wanted}")
        if not storage.list_files(uri):
            raise UserError(f"{uri}: {what_is_missing(uri)}, so no {producer} output; {wanted}")
        raise UserError(f"{uri}: holds no committed {producer} output (no {MANIFEST}); {wanted}, or run {producer} again if it was stopped")
    found = produced_by(read_manifest(uri)["files"])
    if found is None or found == producer:
        return
    if READS_OUTPUT_OF.get(producer) == found:
        raise UserError(
            f"{uri}: this is {found} output, not {producer} output: run {producer} on it first, and pass {flag} its --output_uri"
        )
    raise UserError(f"{uri}: this is {found} output, not {producer} output; {wanted}")


def what_is_missing(uri: str) -> str:
    """How to say that `uri` holds no files."""
    if storage.is_s3(uri):
        return "nothing there"
    return "the folder is empty" if Path(uri).exists() else "no such folder"


def split_file(folder: Path, split: str) -> Path:
    return folder / split_file_name(split)


def split_file_name(split: str) -> str:
    return f"{split}.parquet"


def other_splits(*kept: str) -> list[str]:
    """The file names of every split but `kept`: what a stage that reads only those need not fetch."""
    return [split_file_name(split) for split in SPLITS if split not in kept]


def open_split(folder: Path, split: str, schema: pa.Schema) -> pq.ParquetFile:
    """Open one split and check that it has the columns and types the contract promises."""
    path = split_file(folder, split)
    if not path.is_file():
        raise UserError(f"{path}: missing; the input folder must come from the stage before this one")
    parquet = pq.ParquetFile(path)
    found = parquet.schema_arrow
    for expected in schema:
        if expected.name not in found.names or not found.field(expected.name).type.equals(expected.type):
            raise UserError(
                f"{path}: column {expected.name!r} should be {expected.type}; the file does not come from this pipeline's previous stage"
            )
    return parquet


def slice_columns_in(folder: Path, split: str) -> list[str]:
    """The `slice:<name>` columns a split carries (--slice_columns), as read_split names them."""
    return [SLICE_COLUMN_PREFIX + name for name in slice_columns_of(pq.read_schema(split_file(folder, split)))]


def read_split(folder: Path, split: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    return open_split(folder, split, schema).read(columns=columns)
