"""`make cluster-check`: run every cluster path once on a real Kubeflow, on a few dozen rows, and say
which ones work.

    python -m pipelines.cluster_check --config configs/cluster.yaml [--deploy] [--timeout-minutes 60] [key=value ...]

Submits, in the config's namespace and experiment, with its images, pipeline root and storage:
- the training pipeline (preprocess -> ... -> register; with --deploy also deploy=true, which
  creates or updates the InferenceService `textclf-cluster-check`, scaled to zero when idle);
- the sweep, 2 trials (select_best's Model released);
- K-fold, 2 folds of one configuration (kfold_report);
all on the 96 reviews the images carry (pipelines/cluster_check_data), one epoch each, registered
as `textclf-cluster-check` (never the config's model name) with the gate open. Then it waits, and
prints one line per path: passed, or the failing task, Argo's message for it ("Error (exit code
2)": the stage's own one-line error is the last line of its log; "pod deleted"; "OOMKilled") and
the `kubectl logs` command for its pod (pipelines/runs.py, failure_of). Progress goes to stderr.
kfp.local passing is no evidence that a cluster runs a path; this is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from components.lib.cli import configure_logging
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from pipelines.compile import OUTPUT_NAMES, compile_variant
from pipelines.config import load_config
from pipelines.kfp_connection import kfp_api
from pipelines.runs import RunOutcome, wait_for
from pipelines.submit import prepare, submit_run

CHECK_MODEL = "textclf-cluster-check"
CHECK_SOURCE = "package://pipelines/cluster_check_data/reviews.csv"  # in the images: pyproject.toml, package-data
# A few dozen rows the images carry, one epoch, the gate open: each path runs every task it has.
CHECK_PARAMETERS = [
    f"source_uri={CHECK_SOURCE}",
    "text_column=review",
    "label_column=rating",
    "base_model=bundled://all-MiniLM-L6-v2",
    "epochs=1",
    "max_length=64",
    f"model_name={CHECK_MODEL}",
    "min_macro_f1=0.0",
    "require_beat_baseline=false",
    "compare_with_production=false",
]
CHECKS = {
    "training": [],
    "sweep": ["sweep.method=grid", "sweep.space={learning_rate: [1.0e-4, 3.0e-5]}"],
    "kfold": ["kfold.folds=2", "kfold.configurations={lr-1e-4: {learning_rate: 1.0e-4}}"],
}
DEPLOY_PARAMETERS = ["deploy=true", "serving_min_replicas=0"]
DEPLOY_TASK = "deploy"


@dataclass
class Check:
    path: str
    run_id: str
    started: float


def submit_checks(config_path: str, overrides: list[str], deploy: bool, folder: Path) -> tuple[list[Check], str, str]:
    """Compile and prepare every path first (a mistake then stops the check before any run starts),
    then submit one run per path; the runs, and the API server's host and namespace."""
    submissions = {}
    for variant, settings in CHECKS.items():
        extra = DEPLOY_PARAMETERS if deploy and variant == "training" else []
        config = load_config(config_path, [*CHECK_PARAMETERS, *extra, *settings, *overrides])
        submissions[variant] = prepare(config, compile_variant(config, folder / OUTPUT_NAMES[variant], variant), variant)
        submissions[variant].run_name = f"{CHECK_MODEL}-{variant}-{time.strftime('%Y%m%d-%H%M%S')}"
    checks = []
    for variant, submission in submissions.items():
        checks.append(Check(variant, submit_run(submission), time.monotonic()))
        print(f"{variant}: submitted as run {checks[-1].run_id}", file=sys.stderr, flush=True)
    return checks, submission.host, submission.namespace


def lines_for(checks: list[Check], outcomes: dict[str, RunOutcome], deploy: bool, host: str) -> list[str]:
    lines = []
    for check in checks:
        outcome = outcomes[check.run_id]
        where = f"run {check.run_id}: {host}/#/runs/details/{check.run_id}"
        if outcome.state == "SUCCEEDED":
            lines.append(f"{check.path}: passed ({where})")
        else:
            lines.append(f"{check.path}: FAILED {outcome.state} at {outcome.failure} ({where})")
        if deploy and check.path == "training":
            lines.append(deploy_line(outcome))
    return lines


def deploy_line(outcome: RunOutcome) -> str:
    if DEPLOY_TASK in outcome.succeeded:
        return f"deploy: passed (InferenceService {CHECK_MODEL}; kubectl delete isvc {CHECK_MODEL} removes it)"
    if outcome.state == "TIMED_OUT":
        return "deploy: FAILED not reached before the check stopped waiting"
    if outcome.state == "SUCCEEDED":
        return "deploy: FAILED did not run (register made no version)"
    return "deploy: FAILED did not run (the run failed before it)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every cluster path once on a few dozen rows and report each.")
    parser.add_argument("--config", default="configs/cluster.yaml")
    parser.add_argument("--deploy", action="store_true", help=f"also deploy the training run's model as {CHECK_MODEL}")
    parser.add_argument("--timeout-minutes", type=float, default=60.0, help="stop waiting after this long")
    parser.add_argument("overrides", nargs="*", help="key=value parameter overrides, or section.key=value")
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        if arguments.timeout_minutes <= 0:
            raise UserError(f"--timeout-minutes {arguments.timeout_minutes}: must be above 0")
        with tempfile.TemporaryDirectory(prefix="cluster-check-") as folder:
            checks, host, namespace = submit_checks(arguments.config, arguments.overrides, arguments.deploy, Path(folder))
        paths = {check.run_id: check for check in checks}

        def ended(outcome: RunOutcome) -> None:
            check = paths[outcome.run_id]
            print(f"{check.path}: {outcome.state} after {(time.monotonic() - check.started) / 60:.1f} minutes", file=sys.stderr, flush=True)

        print(f"waiting for {len(checks)} runs (at most {arguments.timeout_minutes:g} minutes)", file=sys.stderr, flush=True)
        with kfp_api(host, namespace) as client:
            outcomes = wait_for(client, list(paths), arguments.timeout_minutes * 60, namespace, progress=ended)
    except UserError as error:
        print(f"cluster-check: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    lines = lines_for(checks, outcomes, arguments.deploy, host)
    if any(outcome.state == "TIMED_OUT" for outcome in outcomes.values()):
        lines.append("runs still going were left running; the Pipelines UI (or its API) terminates them")
    print("\n".join(lines))
    return 0 if not any(": FAILED" in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
