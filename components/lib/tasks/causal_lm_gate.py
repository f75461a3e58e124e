"""A causal language model's quality gate, as register applies it (see components/register.py's docstring):
--max_perplexity, then the n-gram baseline, then the production version, by perplexity on the same test
blocks when the two share a tokenizer, else by bits per character.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from components.lib.data.batching import TokenizedSplit, sorted_batches
from components.lib.data.contract import EXPORT_REPORT_FILE, METRICS_FILE, ONNX_FP32_FILE, TOKENIZER_FILE, task_of
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.language_model import next_token_loss_sum, predicted_tokens
from components.lib.modelling.lm_export import LOGITS_PER_BATCH
from components.lib.modelling.onnx_runtime import cpu_session, feeds
from components.lib.quality_gate import Gate, GateFlags, Verdict, gate_checks
from components.lib.storage.artifacts import staged_input
from components.lib.storage.registry import PRODUCTION, Registry

log = logging.getLogger("components.register")
# Padding follows a block's real tokens, where causal attention cannot reach them and the loss does
# not look: any id serves.
PAD_ID = 0


def language_model_verdict(
    task_name: str, gate: Gate, classification: Gate, registry: Registry, metrics: dict, flags: GateFlags, data_dir: Path, export_uri: str
) -> Verdict:
    """--max_perplexity, then the n-gram baseline, then production (see the module's docstring)."""
    warn_classification_flags(flags, classification)
    candidate = metrics["test"][gate.metric]
    above_limit = f"test {gate.label} {candidate:.4f} is above --{gate.flag} {flags.max_perplexity}"
    checks = gate_checks(
        [
            (gate.flag, True, lambda: None if gate.passes(candidate, flags.max_perplexity) else above_limit),
            ("require_beat_baseline", flags.require_beat_baseline, lambda: ngram_baseline_refusal(metrics)),
            (
                "compare_with_production",
                flags.compare_with_production,
                lambda: language_model_production_refusal(task_name, registry, metrics["test"], flags.max_regression, data_dir, export_uri),
            ),
        ]
    )
    return Verdict(gate.metric, candidate, checks)


def warn_classification_flags(flags: GateFlags, classification: Gate) -> None:
    """One warning if classification's gate flags were set for a language model."""
    set_flags = [f"--{classification.flag} {flags.gate_min}"] if flags.gate_min else []
    if flags.gate_metric:
        set_flags.append(f"--gate_metric {flags.gate_metric}")
    if set_flags:
        log.warning(
            "%s: classification's gate, not applied to a causal language model (its gate is --max_perplexity)", ", ".join(set_flags)
        )


def ngram_baseline_refusal(metrics: dict) -> str | None:
    """None if the model's test perplexity is below the n-gram baseline's, else why not, naming both."""
    model, baseline = metrics["test"]["perplexity"], metrics["baseline_ngram"]["perplexity"]
    if model < baseline:
        return None
    return (
        f"the model does not beat the {metrics['baseline_ngram'].get('order', 'n')}-gram baseline on the test split:"
        f" perplexity {model:.4f} against {baseline:.4f}; pass {flag_hint('require_beat_baseline', 'false')} to register it anyway"
    )


def language_model_production_refusal(
    task_name: str, registry: Registry, test: dict, max_regression: float, data_dir: Path, export_uri: str
) -> str | None:
    """None if there is no production version or the candidate is not more than max_regression (relative) worse than it."""
    if registry.read_alias(PRODUCTION) is None:
        return None
    with staged_input(export_uri, only=[TOKENIZER_FILE]) as (export_dir, _), registry.fetch(PRODUCTION) as (version, folder, manifest):
        if task_of(manifest) != task_name:
            raise UserError(
                f"the production version {version} is a {task_of(manifest)} model, not a causal language model;"
                f" register under another {flag_hint('model_name')}, or pass {flag_hint('compare_with_production', 'false')}"
            )
        measure, production, where = production_figure(version, folder, export_dir / TOKENIZER_FILE, data_dir)
    candidate = test.get(measure)
    if production is None or candidate is None:
        log.info("production version %d: no test %s on both sides (it needs the characters counted); not compared", version, measure)
        return None
    log.info("production version %d: test %s %.4f %s; candidate %.4f", version, measure, production, where, candidate)
    if candidate > production * (1 + max_regression):
        return (
            f"test {measure} {candidate:.4f} is more than --max_regression {max_regression} (relative) above production"
            f" (version {version}: {production:.4f} {where})"
        )
    return None


def production_figure(version: int, folder: Path, tokenizer_file: Path, data_dir: Path) -> tuple[str, float | None, str]:
    """(metric, production's value, where it was measured): its perplexity on this run's test blocks when that
    compares, else the bits per character its metrics.json records."""
    reason = not_comparable_by_perplexity(folder, tokenizer_file, data_dir)
    if reason is None:
        return "perplexity", onnx_perplexity(folder, data_dir), "on the same test blocks"
    log.info("production version %d: %s; comparing test bits per character instead of perplexity", version, reason)
    return "bits_per_character", json.loads((folder / METRICS_FILE).read_text())["test"].get("bits_per_character"), "on its own test split"


def not_comparable_by_perplexity(version_dir: Path, tokenizer_file: Path, data_dir: Path) -> str | None:
    """Why the production version cannot be scored on this run's test blocks; None if it can."""
    theirs = version_dir / TOKENIZER_FILE
    if not tokenizer_file.is_file() or not theirs.is_file() or theirs.read_bytes() != tokenizer_file.read_bytes():
        return f"its {TOKENIZER_FILE} is not this run's, so its perplexity counts other tokens"
    exported_for = json.loads((version_dir / EXPORT_REPORT_FILE).read_text()).get("block_size")
    longest = int(TokenizedSplit.load_blocks(data_dir, "test").lengths.max(initial=0))
    if exported_for is not None and longest > exported_for:
        return f"it was exported for blocks of {exported_for} tokens and this test split's are {longest}"
    return None


def onnx_perplexity(version_dir: Path, data_dir: Path) -> float:
    """A registered language model's test perplexity with onnxruntime on this run's test blocks, as evaluate scores them."""
    session = cpu_session(version_dir / ONNX_FP32_FILE)
    test = TokenizedSplit.load_blocks(data_dir, "test")
    vocab_size = json.loads((version_dir / EXPORT_REPORT_FILE).read_text())["vocab_size"]
    rows_per_batch = max(1, LOGITS_PER_BATCH // (int(test.lengths.max(initial=1)) * vocab_size))
    loss_sum = 0.0
    for rows in sorted_batches(test.lengths, rows_per_batch):
        batch = test.collate(rows, PAD_ID)
        logits = torch.from_numpy(session.run(["logits"], feeds(batch))[0])
        loss_sum += float(next_token_loss_sum(logits, batch["input_ids"], batch["attention_mask"]))
    tokens = predicted_tokens(test.lengths)
    return math.exp(loss_sum / tokens) if tokens else math.nan
