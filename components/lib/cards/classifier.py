"""A classifier's model card (`build_model_card`), written into every registry version as MODEL_CARD.md.

Only facts the pipeline recorded go in: data lineage, base model, training flags, test scores, the ONNX
variants, and a text of the model's own test split as the usage snippet's example. Nothing from the
environment, so no credential can reach it (cards/shared.py says what of the lineage and flags is shown).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from components.lib.cards.shared import (
    clean_function_source,
    example_text,
    flag_rows,
    origin,
    python_string,
    rows_trained_on,
    where_trained,
)
from components.lib.data.contract import (
    CALIBRATION_FILE,
    METRICS_FILE,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)
from components.lib.data.labels import LABELS_FILE
from components.lib.data.textclean import (
    TextCleaning,
)
from components.lib.storage.artifacts import MANIFEST


def build_model_card(
    name: str,
    version: int,
    labels: list[str],
    lineage: dict,
    training: dict,
    train_summary: dict,
    metrics: dict,
    export_report: dict,
    data_stats: dict,
    code_version: dict,
    calibrated: bool,
    test_texts: Iterable[str] = (),
) -> str:
    """`calibrated`: the version holds CALIBRATION_FILE (models trained before calibration existed do not);
    `test_texts`: the first texts of the test split, for the usage snippet's example."""
    test, baseline = metrics["test"], metrics["baseline_majority_class"]
    per_class = "\n".join(
        f"| {label} | {entry['precision']:.3f} | {entry['recall']:.3f} | {entry['f1']:.3f} | {entry['support']} |"
        for label, entry in test["per_class"].items()
    )
    rows = {split: entry.get("rows") for split, entry in data_stats.get("splits", {}).items()}
    cleaning = TextCleaning.from_lineage(lineage, f"model {name} v{version}")
    model_type = lineage.get("model_type", "transformer")
    calibration_row = (
        f"| {CALIBRATION_FILE} | the temperature T fitted on the validation split: probabilities are softmax(logits / T) |\n"
        if calibrated
        else ""
    )
    return f"""# {name} v{version}

A {len(labels)}-class text classifier ({", ".join(labels)}): {origin(lineage)}, exported to ONNX.

## Intended use
Sentiment (or other single-label) classification of short English texts similar to the training
data: {lineage.get("source_uri", "?")}. Give it one text at a time or in batches; read the class
with the highest probability.

## Limits
- Trained on {rows_trained_on(train_summary, training, rows.get("train", "?"))}; scores below come from
  {rows.get("test", "?")} test rows of the same source, so they say little about other domains, languages or time periods.
- Texts are cut at {lineage.get("max_length", "?")} tokens; anything after that is not read.
- The scores are averages: check the per-class table, the minority classes are usually worse.
- Not for decisions about people without human review.

## Files
| file | what |
|---|---|
{files_table(export_report)}
| {TOKENIZER_FILE}, {TOKENIZER_CONFIG_FILE} | the tokenizer used in training (truncates at {lineage.get("max_length", "?")} tokens) |
| {LABELS_FILE} | class names in output order |
{calibration_row}| {METRICS_FILE} | full test metrics, with the majority-class baseline |
| {MANIFEST} | sha256 of every file, and the lineage |

## Test scores
| metric | model | majority-class baseline |
|---|---|---|
| accuracy | {test["accuracy"]:.4f} | {baseline["accuracy"]:.4f} |
| macro F1 | {test["macro_f1"]:.4f} | {baseline["macro_f1"]:.4f} |
| weighted F1 | {test["weighted_f1"]:.4f} | {baseline["weighted_f1"]:.4f} |

{calibration_lines(test.get("calibration", {}) if calibrated else {})}
| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}
{slice_lines(test.get("slices", []))}{abstention_lines(test.get("abstention"))}
## Training
Best validation {train_summary.get("best", {}).get("metric")}: {train_summary.get("best", {}).get("value")}
at step {train_summary.get("best", {}).get("step")}, on {where_trained(train_summary)}.

| flag | value |
|---|---|
{flag_rows(training, model_type)}

## Lineage
| | |
|---|---|
| source data | {lineage.get("source_uri", "?")} |
| source fingerprint (sha256) | {lineage.get("source_fingerprint", "?")} |
| base model | {lineage.get("base_model", "?")} |
| model type | {model_type} |
| distilled from (teacher) | {lineage.get("teacher") or "no teacher"} |
| text cleaning (preprocess) | mask_urls={cleaning.mask_urls}, mask_mentions={cleaning.mask_mentions} |
| code version | {code_version.get("package")} {code_version.get("git_commit", "")} |

## Use
Clean each text as the training data was, tokenize it with the tokenizer here, run the model, and
turn its logits into probabilities over the classes of {LABELS_FILE} (`pip install numpy onnxruntime tokenizers`;
run in this folder; `python -m components.predict` does the same for a whole file):
```python
{usage_snippet(cleaning, calibrated, example_text(test_texts))}
```
"""


def abstention_lines(abstention: dict | None) -> str:
    """What abstaining gives on the test split, for a model trained with a target; empty otherwise."""
    if not abstention:
        return ""
    return (
        f"\nThe model abstains when its highest probability is below {abstention['min_confidence']:.4f} (chosen on the validation"
        f" split; in {CALIBRATION_FILE}): on the test split it answers {100 * abstention['coverage']:.1f}% of the rows, at accuracy"
        f" {abstention['accuracy']:.4f}. predict and the model server still give its probabilities, with `abstained: true`.\n"
    )


def slice_lines(slices: list[dict]) -> str:
    """The test scores by slice (length in tokens, source file), with their 95% intervals; empty for older evaluations."""
    if not slices:
        return ""
    rows = "\n".join(
        f"| {entry['slice']} | {entry['rows']} | {entry['accuracy']:.3f} ({entry['accuracy_95'][0]:.3f} to {entry['accuracy_95'][1]:.3f})"
        f" | {entry['macro_f1']:.3f} |{' too few rows to judge' if entry['small'] else ''} |"
        for entry in slices
    )
    return f"""
By slice of the test split (95% bootstrap intervals):

| slice | rows | accuracy | macro F1 | |
|---|---|---|---|---|
{rows}
"""


def calibration_lines(calibration: dict) -> str:
    if not calibration.get("rows"):
        return ""
    return (
        f"Probabilities are calibrated by temperature scaling (T = {calibration['temperature']:.3f}): expected calibration"
        f" error on the test split {calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after.\n"
    )


def usage_snippet(cleaning: TextCleaning, calibrated: bool, example: str) -> str:
    """Python that classifies a text with this folder alone, cleaning it exactly as textclean.clean_text
    did in training; written from textclean's own patterns, and tested against components.predict."""
    temperature = f'json.load(open("{CALIBRATION_FILE}"))["temperature"]  # calibrated probabilities' if calibrated else "1.0"
    return f'''import html, json, re, unicodedata

import numpy as np, onnxruntime, tokenizers

LABELS = json.load(open("{LABELS_FILE}"))["labels"]
tokenizer = tokenizers.Tokenizer.from_file("{TOKENIZER_FILE}")  # truncates as in training
session = onnxruntime.InferenceSession("{ONNX_FP32_FILE}", providers=["CPUExecutionProvider"])
TEMPERATURE = {temperature}


{clean_function_source(cleaning)}


def classify(text):
    """{{label: probability}} for one text."""
    encoding = tokenizer.encode(clean(text))
    feeds = {{"input_ids": np.array([encoding.ids], dtype=np.int64), "attention_mask": np.array([encoding.attention_mask], dtype=np.int64)}}
    logits = session.run(["logits"], feeds)[0][0] / TEMPERATURE
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return dict(zip(LABELS, probabilities.tolist()))


scores = classify({python_string(example)})
print(max(scores, key=scores.get), scores)'''


def files_table(export_report: dict[str, Any]) -> str:
    models = export_report.get("models", {})
    lines = []
    fp32 = models.get("fp32")
    if fp32:
        lines.append(
            f"| {ONNX_FP32_FILE} | fp32 ONNX (opset {export_report.get('opset')}): test macro F1 {fp32['test']['macro_f1']:.4f},"
            f" batch-1 latency p50 {fp32['latency']['batch_1']['p50_ms']} ms on CPU |"
        )
    int8 = models.get("int8")
    if int8 and int8.get("file"):
        lines.append(
            f"| {ONNX_INT8_FILE} | INT8 weights (dynamic quantization): test macro F1 {int8['test']['macro_f1']:.4f}"
            f" ({-export_report.get('int8_macro_f1_drop', 0):+.4f} against fp32),"
            f" batch-1 latency p50 {int8['latency']['batch_1']['p50_ms']} ms on CPU |"
        )
    return "\n".join(lines)
