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
from components.lib.data.contract import ONNX_FP32_FILE, TOKENIZED_SCHEMA, read_split, slice_columns_in
from components.lib.data.labels import read_labels
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.onnx_runtime import cpu_session, session_logits
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.quality_gate import Gate, GateFlags, Verdict, gate_checks
from components.lib.reporting.metrics import classification_metrics
from components.lib.reporting.significance import paired_bootstrap
from components.lib.reporting.slices import TEST_SLICE_COLUMNS, slices_of_test_split
from components.lib.storage.artifacts import staged_input
from components.lib.storage.registry import PRODUCTION, Registry
from components.lib.tasks.base import GateInputs

log = logging.getLogger("components.register")
BASELINE_METRICS = ("accuracy", "macro_f1")
# Per-class F1, and so macro-F1, rests on the rows of each class: with n rows a class's recall moves
# 1/n per row and its 95% interval is up to +-1/sqrt(n) wide, +-0.18 at 30 rows. Below that the
# comparison with the baseline is mostly noise, so the gate says so.
MIN_TEST_ROWS_PER_CLASS = 30


def classification_verdict(gate: Gate, inputs: GateInputs) -> Verdict:
    """--gate_min, then the majority-class baseline, then production on this test split."""
    metrics, flags = inputs.metrics, inputs.flags
    metric = gate.metric_to_read(flags.gate_metric, metrics["test"], "the evaluation")
    candidate = metrics["test"][metric]
    warning = small_test_split_warning(metrics["test"])
    if warning:
        log.warning(warning)
    comparison: dict = {}
    checks = gate_checks(
        [
            (gate.flag, True, lambda: gate_min_refusal(candidate, metric, flags.gate_min)),
            ("require_beat_baseline", flags.require_beat_baseline, lambda: baseline_refusal(metrics)),
            (
                "compare_with_production",
                flags.compare_with_production,
                lambda: production_refusal(inputs.registry, metric, flags, inputs.data_dir, inputs.export_uri, comparison),
            ),
        ]
    )
    return Verdict(metric, candidate, checks, warning, comparison or None)


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
    registry: Registry, metric: str, flags: GateFlags, data_dir: Path, export_uri: str, comparison: dict,
    scorer: RowScorer | None = None,
) -> str | None:  # fmt: skip
    """None if there is no production version, or the candidate is not worse than it by more than
    --max_regression on this test split: significantly worse, by a paired bootstrap of `metric` at
    --significance, or (--significance 0) by its score alone. Both are the fp32 ONNX models scored on
    the same rows by `scorer` (a classifier's: classifier_scorer); `comparison` receives the figures."""
    if registry.read_alias(PRODUCTION) is None:
        return None
    score = scorer or classifier_scorer
    with registry.fetch(PRODUCTION) as (version, folder, _), staged_input(export_uri) as (export_dir, _):
        production, rows = score(folder, data_dir, metric)
        candidate, _ = score(export_dir, data_dir, metric)
    everything = np.arange(rows)
    comparison.update(version=version, metric=metric, candidate=candidate(everything), production=production(everything))
    log.info("production version %d scores %s %.4f on this test split; the candidate %.4f", version, metric,
             comparison["production"], comparison["candidate"])  # fmt: skip
    below = f"test {metric} {comparison['candidate']:.4f} is more than --max_regression {flags.max_regression} below production"
    beside = f"version {version}: {comparison['production']:.4f} on the same test split"
    if not flags.significance:
        return f"{below} ({beside})" if comparison["candidate"] < comparison["production"] - flags.max_regression else None
    comparison.update(paired_bootstrap(candidate, production, rows, flags.max_regression))
    low, high = comparison["interval_95"]
    log.info("paired bootstrap against production: difference %+.4f, 95%% interval %+.4f to %+.4f, p = %.3g",
             comparison["difference"], low, high, comparison["p_value"])  # fmt: skip
    if comparison["p_value"] < flags.significance:
        return (
            f"{below}, significantly ({beside}; paired bootstrap of {rows} rows: difference {comparison['difference']:+.4f},"
            f" 95% interval {low:+.4f} to {high:+.4f}, p = {comparison['p_value']:.3g} < --significance {flags.significance})"
        )
    return slice_refusal(candidate, production, test_slices_of(data_dir), flags, comparison)


def test_slices_of(data_dir: Path) -> dict[str, np.ndarray]:
    table = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=[*TEST_SLICE_COLUMNS, *slice_columns_in(data_dir, "test")])
    return slices_of_test_split(table)[0]


def slice_refusal(
    candidate: Callable[[np.ndarray], float], production: Callable[[np.ndarray], float], slices: dict[str, np.ndarray],
    flags: GateFlags, comparison: dict,
) -> str | None:  # fmt: skip
    """None unless, on some slice of at least --min_slice_rows test rows, the candidate is significantly worse
    than production by more than --max_slice_regression; the level is --significance split evenly among
    the slices checked (Bonferroni), so that more slices do not mean more refusals by chance."""
    judged = {name: rows for name, rows in slices.items() if len(rows) >= flags.min_slice_rows}
    if not judged:
        return None
    level = flags.significance / len(judged)
    margin = flags.max_slice_regression
    results = [{"slice": name, **paired_bootstrap(restricted(candidate, rows), restricted(production, rows), len(rows), margin)}
               for name, rows in judged.items()]  # fmt: skip
    comparison.update(slices=results, slice_level=level)
    worst = min(results, key=lambda result: result["p_value"])
    if worst["p_value"] >= level:
        return None
    low, high = worst["interval_95"]
    return (
        f"on the test slice {worst['slice']!r} ({worst['rows']} rows) the candidate is more than --max_slice_regression"
        f" {flags.max_slice_regression} below production, significantly (paired bootstrap: difference {worst['difference']:+.4f},"
        f" 95% interval {low:+.4f} to {high:+.4f}, p = {worst['p_value']:.3g} < {level:.3g}, --significance over {len(judged)} slices)"
    )


def restricted(score: Callable[[np.ndarray], float], rows: np.ndarray) -> Callable[[np.ndarray], float]:
    """`score` on a slice: index i of what it is given is the test row rows[i]."""

    def on_slice(indices: np.ndarray) -> float:
        return score(rows[indices])

    return on_slice


def classifier_scorer(folder: Path, data_dir: Path, metric: str) -> tuple[Callable[[np.ndarray], float], int]:
    """A classifier folder's (a registered version's, or export's) fp32 ONNX answers on this run's test
    rows, with its own tokenizer, as a function from row indices to `metric` on those rows; and the rows."""
    labels = read_labels(data_dir)
    if read_labels(folder) != labels:
        raise UserError(
            f"the production version's labels {read_labels(folder)} differ from this model's {labels};"
            f" register under another {flag_hint('model_name')}, or pass {flag_hint('compare_with_production', 'false')}"
        )
    logits, test = version_test_logits(folder, data_dir)
    predicted = logits.argmax(axis=1)
    return lambda rows: classification_metrics(test.gold[rows], predicted[rows], labels)[metric], len(predicted)


RowScorer = Callable[[Path, Path, str], tuple[Callable[[np.ndarray], float], int]]


def version_test_logits(version_dir: Path, data_dir: Path) -> tuple[np.ndarray, TokenizedSplit]:
    """A registered version's fp32 ONNX logits on this run's test texts, tokenized with the version's own tokenizer."""
    tokenizer = load_tokenizer(f"production version folder {version_dir}", str(version_dir))
    encoder = tokenizer.backend_tokenizer
    encoder.no_padding()
    test_table = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=["text", "label"])
    token_lists = [encoding.ids for encoding in encoder.encode_batch_fast(test_table.column("text").to_pylist())]
    test = TokenizedSplit.from_token_lists(token_lists, test_table.column("label").to_numpy())
    return session_logits(cpu_session(version_dir / ONNX_FP32_FILE), test, 64, pad_id(tokenizer)), test
