"""The task seam: what differs between tasks (sequence classification, a causal language model, ...),
asked of the task rather than compared by name in the stages.

A stage reads the task from its input's lineage (preprocess writes it, every stage copies it forward;
components/lib/data/contract.py `task_of`), looks it up (`components.lib.tasks.task_named`) and hands
it the work that is the task's own: reading labels or documents, tokenizing, the model and its loss,
evaluation and the gate's verdict, export and its parity check, the registry's card and summary.
A new task is one module with a `Task` subclass and one line in components/lib/tasks/__init__.py;
tests/test_task_seam.py proves it.

Task modules import their heavy parts (torch, transformers) inside the methods: the registry's
commands and the pipeline compiler look tasks up without loading a model library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from components.lib.quality_gate import Gate, GateFlags, Verdict
from components.lib.stage_flags import ExportFlags, PreprocessFlags, StageUris, TokenizeFlags

if TYPE_CHECKING:
    from components.lib.cli import StageResult
    from components.lib.storage.registry import Registry
    from components.lib.training.settings import TrainConfig
    from components.lib.training.trainer import FineTuner, TunerInputs


@dataclass(frozen=True)
class TrainingRequest:
    """What train hands the task to build a model and its data."""

    config: TrainConfig
    base_model: str  # as the user named it
    source: str | None  # a local folder or hub id for from_pretrained; None when the task needs no base model
    tokenizer: Any
    data_dir: Path
    trust_remote_code: bool

    def base_model_source(self) -> str:
        """`source`, for a task that needs its base model (train fetched it: Task.needs_base_model)."""
        if self.source is None:
            raise ValueError(f"no local copy of --base_model {self.base_model}: the task said it needs none")
        return self.source


@dataclass
class TrainingSetup:
    """The task's model, its label names (empty for an unlabelled task), the loop that trains it, and its data."""

    model: Any
    label_names: list[str]
    tuner_class: Callable[[TunerInputs], FineTuner]  # a FineTuner class, or a partial of one
    train_split: Any
    validation: Any


@dataclass(frozen=True)
class GateInputs:
    """What register hands the task's gate: the registry, evaluate's metrics and the tokenized test data."""

    registry: Registry
    metrics: dict
    flags: GateFlags
    data_dir: Path
    data_manifest: dict
    data_uri: str
    export_uri: str


class Task(ABC):
    name: ClassVar[str]  # the --task value, and the lineage's TASK_KEY
    gate: ClassVar[Gate]
    labelled: ClassVar[bool] = True  # its outputs carry labels.json

    # ----- preprocess and tokenize ------------------------------------------------------
    @abstractmethod
    def preprocess(self, flags: PreprocessFlags) -> StageResult:
        """Read the source, clean, split and write the task's Parquet, naming the task in the lineage."""

    @abstractmethod
    def tokenize(self, flags: TokenizeFlags) -> StageResult:
        """Turn preprocess's splits into token ids, with the tokenizer saved beside them."""

    # ----- train ------------------------------------------------------------------------
    def training_settings(self, config: TrainConfig) -> TrainConfig:
        """Refuse the settings this task has no use for; the settings it trains with."""
        return config

    def needs_base_model(self, config: TrainConfig) -> bool:
        return True

    @abstractmethod
    def training_setup(self, request: TrainingRequest) -> TrainingSetup: ...

    def after_training(self, tuner: Any, summary: dict) -> None:
        """What the task adds to train's summary once the best weights are back (a calibration)."""
        return None

    def model_lineage(self, config: TrainConfig, model: Any) -> dict:
        return {"model_type": config.model_type}

    def save_model_files(self, out: Path, data_dir: Path, summary: dict) -> None:
        """The task's files in train's model folder besides the weights and the tokenizer."""
        return None

    # ----- evaluate, export -------------------------------------------------------------
    @abstractmethod
    def evaluate(self, uris: StageUris, report_path: str, batch_size: int) -> StageResult: ...

    @abstractmethod
    def export(self, uris: StageUris, flags: ExportFlags) -> StageResult:
        """The model as ONNX (and what else the task ships), checked against PyTorch on test rows."""

    # ----- register and the registry ----------------------------------------------------
    @abstractmethod
    def verdict(self, inputs: GateInputs) -> Verdict:
        """Each check of the gate, in order (quality_gate.gate_checks)."""

    @abstractmethod
    def headline(self, test: dict) -> dict:
        """The test figures a registry version's manifest keeps."""

    @abstractmethod
    def model_card(self, name: str, version: int, export_dir: Path, export_manifest: dict, facts: dict, data_dir: Path) -> str: ...

    @abstractmethod
    def baseline(self, metrics: dict) -> tuple[dict, str]:
        """The baseline evaluate scored beside the model (its figures in metrics.json, and what it is), for `registry show`."""

    @abstractmethod
    def model_origin(self, lineage: dict) -> str:
        """`registry show`'s line for what the model was made from."""

    def serving_refusal(self, manifest: dict) -> str | None:
        """Why the model server cannot serve this registry version of this task ("is a ...; ..."); None: it can."""
        return None

    def fold_ensemble(self, folds: list[Any]) -> list[str]:
        """kfold_report: the answer of the K fold models together, row by row of the test split, from each
        fold's predictions.parquet (a pyarrow table), in predictions.parquet's "gold" spelling."""
        from components.lib.errors import UserError

        raise UserError(f"K-fold cross-validation compares {self.name} models by their labels, and this task has none")

    # ----- the local run's summary ------------------------------------------------------
    @abstractmethod
    def summary_lines(self, evaluation: dict, export_report: dict) -> list[str]:
        """make run's lines for the test scores and the export, from metrics.json and export_report.json."""
