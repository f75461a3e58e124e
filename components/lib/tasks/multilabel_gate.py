"""A multi-label model's quality gate, as register applies it: --gate_min on the test metric (macro-F1 unless
--gate_metric names another), then the label-frequency baseline, which the model must beat in both
micro-F1 and macro-F1 (the first is easy for a constant answer of the commonest labels, the second is not),
then the production version scored on this run's test split at its own thresholds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from components.lib.data.label_sets import label_names_of, membership
from components.lib.data.labels import read_labels
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.thresholds import read_thresholds, sigmoid
from components.lib.quality_gate import Gate, Verdict, gate_checks
from components.lib.reporting.multilabel_metrics import multilabel_metrics
from components.lib.tasks.base import GateInputs
from components.lib.tasks.classification_gate import gate_min_refusal, production_refusal, version_test_logits

BASELINE_METRICS = ("micro_f1", "macro_f1")


def multilabel_verdict(gate: Gate, inputs: GateInputs) -> Verdict:
    metrics, flags = inputs.metrics, inputs.flags
    metric = gate.metric_to_read(flags.gate_metric, metrics["test"], "the evaluation")
    candidate = metrics["test"][metric]
    comparison: dict = {}
    checks = gate_checks(
        [
            (gate.flag, True, lambda: gate_min_refusal(candidate, metric, flags.gate_min)),
            ("require_beat_baseline", flags.require_beat_baseline, lambda: baseline_refusal(metrics)),
            ("compare_with_production", flags.compare_with_production,
             lambda: production_refusal(inputs.registry, metric, flags, inputs.data_dir, inputs.export_uri, comparison, multilabel_scorer)),
        ]
    )  # fmt: skip
    return Verdict(metric, candidate, checks, comparison=comparison or None)


def baseline_refusal(metrics: dict) -> str | None:
    model, baseline = metrics["test"], metrics["baseline_label_frequency"]
    if all(model[name] > baseline[name] for name in BASELINE_METRICS):
        return None
    scores = ", ".join(f"{name} {model[name]:.4f} against {baseline[name]:.4f}" for name in BASELINE_METRICS)
    return (
        f"the model does not beat the label-frequency baseline (always {baseline.get('predicts', '?')!r}) on the test split:"
        f" {scores}; pass {flag_hint('require_beat_baseline', 'false')} to register it anyway"
    )


def multilabel_scorer(folder: Path, data_dir: Path, metric: str) -> tuple[Callable[[np.ndarray], float], int]:
    """A multi-label folder's (a registered version's, or export's) fp32 ONNX answers on this run's test rows,
    with its own tokenizer and thresholds, as a function from row indices to `metric` on those rows; and the rows."""
    set_keys = read_labels(data_dir)
    names = label_names_of(set_keys)
    thresholds = read_thresholds(folder, names, f"model folder {folder}") if read_labels(folder) == names else None
    if thresholds is None:
        raise UserError(
            f"the production version's labels {read_labels(folder)} are not this model's multi-label {names};"
            f" register under another {flag_hint('model_name')}, or pass {flag_hint('compare_with_production', 'false')}"
        )
    logits, test = version_test_logits(folder, data_dir)
    gold, probabilities = membership(set_keys, names)[test.labels], sigmoid(logits)
    return lambda rows: multilabel_metrics(gold[rows], probabilities[rows], thresholds, names)[metric], len(gold)
