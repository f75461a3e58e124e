"""A causal language model's model card (`build_language_model_card`): its tokenizer, data, training, test
scores beside the n-gram baseline, sample generations, the export's parity and a snippet that generates with the
folder alone. Only recorded facts go in, as for a classifier's card (cards/shared.py).
"""

from __future__ import annotations

import re
from typing import Any

from components.lib.cards.shared import count, figure, flag_rows, origin, python_string, rows_trained_on, scientific, where_trained
from components.lib.data.contract import (
    CAUSAL_LM,
    EXPORT_REPORT_FILE,
    METRICS_FILE,
    ONNX_FP32_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)
from components.lib.data.lm_tokenize import BASE
from components.lib.data.textclean import TextCleaning
from components.lib.modelling.language_model import SIZES
from components.lib.storage.artifacts import MANIFEST

LM_TEST_FIGURES = (  # (metrics.json key, name on the card), in the card's order
    ("perplexity", "perplexity"),
    ("bits_per_character", "bits per character"),
    ("next_token_accuracy", "next-token accuracy"),
    ("loss", "loss (nats per predicted token)"),
)
GENERATED_TOKENS = 20  # in the usage snippet


def build_language_model_card(
    name: str,
    version: int,
    lineage: dict,
    training: dict,
    train_summary: dict,
    metrics: dict,
    export_report: dict,
    data_stats: dict,
    code_version: dict,
) -> str:
    """A causal language model's card; the arguments are build_model_card's, less the labels and calibration."""
    splits = data_stats.get("splits", {})
    train = splits.get("train", {})
    block_size = data_stats.get("block_size") or lineage.get("block_size") or export_report.get("block_size")
    cleaning = TextCleaning.from_lineage(lineage, f"model {name} v{version}")
    samples = metrics.get("samples", [])
    return f"""# {name} v{version}

A causal language model (next-token prediction): {language_model_origin(lineage, training)}, exported to ONNX.

## Intended use
Continuing and scoring text like its training data ({lineage.get("source_uri", "?")}): short
generations, the likelihood of a text, a baseline for larger runs.

## Limits
- The train split has {count(train.get("tokens"))} tokens ({count(train.get("documents"))} documents) of one source; trained
  on {rows_trained_on(train_summary, training, train.get("blocks", "?"), "blocks")}: tiny data for a language model.
  Expect fluent-looking but often wrong or repetitive text, and little outside that source's domain.
- It reads at most {block_size} tokens at once. The ONNX graph has no KV cache: each new token reads the whole
  context again, so generating is slower than with a cached decoder.
- Perplexity is comparable only between models with this very tokenizer ({TOKENIZER_FILE}); bits per character
  compare across tokenizers (on the same text).
- Generated text is not checked for facts, bias or offence; not for decisions about people without human review.

## Files
| file | what |
|---|---|
| {ONNX_FP32_FILE} | fp32 ONNX (opset {export_report.get("opset", "?")}): input_ids and attention_mask in, next-token logits out |
| {TOKENIZER_FILE}, {TOKENIZER_CONFIG_FILE} | the tokenizer used in training |
| {METRICS_FILE} | full test metrics, with the n-gram baseline and the sample generations |
| {EXPORT_REPORT_FILE} | the export's parity check and latency |
| {MANIFEST} | sha256 of every file, and the lineage |

## Tokenizer
{tokenizer_lines(data_stats, lineage)}

## Data
Source: {lineage.get("source_uri", "?")} (sha256 {lineage.get("source_fingerprint", "?")}); text cleaning
mask_urls={cleaning.mask_urls}, mask_mentions={cleaning.mask_mentions}. Each document ends with an end-of-text token;
the documents of a split are joined and cut into blocks of {block_size} tokens.

| split | documents | characters | tokens | blocks |
|---|---|---|---|---|
{split_rows(splits)}

## Training
{language_model_training(train_summary)}

| flag | value |
|---|---|
{flag_rows(training, CAUSAL_LM)}

## Test results
{language_model_scores(metrics)}

## Samples
Seeded top-k continuations of the first tokens of test blocks (the prompt in brackets, then what the model wrote):
{samples_block(samples)}

## Export
{export_lines(export_report)}

## Lineage
| | |
|---|---|
| source data | {lineage.get("source_uri", "?")} |
| source fingerprint (sha256) | {lineage.get("source_fingerprint", "?")} |
| model | {language_model_origin(lineage, training)} |
| tokenizer | {lineage.get("tokenizer", "?")}, {lineage.get("vocab_size", "?")} entries |
| code version | {code_version.get("package")} {code_version.get("git_commit", "")} |

## Use
Greedy generation with this folder alone (`pip install numpy onnxruntime tokenizers`; run in this folder):
```python
{language_model_snippet(samples[0]["prompt"] if samples else "The", block_size)}
```
"""


def language_model_origin(lineage: dict, training: dict) -> str:
    """A GPT-2 of --lm_size trained from scratch, or (lm_size pretrained) origin()'s fine-tuned base model."""
    size = lineage.get("lm_size", training.get("lm_size"))
    if size not in SIZES:
        return origin(lineage)
    shape = SIZES[size]
    return f"a GPT-2 '{size}' ({shape.layers} layers of width {shape.width}, {shape.heads} heads) trained from scratch"


def tokenizer_lines(data_stats: dict, lineage: dict) -> str:
    tokenizer = data_stats.get("tokenizer", {})
    kind = tokenizer.get("kind", lineage.get("tokenizer", "?"))
    trained = f"the tokenizer of `{lineage.get('base_model', '?')}`, unchanged" if kind == BASE else "trained on the train split only"
    requested = tokenizer.get("requested_vocab_size")
    asked = f" ({count(requested)} asked for)" if requested else ""
    per_token = ", ".join(
        f"{split} {figure(entry.get('characters_per_token'), 2)}" for split, entry in data_stats.get("splits", {}).items()
    )
    return f"""| | |
|---|---|
| kind | {kind}: {trained} |
| vocabulary | {count(tokenizer.get("vocab_size", lineage.get("vocab_size")))} entries{asked} |
| characters per token | {per_token or "?"} |"""


def split_rows(splits: dict) -> str:
    columns = ("documents", "characters", "tokens", "blocks")
    return "\n".join(f"| {split} | {' | '.join(count(entry.get(column)) for column in columns)} |" for split, entry in splits.items())


def language_model_training(summary: dict) -> str:
    best = summary.get("best", {})
    return (
        f"{count(summary.get('global_steps'))} optimizer steps, {count(summary.get('tokens_seen'))} tokens seen, at"
        f" {figure(summary.get('tokens_per_second'), 1)} tokens/s on {where_trained(summary)}.\n"
        f"Best validation {best.get('metric', '?')}: {figure(best.get('value'))} at step {best.get('step', '?')}."
    )


def language_model_scores(metrics: dict) -> str:
    test, baseline = metrics["test"], metrics.get("baseline_ngram", {})
    rows = "\n".join(f"| {label} | {figure(test.get(key))} | {figure(baseline.get(key))} |" for key, label in LM_TEST_FIGURES)
    return f"""| metric | model | {baseline.get("order", "n")}-gram baseline |
|---|---|---|
{rows}

On {count(test.get("tokens"))} predicted test tokens. The baseline is an interpolated n-gram model trained on the train
split with the same tokenizer."""


def samples_block(samples: list[dict]) -> str:
    """The samples in a fenced block whose fence no sample's text can close."""
    text = "\n\n".join(f"seed {sample.get('seed')}: [{sample.get('prompt', '')}]{sample.get('continuation', '')}" for sample in samples)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text or '(none)'}\n{fence}"


def export_lines(export_report: dict) -> str:
    parity = export_report.get("parity", {})
    perplexity = parity.get("perplexity", {})
    latency = export_report.get("models", {}).get("fp32", {}).get("latency", {}).get("batch_1", {})
    skipped = "\n".join(f"- {file}: {reason}" for file, reason in export_report.get("not_exported", {}).items())
    return f"""| ONNX against PyTorch | |
|---|---|
| compared on | {parity.get("blocks", "?")} test blocks, {count(parity.get("positions"))} positions |
| largest logit difference | {scientific(parity.get("max_abs_logit_diff"))} |
| next-token argmax agreement | {figure(parity.get("argmax_agreement"))} |
| perplexity, onnxruntime / PyTorch | {figure(perplexity.get("onnxruntime"))} / {figure(perplexity.get("pytorch"))} |
| batch-1 latency p50 on CPU | {latency.get("p50_ms", "?")} ms for a {latency.get("tokens", "?")}-token block |

Not exported:
{skipped or "- nothing left out"}"""


def language_model_snippet(prompt: str, block_size: Any) -> str:
    """Python that generates greedily with this folder alone: encode, run, take the most likely next token."""
    return f'''import numpy as np, onnxruntime, tokenizers

tokenizer = tokenizers.Tokenizer.from_file("{TOKENIZER_FILE}")
session = onnxruntime.InferenceSession("{ONNX_FP32_FILE}", providers=["CPUExecutionProvider"])
CONTEXT = {block_size}  # the most tokens the model reads at once

ids = tokenizer.encode({python_string(prompt)}, add_special_tokens=False).ids
for _ in range({GENERATED_TOKENS}):  # no KV cache: every step reads the whole context again
    context = np.array([ids[-CONTEXT:]], dtype=np.int64)
    logits = session.run(["logits"], {{"input_ids": context, "attention_mask": np.ones_like(context)}})[0]
    ids.append(int(logits[0, -1].argmax()))
print(tokenizer.decode(ids))'''
