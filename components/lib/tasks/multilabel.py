"""Multi-label classification: any number of labels per text (topics, toxicity kinds, aspects), one sigmoid
and binary cross-entropy per label, thresholds tuned per label on validation, scored beside the
label-frequency baseline and gated on test macro-F1.

The data keep classification's schemas, a row's label being the id of its label set
(components/lib/data/label_sets.py), so tokenize, the folds and batching are classification's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.lib.common_flags import GATE_MIN
from components.lib.data.contract import CLASSIFICATION, MULTI_LABEL
from components.lib.data.label_sets import SET_JOIN
from components.lib.errors import UserError
from components.lib.quality_gate import Gate, Verdict
from components.lib.tasks.base import ExportFlags, GateInputs, PreprocessFlags, StageUris, TrainingRequest, TrainingSetup
from components.lib.tasks.classification import ClassificationTask, first_test_texts

log = logging.getLogger("components.preprocess")

if TYPE_CHECKING:
    from components.lib.cli import StageResult
    from components.lib.training.settings import TrainConfig


class MultiLabelTask(ClassificationTask):
    name = MULTI_LABEL
    gate = Gate(metric="macro_f1", label="macro-F1", flag=GATE_MIN.name, parameter="min_macro_f1", higher_is_better=True)

    def preprocess(self, flags: PreprocessFlags) -> StageResult:
        from components.lib.data.label_sets import SET_JOIN, LabelSetMapper, check_label_set_outcome
        from components.lib.data.labelled import LabelRules, preprocess_labelled
        from components.lib.data.labels import parse_label_names

        if flags.rating_buckets:
            raise UserError("--rating_buckets: maps one rating to one label; multi-label data names its labels")
        if flags.drop_label_issues:
            raise UserError("--drop_label_issues: the label audit ranks single labels; multi-label data is not audited")
        if flags.slice_columns:
            raise UserError(f"--slice_columns: slices are scored for {CLASSIFICATION} only, not yet for multi-label data")
        if flags.label_columns:  # the readers join each row's 1 columns with SET_JOIN
            if flags.label_names not in ("auto", PreprocessFlags.DEFAULT_LABEL_NAMES):
                log.warning("--label_names %s: not used; with --label_columns the labels are the columns' names", flags.label_names)
            mapper = LabelSetMapper(list(flags.label_columns), SET_JOIN)
        elif not flags.label_delimiter:
            raise UserError("--label_delimiter: must not be empty for multi-label data; e.g. '|'")
        else:
            mapper = LabelSetMapper(None if flags.label_names == "auto" else parse_label_names(flags.label_names), flags.label_delimiter)
        return preprocess_labelled(flags, self.name, LabelRules(mapper, check_label_set_outcome, audits_labels=False))

    def training_settings(self, config: TrainConfig) -> TrainConfig:
        from components.lib.tasks.multilabel_training import multilabel_settings

        return multilabel_settings(config)

    def training_setup(self, request: TrainingRequest) -> TrainingSetup:
        from components.lib.tasks.multilabel_training import multilabel_setup

        return multilabel_setup(request)

    def after_training(self, tuner: Any, summary: dict) -> None:
        from components.lib.tasks.multilabel_training import tune_decision_thresholds

        tune_decision_thresholds(tuner, summary)

    def save_model_files(self, out: Path, data_dir: Path, summary: dict) -> None:
        from components.lib.tasks.multilabel_training import save_multilabel_files

        save_multilabel_files(out, data_dir, summary)

    def evaluate(self, uris: StageUris, report_path: str, batch_size: int) -> StageResult:
        from components.lib.reporting.multilabel_evaluation import evaluate_multilabel

        return evaluate_multilabel(model_uri=uris.model_uri, data_uri=uris.data_uri, output_uri=uris.output_uri,
                                   report_path=report_path, batch_size=batch_size)  # fmt: skip

    def export(self, uris: StageUris, flags: ExportFlags) -> StageResult:
        from components.lib.exporting.multilabel import export_multilabel

        return export_multilabel(uris, flags)

    def verdict(self, inputs: GateInputs) -> Verdict:
        from components.lib.tasks.multilabel_gate import multilabel_verdict

        return multilabel_verdict(self.gate, inputs)

    def headline(self, test: dict) -> dict:
        from components.lib.reporting.multilabel_metrics import headline

        return headline(test)

    def model_card(self, name: str, version: int, export_dir: Path, export_manifest: dict, facts: dict, data_dir: Path) -> str:
        from components.lib.cards.multilabel import build_multilabel_card
        from components.lib.data.labels import read_labels

        return build_multilabel_card(name, version, read_labels(export_dir), **facts, test_texts=first_test_texts(data_dir))

    def baseline(self, metrics: dict) -> tuple[dict, str]:
        baseline = metrics.get("baseline_label_frequency", {})
        return baseline, f"label frequency: always {baseline.get('predicts', '?')!r}"

    def fold_ensemble(self, folds: list[Any]) -> list[str]:
        """Each label that most fold models predict (each at its own thresholds): a majority vote."""
        from components.lib.reporting.multilabel_evaluation import NO_LABEL, label_set

        labels = [name.removeprefix("prob_") for name in folds[0].column_names if name.startswith("prob_")]
        votes = [[set(answer.split(SET_JOIN)) for answer in fold.column("predicted").to_pylist()] for fold in folds]
        return [label_set([name for name in labels if 2 * sum(name in fold[row] for fold in votes) > len(folds)]) or NO_LABEL
                for row in range(folds[0].num_rows)]  # fmt: skip

    def summary_lines(self, evaluation: dict, export_report: dict) -> list[str]:
        test, baseline = evaluation["test"], evaluation["baseline_label_frequency"]
        parity = export_report["parity"]
        lines = [
            f"test micro-F1 {test['micro_f1']:.4f}, macro-F1 {test['macro_f1']:.4f}, subset accuracy {test['subset_accuracy']:.4f}"
            f"  (label-frequency baseline: micro-F1 {baseline['micro_f1']:.4f}, macro-F1 {baseline['macro_f1']:.4f})",
            f"ONNX parity: max |probability diff| {parity['max_abs_probability_diff']:.2e},"
            f" whole-set agreement {parity['decision_agreement']:.4f} on {parity['rows']} rows",
        ]
        for name, model in export_report["models"].items():
            latency = model["latency"]["batch_1"]["p50_ms"]
            line = f"onnxruntime {name}: test macro-F1 {model['test']['macro_f1']:.4f}, latency batch 1 p50 {latency} ms"
            if model.get("file", name) is None:  # export deleted it (exporting/multilabel.py: judge_int8)
                worst = max(export_report["int8_label_f1_drops"].items(), key=lambda item: item[1])
                line += f"; dropped: label {worst[0]!r} F1 {worst[1]:.4f} below fp32, more than int8_max_f1_drop allows"
            lines.append(line)
        return lines
