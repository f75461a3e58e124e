"""Benchmark 18: a successive-halving sweep beside the full grid (issue 31), with `make sweep`.

    python -m benchmarks.halving_sweep

The same eight learning rates, seed and data (the bundled tweets, configs/sweep-halving.yaml's recipe
with 400 train rows and 8 epochs, so that the grid fits a CPU afternoon), swept twice: every trial
trained to the end (strategy all), and in rounds of successive halving (eta 2, first pause after 1
epoch: 8 trials, then 4, 2 and 1). Each sweep's best validation score, its trial, the released
model's test score, and the train steps spent in all (each trial's steps, a paused trial's counted to
where it stopped).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, machine, markdown_table
from components.lib.data.contract import METRICS_FILE, TRAIN_SUMMARY_FILE, TUNING_RESULTS_FILE
from components.lib.stage_outputs import EVALUATION_ARTIFACT, TUNING_ARTIFACT
from components.lib.storage.artifacts import MANIFEST

LEARNING_RATES = [1.0e-5, 2.0e-5, 5.0e-5, 1.0e-4, 2.0e-4, 5.0e-4, 1.0e-3, 2.0e-3]
RECIPE = ["max_train_samples=400", "epochs=8", "sweep.eta=2", "sweep.min_epochs=1", "allow_unregistered=true",
          f"sweep.space={{learning_rate: [{', '.join(str(rate) for rate in LEARNING_RATES)}]}}"]  # fmt: skip


def sweep(scratch: Path, strategy: str) -> dict:
    runs = scratch / strategy
    command = [sys.executable, "-m", "pipelines.local_run", "--config", "configs/sweep-halving.yaml", "--pipeline", "sweep",
               f"registry_uri={scratch}/registry-{strategy}", f"checkpoint_root={scratch}/checkpoints-{strategy}",
               f"local.run_root={runs}", f"sweep.strategy={strategy}", *RECIPE]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"make sweep strategy={strategy} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    run = next(runs.iterdir())
    tuning = json.loads((run / "select-best" / TUNING_ARTIFACT / TUNING_RESULTS_FILE).read_text())
    best = tuning["trials"][0]
    test = json.loads((run / "evaluate" / EVALUATION_ARTIFACT / METRICS_FILE).read_text())["test"]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "steps_by_trial": steps_by_trial(run),
        "best_trial": best["trial_id"],
        "best_learning_rate": best["config"]["learning_rate"],
        "best_validation": round(best["value"], 4),
        "metric": tuning["metric"],
        "test_macro_f1": round(test["macro_f1"], 4),
        "test_accuracy": round(test["accuracy"], 4),
        "rounds": [line for line in result.stdout.splitlines() if line.startswith("halving round")],
    }


def steps_by_trial(run: Path) -> dict[str, int]:
    """Each trial's optimizer steps: its last model's count (a resumed round counts on from where it paused)."""
    steps: dict[str, int] = {}
    for summary in run.rglob(TRAIN_SUMMARY_FILE):
        trial = json.loads((summary.parent / MANIFEST).read_text())["lineage"]["trial"]
        steps[trial] = max(steps.get(trial, 0), json.loads(summary.read_text())["global_steps"])
    return dict(sorted(steps.items()))


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    described = machine()
    with tempfile.TemporaryDirectory(prefix="halving-bench-") as folder:
        grid = sweep(Path(folder), "all")
        halving = sweep(Path(folder), "halving")
    print(json.dumps({"machine": described, "learning_rates": LEARNING_RATES, "grid": grid, "halving": halving}))
    return 0


def steps_share(result: dict) -> float:
    return sum(result["halving"]["steps_by_trial"].values()) / sum(result["grid"]["steps_by_trial"].values())


def markdown(result: dict) -> str:
    rows = [[name, sum(run["steps_by_trial"].values()), run["best_trial"], f"{run['best_learning_rate']:g}", f"{run['best_validation']:.4f}",
             f"{run['test_macro_f1']:.4f}", f"{run['test_accuracy']:.4f}", run["seconds"]]
            for name, run in (("full grid (strategy all)", result["grid"]), ("successive halving (eta 2)", result["halving"]))]  # fmt: skip
    rounds = "\n".join(f"- {line}" for line in result["halving"]["rounds"])
    return (
        f"On {result['machine']}. The bundled tweets, configs/sweep-halving.yaml's recipe with 400 train rows and 8 epochs;"
        f" learning rates {', '.join(str(rate) for rate in result['learning_rates'])}; validation {result['grid']['metric']}."
        " Seconds are the whole `make sweep` (tokenize, the trials two at a time, evaluate, export, register).\n\n"
        + markdown_table(
            ["sweep", "train steps", "best trial", "its learning rate", "best validation", "test macro-F1", "test accuracy", "seconds"],
            rows,
        )  # fmt: skip
        + f"\n\nHalving spent {steps_share(result):.1%} of the grid's train steps. Its rounds:\n\n{rounds}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
