"""A multi-label model's quality gate, as register applies it: --gate_min on the test metric (macro-F1 unless
--gate_metric names another), then the label-frequency baseline, which the model must beat in both
micro-F1 and macro-F1 (the first is easy for a constant answer of the commonest labels, the second is not),
then the production version scored on this run's test split at its own thresholds."""

from __future__ import annotations

from pathlib import Path

from components.lib.data.label_sets import label_names_of, membership
from components.lib.data.labels import read_labels
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.thresholds import read_thresholds, sigmoid
from components.lib.quality_gate import Gate, GateFlags, Verdict, gate_checks
from components.lib.reporting.multilabel_metrics import multilabel_metrics
from components.lib.storage.registry import Registry
from components.lib.tasks.classification_gate import gate_min_refusal, production_refusal, version_test_logits

BASELINE_METRICS = ("micro_f1", "macro_f1")


def multilabel_verdict(gate: Gate, registry: Registry, metrics: dict, flags: GateFlags, data_dir: Path) -> Verdict:
    metric = flags.gate_metric or gate.metric
    if metric not in metrics["test"]:
        raise UserError(
            f"--gate_metric {metric}: a multi-label evaluation has no such test metric; e.g. macro_f1, micro_f1, subset_accuracy"
        )
    candidate = metrics["test"][metric]
    checks = gate_checks(
        [
            (gate.flag, True, lambda: gate_min_refusal(candidate, metric, flags.gate_min)),
            ("require_beat_baseline", flags.require_beat_baseline, lambda: baseline_refusal(metrics)),
            ("compare_with_production", flags.compare_with_production,
             lambda: production_refusal(registry, candidate, metric, flags.max_regression, data_dir, score_version)),
        ]
    )  # fmt: skip
    return Verdict(metric, candidate, checks)


def baseline_refusal(metrics: dict) -> str | None:
    model, baseline = metrics["test"], metrics["baseline_label_frequency"]
    if all(model[name] > baseline[name] for name in BASELINE_METRICS):
        return None
    scores = ", ".join(f"{name} {model[name]:.4f} against {baseline[name]:.4f}" for name in BASELINE_METRICS)
    return (
        f"the model does not beat the label-frequency baseline (always {baseline.get('predicts', '?')!r}) on the test split:"
        f" {scores}; pass {flag_hint('require_beat_baseline', 'false')} to register it anyway"
    )


def score_version(version_dir: Path, data_dir: Path, metric: str) -> float:
    """A registered multi-label version's fp32 ONNX on this run's test split, with its own tokenizer and thresholds."""
    set_keys = read_labels(data_dir)
    names = label_names_of(set_keys)
    thresholds = (
        read_thresholds(version_dir, names, f"production version folder {version_dir}") if read_labels(version_dir) == names else None
    )
    if thresholds is None:
        raise UserError(
            f"the production version's labels {read_labels(version_dir)} are not this model's multi-label {names};"
            f" register under another {flag_hint('model_name')}, or pass {flag_hint('compare_with_production', 'false')}"
        )
    logits, test = version_test_logits(version_dir, data_dir)
    gold = membership(set_keys, names)[test.labels]
    return multilabel_metrics(gold, sigmoid(logits), thresholds, names)[metric]
