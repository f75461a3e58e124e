"""Classification's quality gate, as register applies it: --gate_min on the test metric, then the
majority-class baseline, then the production version scored on this run's test split.

The majority-class baseline answers the most common training label whatever the text. A model must
beat it in accuracy AND macro-F1. Macro-F1 alone is too easy: the baseline scores at most 1/classes
there however skewed the data, so a model that errs more often than not reading the text at all
passes it (issue 10: accuracy 0.345 against the baseline's 0.414 was registered). Accuracy is the
test that binds on imbalanced data; macro-F1 must beat the baseline too, so that no score the card
shows is below it. A model trained for minority-class recall may lose to the baseline in accuracy on
purpose: --require_beat_baseline false registers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import ONNX_FP32_FILE, TOKENIZED_SCHEMA, read_split
from components.lib.data.labels import read_labels
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.onnx_runtime import cpu_session, session_logits
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.quality_gate import Gate, GateFlags, Verdict, gate_checks
from components.lib.reporting.metrics import classification_metrics
from components.lib.storage.registry import PRODUCTION, Registry

log = logging.getLogger("components.register")
BASELINE_METRICS = ("accuracy", "macro_f1")
# Per-class F1, and so macro-F1, rests on the rows of each class: with n rows a class's recall moves
# 1/n per row and its 95% interval is up to +-1/sqrt(n) wide, +-0.18 at 30 rows. Below that the
# comparison with the baseline is mostly noise, so the gate says so.
MIN_TEST_ROWS_PER_CLASS = 30


def classification_verdict(gate: Gate, registry: Registry, metrics: dict, flags: GateFlags, data_dir: Path) -> Verdict:
    """--gate_min, then the majority-class baseline, then production on this test split."""
    metric = flags.gate_metric or gate.metric
    candidate = metrics["test"][metric]
    warning = small_test_split_warning(metrics["test"])
    if warning:
        log.warning(warning)
    checks = gate_checks(
        [
            (gate.flag, True, lambda: gate_min_refusal(candidate, metric, flags.gate_min)),
            ("require_beat_baseline", flags.require_beat_baseline, lambda: baseline_refusal(metrics)),
            (
                "compare_with_production",
                flags.compare_with_production,
                lambda: production_refusal(registry, candidate, metric, flags.max_regression, data_dir),
            ),
        ]
    )
    return Verdict(metric, candidate, checks, warning)


def gate_min_refusal(candidate: float, metric: str, minimum: float) -> str | None:
    """None if the candidate reaches --gate_min, else the reason it does not."""
    if candidate < minimum:
        return f"test {metric} {candidate:.4f} is below --gate_min {minimum}"
    return None


def baseline_refusal(metrics: dict) -> str | None:
    """None if the model beats the majority-class baseline in every BASELINE_METRICS, else why not, naming both scores."""
    model, baseline = metrics["test"], metrics["baseline_majority_class"]
    if all(model[name] > baseline[name] for name in BASELINE_METRICS):
        return None
    scores = ", ".join(f"{name} {model[name]:.4f} against {baseline[name]:.4f}" for name in BASELINE_METRICS)
    return (
        f"the model does not beat the majority-class baseline (always {baseline.get('predicts', '?')!r}) on the test split:"
        f" {scores}; pass {flag_hint('require_beat_baseline', 'false')} to register it anyway"
    )


def small_test_split_warning(test_metrics: dict) -> str | None:
    """A warning if the test split has too few rows of some class to judge the model by."""
    support = {label: entry["support"] for label, entry in test_metrics["per_class"].items()}
    scarce = {label: rows for label, rows in support.items() if rows < MIN_TEST_ROWS_PER_CLASS}
    if not scarce:
        return None
    shown = ", ".join(f"{label!r} ({rows})" for label, rows in scarce.items())
    return (
        f"the test split is too small to judge the model: fewer than {MIN_TEST_ROWS_PER_CLASS} rows of {shown},"
        f" {sum(support.values())} rows in all; its scores, and the gate's comparisons, are within noise"
        f" (a larger {flag_hint('test_ratio')} or test file helps)"
    )


def production_refusal(
    registry: Registry, candidate: float, metric: str, max_regression: float, data_dir: Path,
    score: Callable[[Path, Path, str], float] | None = None,
) -> str | None:  # fmt: skip
    """None if there is no production version or the candidate is not more than max_regression below it on this
    test split; `score(version folder, data folder, metric)` scores production (a classifier's: score_version)."""
    if registry.read_alias(PRODUCTION) is None:
        return None
    with registry.fetch(PRODUCTION) as (version, folder, _):
        production = (score or score_version)(folder, data_dir, metric)
    log.info("production version %d scores %s %.4f on this test split; candidate %.4f", version, metric, production, candidate)
    if candidate < production - max_regression:
        return (
            f"test {metric} {candidate:.4f} is more than --max_regression {max_regression} below production"
            f" (version {version}: {production:.4f} on the same test split)"
        )
    return None


def score_version(version_dir: Path, data_dir: Path, metric: str) -> float:
    """Score a registered version's fp32 ONNX on this run's test split, with its own tokenizer."""
    labels = read_labels(data_dir)
    if read_labels(version_dir) != labels:
        raise UserError(
            f"the production version's labels {read_labels(version_dir)} differ from this model's {labels};"
            f" register under another {flag_hint('model_name')}, or pass {flag_hint('compare_with_production', 'false')}"
        )
    logits, test = version_test_logits(version_dir, data_dir)
    return classification_metrics(test.gold, logits.argmax(axis=1), labels)[metric]


def version_test_logits(version_dir: Path, data_dir: Path) -> tuple[np.ndarray, TokenizedSplit]:
    """A registered version's fp32 ONNX logits on this run's test texts, tokenized with the version's own tokenizer."""
    tokenizer = load_tokenizer(f"production version folder {version_dir}", str(version_dir))
    encoder = tokenizer.backend_tokenizer
    encoder.no_padding()
    test_table = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=["text", "label"])
    token_lists = [encoding.ids for encoding in encoder.encode_batch_fast(test_table.column("text").to_pylist())]
    test = TokenizedSplit.from_token_lists(token_lists, test_table.column("label").to_numpy())
    return session_logits(cpu_session(version_dir / ONNX_FP32_FILE), test, 64, pad_id(tokenizer)), test
