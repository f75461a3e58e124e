"""The model card written into every registry version (MODEL_CARD.md): a classifier's
(`build_model_card`) or a causal language model's (`build_language_model_card`).

Only facts the pipeline recorded go in: data lineage, base model, training flags, test scores,
the ONNX variants, and a text of the model's own test split as the usage snippet's example. Nothing
from the environment, so no credential can reach it; of the lineage only named keys are shown, of the
training flags only settings (`shaping_flags`), and no example text that holds a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from components.lib.credentials import credential_in
from components.lib.data.contract import (
    CALIBRATION_FILE,
    CAUSAL_LM,
    EXPORT_REPORT_FILE,
    METRICS_FILE,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)
from components.lib.data.labels import LABELS_FILE
from components.lib.data.lm_tokenize import BASE
from components.lib.data.textclean import (
    CONTROL_CHARACTERS,
    MENTION_MASK,
    MENTION_PATTERN,
    URL_MASK,
    URL_PATTERN,
    WHITESPACE_PATTERN,
    TextCleaning,
)
from components.lib.modelling.language_model import SIZES
from components.lib.storage.artifacts import MANIFEST
from components.lib.training.settings import ON_MODEL_CARD, SETTINGS, applies_to

EXAMPLE_CHARACTERS = 120  # the snippet's example text is cut to about this length
GENERIC_EXAMPLE = "This is an example text to classify."  # when the test split offers no usable text


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

## Training
Best validation {train_summary.get("best", {}).get("metric")}: {train_summary.get("best", {}).get("value")}
at step {train_summary.get("best", {}).get("step")}, on {train_summary.get("device", "?")} in {train_summary.get("precision", "?")}.

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


def calibration_lines(calibration: dict) -> str:
    if not calibration.get("rows"):
        return ""
    return (
        f"Probabilities are calibrated by temperature scaling (T = {calibration['temperature']:.3f}): expected calibration"
        f" error on the test split {calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after.\n"
    )


def rows_trained_on(train_summary: dict, training: dict, split_rows: Any, unit: str = "rows") -> str:
    """'1279 rows', or under --max_train_samples '600 of 1279 train rows (max_train_samples=600)': the
    count train recorded (train_summary.json's train_rows), else the split's."""
    recorded = train_summary.get("train_rows", {})
    used, of = recorded.get("used"), recorded.get("of", split_rows)
    cap = training.get("max_train_samples") or 0
    if used is None and cap:  # trained before train recorded its rows
        return f"at most {cap} of {of} train {unit} (max_train_samples={cap}; the count was not recorded)"
    if used is None or used == of:
        return f"{of} {unit}"
    return f"{used} of {of} train {unit} (max_train_samples={cap})"


def example_text(test_texts: Iterable[str]) -> str:
    """The first test text that is not blank and holds no credential, its white space folded and cut
    at a word within EXAMPLE_CHARACTERS; GENERIC_EXAMPLE when there is none."""
    folded = (" ".join(text.split()) for text in test_texts if text)
    text = next((text for text in folded if text and not credential_in(text)), GENERIC_EXAMPLE)
    return text if len(text) <= EXAMPLE_CHARACTERS else text[:EXAMPLE_CHARACTERS].rsplit(" ", 1)[0] + " ..."


def python_string(text: str) -> str:
    """A Python literal of `text` that no backtick run in it can turn into the end of the card's code fence."""
    return repr(text).replace("`", "\\x60")  # repr escapes every backslash, so no backtick follows a lone one


def usage_snippet(cleaning: TextCleaning, calibrated: bool, example: str) -> str:
    """Python that classifies a text with this folder alone, cleaning it exactly as textclean.clean_text
    did in training; written from textclean's own patterns, and tested against components.predict."""
    masks = ""
    if cleaning.mask_urls:
        masks += f"\n    text = {pattern_source(URL_PATTERN)}.sub({URL_MASK!r}, text)"
    if cleaning.mask_mentions:
        masks += f"\n    text = {pattern_source(MENTION_PATTERN)}.sub({MENTION_MASK!r}, text)"
    removed = "".join(chr(code) for code in sorted(CONTROL_CHARACTERS))
    temperature = f'json.load(open("{CALIBRATION_FILE}"))["temperature"]  # calibrated probabilities' if calibrated else "1.0"
    return f'''import html, json, re, unicodedata

import numpy as np, onnxruntime, tokenizers

LABELS = json.load(open("{LABELS_FILE}"))["labels"]
tokenizer = tokenizers.Tokenizer.from_file("{TOKENIZER_FILE}")  # truncates as in training
session = onnxruntime.InferenceSession("{ONNX_FP32_FILE}", providers=["CPUExecutionProvider"])
TEMPERATURE = {temperature}


def clean(text):
    """The cleaning of the training data (mask_urls={cleaning.mask_urls}, mask_mentions={cleaning.mask_mentions})."""
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFKC", text).translate(str.maketrans("", "", {removed!r})){masks}
    return {pattern_source(WHITESPACE_PATTERN)}.sub(" ", text).strip()


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


def pattern_source(pattern: re.Pattern) -> str:
    """`re.compile(...)` source text for a compiled pattern, with its flags by name."""
    flags = re.RegexFlag(pattern.flags & ~re.UNICODE)
    return f"re.compile({pattern.pattern!r}, {flags!r})" if flags else f"re.compile({pattern.pattern!r})"


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


def origin(lineage: dict) -> str:
    """How the model came to be, in a few words: its family, its base model, and its teacher if any."""
    base = f"`{lineage.get('base_model', '?')}`"
    made = f"a CNN over the token ids of {base}" if lineage.get("model_type") == "cnn" else f"fine-tuned from {base}"
    return made + (f", distilled from `{lineage['teacher']}`" if lineage.get("teacher") else "")


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


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def figure(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def scientific(value: Any) -> str:
    return f"{value:.2e}" if isinstance(value, (int, float)) else "-"


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


def flag_rows(training: dict, kind: str) -> str:
    return "\n".join(f"| {name} | {value} |" for name, value in shaping_flags(training, kind).items())


def shaping_flags(training: dict, kind: str) -> dict[str, Any]:
    """The recorded settings that shaped a model of `kind` (a classifier's model type, or CAUSAL_LM): those
    ON_MODEL_CARD, and any other that changes what training computes (resume-relevant) set off its
    default; never a setting that does not apply to `kind`."""
    return {
        spec.name: training[spec.name]
        for spec in SETTINGS
        if spec.name in training
        and applies_to(spec, kind)
        and (spec.name in ON_MODEL_CARD or (spec.metadata["resume"] and training[spec.name] != spec.default))
    }


def language_model_training(summary: dict) -> str:
    best = summary.get("best", {})
    return (
        f"{count(summary.get('global_steps'))} optimizer steps, {count(summary.get('tokens_seen'))} tokens seen, at"
        f" {figure(summary.get('tokens_per_second'), 1)} tokens/s on {summary.get('device', '?')} in {summary.get('precision', '?')}.\n"
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
