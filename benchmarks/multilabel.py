"""Benchmark 13: multi-label classification, `make run CONFIG=configs/multilabel.yaml`, beside a TF-IDF
one-vs-rest logistic regression on the very same train/validation/test splits.

    python -m benchmarks.multilabel

The data are the bundled FOLDOC definitions with their subject tags (data/sample/foldoc: 7,220
definitions of computing terms, 28 labels, 1.2 labels a definition; dictionary text, not a standard
benchmark, so there are no published scores to compare with). The pipeline's model is MiniLM with one
sigmoid per label, thresholds tuned per label on validation; the TF-IDF model (benchmarks/multilabel_baseline.py)
tunes its C and its thresholds on the same validation split by the same rule. Both are scored by
components/lib/reporting/multilabel_metrics.py on the same test rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from benchmarks.common import REPO, machine, markdown_table
from benchmarks.multilabel_baseline import tfidf_one_vs_rest
from components.lib.data.contract import EXPORT_REPORT_FILE, METRICS_FILE, SPLITS, split_file
from components.lib.data.label_sets import SET_JOIN, label_names_of
from components.lib.data.labels import read_labels
from pipelines.run_summary import SUMMARY_NAME

CONFIG = "configs/multilabel.yaml"
RECIPE_KEYS = ("max_length", "epochs", "learning_rate", "batch_size")  # what the table's caption says of the run
FIGURES = ("micro_f1", "macro_f1", "weighted_f1", "subset_accuracy", "hamming_loss")


def run_make_run(scratch: Path) -> tuple[Path, float]:
    command = [sys.executable, "-m", "pipelines.local_run", "--config", CONFIG, f"registry_uri={scratch}/registry",
               f"checkpoint_root={scratch}/checkpoints", f"local.run_root={scratch}/runs", "allow_unregistered=true"]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"make run CONFIG={CONFIG} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return next((scratch / "runs").iterdir()), seconds


def splits_of(data_dir: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Each split of preprocess's output as (texts, label sets)."""
    set_keys = read_labels(data_dir)
    found = {}
    for split in SPLITS:
        table = pq.read_table(split_file(data_dir, split), columns=["text", "label"])
        found[split] = (table.column("text").to_pylist(), [set_keys[index].split(SET_JOIN) for index in table.column("label").to_pylist()])
    return found


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="multilabel-bench-") as scratch:
        run_folder, seconds = run_make_run(Path(scratch))
        metrics = json.loads((run_folder / "evaluate" / "evaluation" / METRICS_FILE).read_text())
        export = json.loads((run_folder / "export" / "onnx" / EXPORT_REPORT_FILE).read_text())
        summary = (run_folder / SUMMARY_NAME).read_text().splitlines()
        data_dir = run_folder / "preprocess" / "dataset"
        splits = splits_of(data_dir)
        names = label_names_of(read_labels(data_dir))
        started = time.perf_counter()
        tfidf = tfidf_one_vs_rest(*splits["train"], *splits["test"], names, *splits["validation"])
        tfidf_seconds = time.perf_counter() - started
    test, baseline = metrics["test"], metrics["baseline_label_frequency"]
    results = {
        "machine": machine(),
        "rows": {split: len(texts) for split, (texts, _) in splits.items()},
        "labels": len(names),
        "recipe": {key: value for key, value in yaml.safe_load((REPO / CONFIG).read_text())["parameters"].items() if key in RECIPE_KEYS},
        "make_run_seconds": round(seconds, 1),
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],  # 1, 5, 15 minutes: other work on the machine
        "stage_seconds": summary[0].split(": ", 1)[1],
        "registered": any(line.startswith("registered: ") for line in summary),
        "pipeline": {name: round(test[name], 4) for name in FIGURES},
        "label_frequency": {name: round(baseline[name], 4) for name in FIGURES} | {"predicts": baseline["predicts"]},
        "tfidf": {name: round(tfidf[name], 4) for name in FIGURES} | {"C": tfidf.get("C"), "seconds": round(tfidf_seconds, 1)},
        "per_label_f1": {
            name: [round(test["per_label"][name]["f1"], 4), round(tfidf["per_label"][name]["f1"], 4), test["per_label"][name]["support"]]
            for name in names
        },  # fmt: skip
        "int8": {"kept": export.get("int8_kept"), "largest_label_f1_drop": max(export.get("int8_label_f1_drops", {0: 0}).values())},
    }
    print(json.dumps(results))
    return 0


def load_note(result: dict) -> str:
    """The machine's load while the run went on, when it was recorded: on 2 cores anything above 2 slowed it."""
    if "load_during_run" in result:
        return f"; {result['load_during_run']}"
    if "load_average_at_end" in result:
        return f"; load average at the end {', '.join(map(str, result['load_average_at_end']))} (1, 5, 15 min)"
    return ""


def markdown(result: dict) -> str:
    rows = [[name.replace("_", " "), result["pipeline"][name], result["tfidf"][name], result["label_frequency"][name]] for name in FIGURES]
    per_label = [[name, *figures] for name, figures in sorted(result["per_label_f1"].items(), key=lambda item: -item[1][2])]
    return (
        f"On {result['machine']}. FOLDOC definitions with their subject tags (bundled, data/sample/foldoc; dictionary text, not a"
        f" standard benchmark): {result['rows']['train']} train, {result['rows']['validation']} validation and"
        f" {result['rows']['test']} test rows, {result['labels']} labels. `make run CONFIG={CONFIG}` (MiniLM; "
        + ", ".join(f"{key} {value}" for key, value in result["recipe"].items())
        + f") took {result['make_run_seconds']:.0f} s ({result['stage_seconds']}{load_note(result)});"
        f" {'registered' if result['registered'] else 'not registered'}. The TF-IDF one-vs-rest logistic regression"
        f" (C {result['tfidf']['C']}, chosen on validation micro-F1) took {result['tfidf']['seconds']:.0f} s on the same splits."
        " Both decide each label at its own threshold tuned on validation; test scores:\n\n"
        + markdown_table(
            [
                "metric",
                "pipeline (MiniLM)",
                "TF-IDF one-vs-rest",
                f"label frequency (always {result['label_frequency']['predicts'].replace(SET_JOIN, ', ')})",
            ],
            rows,
        )
        + "\n\nPer label, test F1 (pipeline, TF-IDF) and test rows:\n\n"
        + markdown_table(["label", "pipeline F1", "TF-IDF F1", "test rows"], per_label)
        + f"\n\nINT8: {'kept' if result['int8']['kept'] else 'dropped'} (largest per-label F1 drop {result['int8']['largest_label_f1_drop']})."
    )


if __name__ == "__main__":
    sys.exit(main())
