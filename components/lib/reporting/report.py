"""The evaluation report: one self-contained HTML file, pictures embedded, readable offline."""

from __future__ import annotations

import base64
import html
from pathlib import Path

CAPTIONS = {
    "confusion_matrix": "Confusion matrix: counts, shaded by the share of each gold class (recall on the diagonal).",
    "precision_recall": "Precision against recall for each class, one vs the rest, as the decision threshold falls; "
    "AP is the area under the curve.",
    "confidence": "How sure the model was of the class it predicted: wrong predictions with high confidence deserve a look.",
    "training_curves": "Training: the loss (training loss is the mean over each logged interval), validation scores, "
    "the learning rate and validation F1 per class, by optimizer step.",
    "slices": "Accuracy on each slice of the test split (by length in tokens, by source file, by each --slice_columns value "
    "and by detected language where there are two or more), with its 95% bootstrap interval; a slice of few rows has a wide one.",
    "coverage": "If the model answered only its most confident rows: the accuracy of those it answers, by the share it "
    "answers. A model trained with an abstention target abstains below the marked confidence.",
    "lr_range_test": "The learning-rate range test before training: the smoothed loss as the rate grew; training used the "
    "suggested rate, a tenth of where the loss was lowest.",
}
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.number{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#555;margin-top:-0.5em}.meta b{color:#222}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:0.9em}
.pair{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.pair figure{flex:1 1 480px;margin:0}"""


def page_start(title: str, heading: dict) -> str:
    """A report's HTML up to its first section: the title, and the heading's facts on one line."""
    meta = " &middot; ".join(f"{html.escape(key)}: <b>{html.escape(str(value))}</b>" for key, value in heading.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="meta">{meta}</p>
"""


def embedded_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    caption = CAPTIONS.get(path.stem, "")
    image = f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
    return f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>"


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(table_cell(cell) for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_value_table(items: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(format_cell(value))}</td></tr>" for key, value in items.items())
    return f"<table><tbody>{rows}</tbody></table>"


def table_cell(cell) -> str:
    numeric = isinstance(cell, int | float) and not isinstance(cell, bool)
    return f"<td{' class=number' if numeric else ''}>{html.escape(format_cell(cell))}</td>"


def format_cell(cell) -> str:
    if cell is None:
        return "-"
    return f"{cell:.4f}" if isinstance(cell, float) else str(cell)


def audit_section(audit: dict) -> str:
    """preprocess's label audit: how many rows it suspects, and the most suspect ones; nothing when it did not run."""
    if "found" not in audit:
        return ""
    top = table(
        ["split", "source row", "label", "suggested", "label quality", "text"],
        [[row["split"], row["source_row"], row["label"], row["suggested"], row["label_quality"], row["text"]] for row in audit["top"]],
    )
    return (
        f"<h2>Suspect labels</h2><p>preprocess's label audit suspects {audit['found']} of {audit['rows_audited']} rows"
        f" ({html.escape(audit['method'])}, {audit['folds']} folds); all are in label_issues.parquet in preprocess's folder."
        f" The most suspect:</p>{top}"
    )


def interval(bounds: list[float]) -> str:
    return f"{bounds[0]:.3f} to {bounds[1]:.3f}"


def evaluation_html(
    title: str, heading: dict, metrics: dict, baseline: dict, pictures: list[Path], errors: list[dict], context: dict, audit: dict
) -> str:
    """`heading`: the few facts shown under the title (model, run, dates); `context`: the rest, at the end."""
    scores = ["accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1"]
    summary = table(
        ["metric", "model", "majority-class baseline"],
        [[name, metrics[name], baseline[name]] for name in scores] + [["loss", metrics["loss"], "-"]],
    )
    per_class = table(
        ["class", "precision", "recall", "f1", "average precision", "support"],
        [
            [name, entry["precision"], entry["recall"], entry["f1"], entry.get("average_precision"), entry["support"]]
            for name, entry in metrics["per_class"].items()
        ],
    )
    mistakes = (
        table(
            ["gold", "predicted", "confidence", "source row", "text"],
            [[row["gold"], row["predicted"], row["confidence"], row["source_row"], row["text"][:300]] for row in errors],
        )
        if errors
        else "<p>None: every test row was predicted right.</p>"
    )
    sliced = table(
        ["slice", "rows", "accuracy", "95% interval", "macro-F1", "95% interval", ""],
        [[entry["slice"], entry["rows"], entry["accuracy"], interval(entry["accuracy_95"]), entry["macro_f1"],
          interval(entry["macro_f1_95"]), "small: within noise" if entry["small"] else ""] for entry in metrics.get("slices", [])],
    )  # fmt: skip
    facts = key_value_table(context)
    by_name = {path.stem: embedded_png(path) for path in pictures}
    first_pair = "".join(by_name.pop(name) for name in ("confusion_matrix", "precision_recall") if name in by_name)
    return (
        page_start(title, heading)
        + f"""<h2>Test scores</h2>{summary}
<h2>Per class</h2>{per_class}
<h2>Slices</h2>{sliced}
<h2>Pictures</h2><div class="pair">{first_pair}</div>
{"".join(by_name.values())}
<h2>Most confident mistakes</h2>{mistakes}
{audit_section(audit)}
<h2>Run</h2>{facts}
</body></html>
"""
    )
