"""A multi-label model's quality gate, as register applies it: --gate_min on the test metric (macro-F1 unless
--gate_metric names another), then the label-frequency baseline, which the model must beat in both
micro-F1 and macro-F1 (the first is easy for a constant answer of the commonest labels, the second is not),
then the production version scored on this run's test split at its own thresholds."""

from __future__ import annotations

import logging
from pathlib import Path

from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import ONNX_FP32_FILE, TOKENIZED_SCHEMA, read_split
from components.lib.data.label_sets import label_names_of, membership
from components.lib.data.labels import read_labels
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.onnx_runtime import cpu_session, session_logits
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.modelling.thresholds import read_thresholds, sigmoid
from components.lib.quality_gate import Gate, GateFlags, Verdict, gate_checks
from components.lib.reporting.multilabel_metrics import multilabel_metrics
from components.lib.storage.registry import PRODUCTION, Registry
from components.lib.tasks.classification_gate import gate_min_refusal

log = logging.getLogger("components.register")
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
             lambda: production_refusal(registry, candidate, metric, flags.max_regression, data_dir)),
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


def production_refusal(registry: Registry, candidate: float, metric: str, max_regression: float, data_dir: Path) -> str | None:
    if registry.read_alias(PRODUCTION) is None:
        return None
    with registry.fetch(PRODUCTION) as (version, folder, _):
        production = score_version(folder, data_dir, metric)
    log.info("production version %d scores %s %.4f on this test split; candidate %.4f", version, metric, production, candidate)
    if candidate < production - max_regression:
        return (
            f"test {metric} {candidate:.4f} is more than --max_regression {max_regression} below production"
            f" (version {version}: {production:.4f} on the same test split)"
        )
    return None


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
    tokenizer = load_tokenizer(f"production version folder {version_dir}", str(version_dir))
    encoder = tokenizer.backend_tokenizer
    encoder.no_padding()
    table = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=["text", "label"])
    token_lists = [encoding.ids for encoding in encoder.encode_batch_fast(table.column("text").to_pylist())]
    test = TokenizedSplit.from_token_lists(token_lists, table.column("label").to_numpy())
    logits = session_logits(cpu_session(version_dir / ONNX_FP32_FILE), test, 64, pad_id(tokenizer))
    gold = membership(set_keys, names)[test.labels]
    return multilabel_metrics(gold, sigmoid(logits), thresholds, names)[metric]
