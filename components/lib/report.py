"""The evaluation report: one self-contained HTML file, pictures embedded, readable offline."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def embedded_png(path: Path) -> str:
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_cell(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def format_cell(cell) -> str:
    return f"{cell:.4f}" if isinstance(cell, float) else str(cell)


def evaluation_html(title: str, metrics: dict, baseline: dict, pictures: list[Path], errors: list[dict], context: dict) -> str:
    scores = ["accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1"]
    summary = table(
        ["metric", "model", "majority-class baseline"],
        [[name, metrics[name], baseline[name]] for name in scores] + [["loss", metrics["loss"], "-"]],
    )
    per_class = table(
        ["class", "precision", "recall", "f1", "support"],
        [[name, entry["precision"], entry["recall"], entry["f1"], entry["support"]] for name, entry in metrics["per_class"].items()],
    )
    mistakes = table(
        ["gold", "predicted", "confidence", "text"],
        [[row["gold"], row["predicted"], row["confidence"], row["text"][:300]] for row in errors],
    )
    facts = table(["", ""], [[key, value] for key, value in context.items()])
    images = "\n".join(embedded_png(path) for path in pictures)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}img{{max-width:100%;margin:0.5em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Test scores</h2>{summary}
<h2>Per class</h2>{per_class}
<h2>Confusion matrix and training curves</h2>{images}
<h2>Most confident mistakes</h2>{mistakes}
<h2>Run</h2>{facts}
</body></html>
"""
