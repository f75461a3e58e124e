"""What every model card shares: the model's origin, the rows it trained on, the flags that shaped it (training's
settings table), a safe example text and Python literals for the usage snippets.

Only facts the pipeline recorded go on a card: of the lineage only named keys are shown, of the training flags
only settings (`shaping_flags`), and no example text that holds a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from components.lib.credentials import credential_in
from components.lib.data.textclean import (
    CONTROL_CHARACTERS,
    MENTION_MASK,
    MENTION_PATTERN,
    URL_MASK,
    URL_PATTERN,
    WHITESPACE_PATTERN,
    TextCleaning,
)
from components.lib.training.settings import ON_MODEL_CARD, SETTINGS, applies_to

EXAMPLE_CHARACTERS = 120  # the snippet's example text is cut to about this length
GENERIC_EXAMPLE = "This is an example text to classify."  # when the test split offers no usable text


def origin(lineage: dict) -> str:
    """How the model came to be, in a few words: its family, its base model, and its teacher if any."""
    base = f"`{lineage.get('base_model', '?')}`"
    made = f"a CNN over the token ids of {base}" if lineage.get("model_type") == "cnn" else f"fine-tuned from {base}"
    return made + (f", distilled from `{lineage['teacher']}`" if lineage.get("teacher") else "")


def where_trained(train_summary: dict) -> str:
    """'cpu in bfloat16 (auto: this CPU has native bf16 ...)': the device and precision train recorded, and why that precision."""
    reason = train_summary.get("precision_reason")
    return f"{train_summary.get('device', '?')} in {train_summary.get('precision', '?')}" + (f" ({reason})" if reason else "")


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


def example_text(test_texts: Iterable[str]) -> str:
    """The first test text that is not blank and holds no credential, its white space folded and cut
    at a word within EXAMPLE_CHARACTERS; GENERIC_EXAMPLE when there is none."""
    folded = (" ".join(text.split()) for text in test_texts if text)
    text = next((text for text in folded if text and not credential_in(text)), GENERIC_EXAMPLE)
    return text if len(text) <= EXAMPLE_CHARACTERS else text[:EXAMPLE_CHARACTERS].rsplit(" ", 1)[0] + " ..."


def python_string(text: str) -> str:
    """A Python literal of `text` that no backtick run in it can turn into the end of the card's code fence."""
    return repr(text).replace("`", "\\x60")  # repr escapes every backslash, so no backtick follows a lone one


def pattern_source(pattern: re.Pattern) -> str:
    """`re.compile(...)` source text for a compiled pattern, with its flags by name."""
    flags = re.RegexFlag(pattern.flags & ~re.UNICODE)
    return f"re.compile({pattern.pattern!r}, {flags!r})" if flags else f"re.compile({pattern.pattern!r})"


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def figure(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def scientific(value: Any) -> str:
    return f"{value:.2e}" if isinstance(value, (int, float)) else "-"


def production_comparison_section(comparison: dict | None) -> str:
    """The card's account of register's comparison with the production version; empty when none ran."""
    if not comparison:
        return ""
    lines = [
        "",
        "## Against production",
        f"On this version's test split, {comparison['metric']} {comparison['candidate']:.4f} against production"
        f" (version {comparison['version']}) {comparison['production']:.4f}, both scored as fp32 ONNX on the same rows.",
    ]
    if "p_value" in comparison:
        low, high = comparison["interval_95"]
        lines.append(
            f"Paired bootstrap of {comparison['rows']} rows ({comparison['samples']} resamples):"
            f" difference {comparison['difference']:+.4f}, 95% interval {low:+.4f} to {high:+.4f};"
            f" p = {comparison['p_value']:.3g} that it is not worse by more than {comparison['margin']} (small: significantly worse)."
        )
    return "\n".join(lines) + "\n"


def clean_function_source(cleaning: TextCleaning) -> str:
    """The usage snippets' `clean(text)`: textclean.clean_text's steps for this model, written from textclean's own patterns."""
    masks = ""
    if cleaning.mask_urls:
        masks += f"\n    text = {pattern_source(URL_PATTERN)}.sub({URL_MASK!r}, text)"
    if cleaning.mask_mentions:
        masks += f"\n    text = {pattern_source(MENTION_PATTERN)}.sub({MENTION_MASK!r}, text)"
    removed = "".join(chr(code) for code in sorted(CONTROL_CHARACTERS))
    return f'''def clean(text):
    """The cleaning of the training data (mask_urls={cleaning.mask_urls}, mask_mentions={cleaning.mask_mentions})."""
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFKC", text).translate(str.maketrans("", "", {removed!r})){masks}
    return {pattern_source(WHITESPACE_PATTERN)}.sub(" ", text).strip()'''
