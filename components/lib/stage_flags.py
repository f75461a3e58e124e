"""The flags a stage hands its task (components/lib/tasks/), one dataclass per stage, as the stage declares
and checks them. Below every package of components/lib, so that the modules doing a task's work may take them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class StageUris:
    """The folders evaluate and export read and write."""

    model_uri: str
    data_uri: str
    output_uri: str


@dataclass(frozen=True)
class ExportFlags:
    """export's flags, as export() declares them."""

    opset: int
    quantize_int8: bool
    torchscript: bool
    fuse_for_onnxruntime: bool
    int8_max_f1_drop: float
    parity_rows: int
    parity_atol: float
    min_argmax_agreement: float
    latency_runs: int
    batch_size: int


@dataclass(frozen=True)
class PreprocessFlags:
    """preprocess's flags, as preprocess() declares them (checked there), with the source's fingerprint."""

    DEFAULT_LABEL_NAMES: ClassVar[str] = "negative,neutral,positive"

    input_uri: str
    output_uri: str
    source_fingerprint: str
    text_column: str
    label_column: str
    label_columns: tuple[str, ...]  # multi-label: one 0/1 column per label, instead of label_column
    label_delimiter: str  # multi-label: what separates the labels of a label_column cell
    label_names: str
    rating_buckets: str
    delimiter: str
    encoding: str
    mask_urls: bool
    mask_mentions: bool
    max_chars: int
    near_duplicate_threshold: float
    document_unit: str
    use_source_splits: bool
    validation_ratio: float
    test_ratio: float
    seed: int
    allow_missing_classes: bool
    max_reject_share: float
    augment_factor: int
    augment_alpha: float
    label_audit_folds: int  # the label audit's cross-fit folds; 0: no audit
    drop_label_issues: bool = False  # the audit's suspect train rows go to the rejects
    slice_columns: tuple[str, ...] = ()  # source columns carried with the rows, for evaluate's slices (classification only)


@dataclass(frozen=True)
class TokenizeFlags:
    """tokenize's flags, as tokenize() declares them."""

    data_uri: str
    output_uri: str
    base_model: str
    max_length: int
    tokenizer: str
    vocab_size: int
    block_size: int
    batch_size: int
    num_folds: int
    fold: int
    fold_seed: int
    trust_remote_code: bool
