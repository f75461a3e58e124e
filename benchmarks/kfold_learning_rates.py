"""Benchmark 7: K-fold cross-validation of MiniLM at two learning rates, with the significance tests,
on the same two datasets as benchmark 6 (the bundled reviews and the VADER tweets).

    python -m benchmarks.kfold_learning_rates [--datasets reviews,vader_tweets]

Each dataset runs `make kfold`'s own local run (pipelines/local_run.py --pipeline kfold) with the
config's `kfold` section (3 stratified folds of train + validation, lr 1e-4 against 3e-5), in a
scratch run root, and reads the kfold_report's results: per configuration the held-out fold's and
the test split's macro-F1 (mean, std, each fold), the paired t-test over folds and McNemar's test on
the test split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import REPO, machine
from benchmarks.model_families import DATASETS, source_of
from components.lib.data.contract import KFOLD_RESULTS_FILE

CONFIG = REPO / "configs" / "default.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated keys of benchmarks.model_families.DATASETS")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-kfold-") as scratch:
        work = Path(scratch)
        results = {key: cross_validate(key, work / key) for key in arguments.datasets.split(",")}
    print(json.dumps({"machine": machine(), "datasets": results}))
    return 0


def cross_validate(key: str, work: Path) -> dict:
    spec = DATASETS[key]
    overrides = [f"source_uri={source_of(key, work)}", f"local.run_root={work / 'runs'}", f"checkpoint_root={work / 'checkpoints'}"]
    overrides += [f"{name}={str(value).lower() if isinstance(value, bool) else value}" for name, value in spec.items() if name != "name"]
    command = [sys.executable, "-m", "pipelines.local_run", "--config", str(CONFIG), "--pipeline", "kfold", *overrides]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    (results_file,) = (work / "runs").glob(f"*/*/*/{KFOLD_RESULTS_FILE}")
    return {"name": spec["name"], "max_length": spec["max_length"], **json.loads(results_file.read_text())}


def markdown(result: dict) -> str:
    sections = [f"Machine: {result['machine']}. MiniLM, 3 stratified folds of train + validation (seed 0), 4 epochs each."]
    for dataset in result["datasets"].values():
        lines = [f"**{dataset['name']}**, at {dataset['max_length']} tokens:", ""]
        lines += ["| configuration | held-out fold macro-F1 (mean +- std) | test macro-F1 (mean +- std) |", "|---|---|---|"]
        for name, scores in dataset["configurations"].items():
            held_out, test = scores["held_out_macro_f1"], scores["test_macro_f1"]
            lines.append(f"| {name} | {held_out['mean']:.4f} +- {held_out['std']:.4f} | {test['mean']:.4f} +- {test['std']:.4f} |")
        comparison = dataset["comparison"]
        tests = "; ".join(f"{test['test']}: p = {test['p_value']:.4g}" for test in comparison["tests"])
        lines += ["", f"{comparison['first']} against {comparison['second']}: {tests}."]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


if __name__ == "__main__":
    sys.exit(main())
