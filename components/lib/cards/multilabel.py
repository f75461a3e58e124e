"""The model card of a multi-label classifier's registry version: its labels and thresholds, test scores beside
the label-frequency baseline, each label's scores, training, lineage and a snippet that runs the folder.
Only recorded facts go in, as for a classifier's card (classifier.py; the helpers are shared.py's)."""

from __future__ import annotations

from collections.abc import Iterable

from components.lib.cards.shared import (
    clean_function_source,
    example_text,
    flag_rows,
    origin,
    python_string,
    rows_trained_on,
    where_trained,
)
from components.lib.data.contract import METRICS_FILE, ONNX_FP32_FILE, THRESHOLDS_FILE, TOKENIZER_FILE
from components.lib.data.label_sets import SET_JOIN
from components.lib.data.labels import LABELS_FILE
from components.lib.data.textclean import (
    TextCleaning,
)
from components.lib.storage.artifacts import MANIFEST


def build_multilabel_card(
    name: str, version: int, labels: list[str], lineage: dict, training: dict, train_summary: dict, metrics: dict,
    export_report: dict, data_stats: dict, code_version: dict, test_texts: Iterable[str] = (),
) -> str:  # fmt: skip
    test, baseline = metrics["test"], metrics["baseline_label_frequency"]
    rows = {split: entry.get("rows") for split, entry in data_stats.get("splits", {}).items()}
    cleaning = TextCleaning.from_lineage(lineage, f"model {name} v{version}")
    per_label = "\n".join(
        f"| {label} | {e['precision']:.3f} | {e['recall']:.3f} | {e['f1']:.3f} | {e['threshold']:.3f} | {e['support']} |"
        for label, e in test["per_label"].items()
    )
    scores = "\n".join(f"| {metric.replace('_', ' ')} | {test[metric]:.4f} | {baseline[metric]:.4f} |"
                       for metric in ("micro_f1", "macro_f1", "weighted_f1", "subset_accuracy", "hamming_loss"))  # fmt: skip
    fp32 = export_report.get("models", {}).get("fp32", {})
    best = train_summary.get("best", {})
    return f"""# {name} v{version}

A multi-label text classifier over {len(labels)} labels ({", ".join(labels)}): {origin(lineage)}, exported to ONNX.
Each label is a yes/no decision: its probability (a sigmoid) against its own threshold, tuned on the validation split.

## Intended use
Tagging texts similar to the training data ({lineage.get("source_uri", "?")}) with any number of these labels.

## Limits
- Trained on {rows_trained_on(train_summary, training, rows.get("train", "?"))}; scores below come from
  {rows.get("test", "?")} test rows of the same source, so they say little about other domains, languages or time periods.
- Texts are cut at {lineage.get("max_length", "?")} tokens; anything after that is not read.
- Rare labels are decided on few validation rows: check their support below before relying on them.

## Files
| file | what |
|---|---|
| {ONNX_FP32_FILE} | fp32 ONNX: one logit per label{f", test macro F1 {fp32['test']['macro_f1']:.4f}" if fp32 else ""} |
| {TOKENIZER_FILE} | the tokenizer used in training |
| {LABELS_FILE} | label names in output order |
| {THRESHOLDS_FILE} | each label's decision threshold |
| {METRICS_FILE} | full test metrics, with the label-frequency baseline |
| {MANIFEST} | sha256 of every file, and the lineage |

## Test scores
| metric | model | label-frequency baseline (always {baseline.get("predicts", "?").replace(SET_JOIN, ", ")}) |
|---|---|---|
{scores}

| label | precision | recall | F1 | threshold | support |
|---|---|---|---|---|---|
{per_label}

## Training
Best validation {best.get("metric")}: {best.get("value")} at step {best.get("step")}, on {where_trained(train_summary)}.

| flag | value |
|---|---|
{flag_rows(training, lineage.get("model_type", "transformer"))}

## Lineage
| | |
|---|---|
| source data | {lineage.get("source_uri", "?")} |
| source fingerprint (sha256) | {lineage.get("source_fingerprint", "?")} |
| base model | {lineage.get("base_model", "?")} |
| code version | {code_version.get("package")} {code_version.get("git_commit", "")} |

## Use
`pip install numpy onnxruntime tokenizers`; run in this folder (`python -m components.predict` does the same for a whole file):
```python
{usage_snippet(cleaning, example_text(test_texts))}
```
"""


def usage_snippet(cleaning: TextCleaning, example: str) -> str:
    return f'''import html, json, re, unicodedata

import numpy as np, onnxruntime, tokenizers

LABELS = json.load(open("{LABELS_FILE}"))["labels"]
THRESHOLDS = json.load(open("{THRESHOLDS_FILE}"))["by_label"]
tokenizer = tokenizers.Tokenizer.from_file("{TOKENIZER_FILE}")  # truncates as in training
session = onnxruntime.InferenceSession("{ONNX_FP32_FILE}", providers=["CPUExecutionProvider"])


{clean_function_source(cleaning)}


def tag(text):
    """({{label: probability}}, the labels at or above their thresholds) for one text."""
    encoding = tokenizer.encode(clean(text))
    feeds = {{"input_ids": np.array([encoding.ids], dtype=np.int64), "attention_mask": np.array([encoding.attention_mask], dtype=np.int64)}}
    probabilities = 1 / (1 + np.exp(-session.run(["logits"], feeds)[0][0]))
    scores = dict(zip(LABELS, probabilities.tolist()))
    return scores, [label for label in LABELS if scores[label] >= THRESHOLDS[label]]


print(tag({python_string(example)}))'''
