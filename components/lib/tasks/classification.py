"""Sequence classification: one label per text (negative / neutral / positive, ...), a softmax head and
cross-entropy, scored beside the majority class and gated on test macro-F1.

Each method hands its stage's work to the module that does it; they are imported inside the methods so
that looking the task up loads no model library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.lib.common_flags import GATE_MIN
from components.lib.data.contract import CLASSIFICATION, MULTI_LABEL, TOKENIZED_SCHEMA, open_split
from components.lib.errors import UserError
from components.lib.quality_gate import Gate, Verdict
from components.lib.tasks.base import (
    ExportFlags,
    GateInputs,
    PreprocessFlags,
    StageUris,
    Task,
    TokenizeFlags,
    TrainingRequest,
    TrainingSetup,
)

if TYPE_CHECKING:
    from components.lib.cli import StageResult
    from components.lib.training.settings import TrainConfig


class ClassificationTask(Task):
    name = CLASSIFICATION
    gate = Gate(metric="macro_f1", label="macro-F1", flag=GATE_MIN.name, parameter="min_macro_f1", higher_is_better=True)

    def preprocess(self, flags: PreprocessFlags) -> StageResult:
        from components.lib.data.labelled import preprocess_labelled

        if flags.label_columns:
            raise UserError(f"--label_columns: one 0/1 column per label is multi-label data; pass --task {MULTI_LABEL}")
        return preprocess_labelled(flags, self.name)

    def tokenize(self, flags: TokenizeFlags) -> StageResult:
        from components.lib.data.labelled_tokenize import tokenize_labelled

        return tokenize_labelled(flags)

    def training_settings(self, config: TrainConfig) -> TrainConfig:
        from components.lib.tasks.classification_training import classifier_settings

        return classifier_settings(config)

    def training_setup(self, request: TrainingRequest) -> TrainingSetup:
        from components.lib.tasks.classification_training import classifier_setup

        return classifier_setup(request)

    def after_training(self, tuner: Any, summary: dict) -> None:
        from components.lib.tasks.classification_training import calibrate

        summary["calibration"] = calibrate(tuner)

    def save_model_files(self, out: Path, data_dir: Path, summary: dict) -> None:
        from components.lib.tasks.classification_training import save_classifier_files

        save_classifier_files(out, data_dir, summary)

    def evaluate(self, uris: StageUris, report_path: str, batch_size: int) -> StageResult:
        from components.lib.reporting.classifier_evaluation import evaluate_classifier

        return evaluate_classifier(model_uri=uris.model_uri, data_uri=uris.data_uri, output_uri=uris.output_uri,
                                   report_path=report_path, batch_size=batch_size)  # fmt: skip

    def export(self, uris: StageUris, flags: ExportFlags) -> StageResult:
        from components.lib.exporting.classifier import export_classifier

        return export_classifier(uris, flags)

    def verdict(self, inputs: GateInputs) -> Verdict:
        from components.lib.tasks.classification_gate import classification_verdict

        return classification_verdict(self.gate, inputs)

    def headline(self, test: dict) -> dict:
        from components.lib.reporting.metrics import headline

        return headline(test)

    def model_card(self, name: str, version: int, export_dir: Path, export_manifest: dict, facts: dict, data_dir: Path) -> str:
        """A classifier's card, with its labels, its calibration and an example text of its own test split."""
        from components.lib.cards.classifier import build_model_card
        from components.lib.data.contract import CALIBRATION_FILE
        from components.lib.data.labels import read_labels

        calibrated = CALIBRATION_FILE in export_manifest["files"]
        return build_model_card(
            name, version, read_labels(export_dir), **facts, calibrated=calibrated, test_texts=first_test_texts(data_dir)
        )

    def baseline(self, metrics: dict) -> tuple[dict, str]:
        baseline = metrics.get("baseline_majority_class", {})
        return baseline, f"always the majority class {baseline.get('predicts', '?')!r}"

    def model_origin(self, lineage: dict) -> str:
        from components.lib.cards.shared import origin

        return origin(lineage)

    def fold_ensemble(self, folds: list[Any]) -> list[str]:
        """The class of highest mean probability over the folds."""
        import numpy as np

        classes = [name.removeprefix("prob_") for name in folds[0].column_names if name.startswith("prob_")]
        mean = np.mean([np.column_stack([fold.column(f"prob_{name}").to_numpy() for name in classes]) for fold in folds], axis=0)
        return [classes[index] for index in mean.argmax(axis=1)]

    def summary_lines(self, evaluation: dict, export_report: dict) -> list[str]:
        test, baseline = evaluation["test"], evaluation["baseline_majority_class"]
        parity = export_report["parity"]
        lines = [
            f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}"
            f"  (majority-class baseline: accuracy {baseline['accuracy']:.4f}, macro-F1 {baseline['macro_f1']:.4f})",
            f"ONNX parity: max |logit diff| {parity['max_abs_logit_diff']:.2e},"
            f" argmax agreement {parity['argmax_agreement']:.4f} on {parity['rows']} rows",
        ]
        for name, model in export_report["models"].items():
            latency = model["latency"]
            line = (
                f"onnxruntime {name}: test macro-F1 {model['test']['macro_f1']:.4f}, latency batch 1 p50 {latency['batch_1']['p50_ms']} ms"
            )
            if model.get("file", name) is None:  # export deleted it (exporting/classifier.py: judge_int8)
                line += f"; dropped: {export_report['int8_macro_f1_drop']:.4f} below fp32, more than int8_max_f1_drop allows"
            lines.append(line)
        weakest = min((entry for entry in test.get("slices", []) if not entry["small"]), key=lambda entry: entry["accuracy"], default=None)
        if weakest:
            lines.append(
                f"weakest slice: {weakest['slice']} ({weakest['rows']} rows), accuracy {weakest['accuracy']:.4f}; all in report.html"
            )
        if "abstention" in test:
            abstention = test["abstention"]
            lines.append(f"abstains below confidence {abstention['min_confidence']:.4f}: answers {100 * abstention['coverage']:.1f}% of"
                         f" the test rows at accuracy {abstention['accuracy']:.4f}")  # fmt: skip
        return lines


def first_test_texts(data_dir: Path, rows: int = 32) -> list[str]:
    """The first texts of the tokenized test split (a few, so that one without a credential can be picked)."""
    batch = next(open_split(data_dir, "test", TOKENIZED_SCHEMA).iter_batches(batch_size=rows, columns=["text"]), None)
    return batch.column("text").to_pylist() if batch is not None else []
