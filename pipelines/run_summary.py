"""The summary at the end of `make run` (pipelines/local_run.py), from the reports the stages wrote into
the run folder, <run>/<task>/<output>/; it is also kept there as summary.txt."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from components.lib.data.contract import (
    DECISION_FILE,
    DEPLOYMENT_FILE,
    EXPORT_REPORT_FILE,
    KFOLD_RESULTS_FILE,
    METRICS_FILE,
    ROUND_RESULTS_FILE,
    TUNING_RESULTS_FILE,
)
from components.lib.quality_gate import REFUSED
from components.lib.storage.artifacts import read_manifest
from components.lib.tasks import task_for
from components.lib.tasks.base import Task
from pipelines import gate
from pipelines.parameters import pipeline_parameters
from pipelines.stages import (
    DEPLOYMENT_ARTIFACT,
    EVALUATION_ARTIFACT,
    KFOLD_ARTIFACT,
    ONNX_ARTIFACT,
    REGISTRATION_ARTIFACT,
    ROUND_ARTIFACT,
    TUNING_ARTIFACT,
)

SUMMARY_NAME = "summary.txt"


def report(run_dir: Path, timings: dict[str, float], parameters: dict, variant: str = "training") -> int:
    """Print the end-of-run summary, and keep it in the run folder; 1 if the quality gate misbehaved."""
    lines, problem = kfold_summary_lines(run_dir, timings) if variant == "kfold" else summary_lines(run_dir, timings, parameters)
    saved = run_dir / SUMMARY_NAME
    saved.write_text("\n".join([*lines, *([f"error: {problem}"] if problem else [])]) + "\n")
    print("\n=== local run finished ===")
    print("\n".join(lines))
    print(f"this summary is saved as {saved}")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


def kfold_summary_lines(run_dir: Path, timings: dict[str, float]) -> tuple[list[str], str]:
    """Each configuration's held-out and test macro-F1 over the folds, and the tests between the first two."""
    results_file = run_dir / "kfold-report" / KFOLD_ARTIFACT / KFOLD_RESULTS_FILE
    results = json.loads(results_file.read_text())
    lines = ["stage wall time (s): " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in timings.items())]
    for name, entry in results["configurations"].items():
        held_out, test = entry["held_out_macro_f1"], entry["test_macro_f1"]
        lines.append(f"{name}: held-out macro-F1 {held_out['mean']:.4f} +- {held_out['std']:.4f} over {len(held_out['folds'])} folds,"
                     f" test macro-F1 {test['mean']:.4f} +- {test['std']:.4f}")  # fmt: skip
    comparison = results["comparison"]
    if comparison:
        tests = "; ".join(f"{test['test']} p = {test['p_value']:.4g}" for test in comparison["tests"] if test["p_value"] is not None)
        lines.append(f"{comparison['first']} against {comparison['second']}: {tests}")
    lines.append(f"results: {results_file}")
    return lines, ""


def summary_lines(run_dir: Path, timings: dict[str, float], parameters: dict) -> tuple[list[str], str]:
    """The summary's lines, from the reports the stages wrote, and what went wrong with the gate ("" if nothing)."""
    evaluation, task = read_evaluation(run_dir)
    export = json.loads((run_dir / "export" / ONNX_ARTIFACT / EXPORT_REPORT_FILE).read_text())
    lines = ["stage wall time (s): " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in timings.items())]
    lines += halving_lines(run_dir)
    tuning = run_dir / "select-best" / TUNING_ARTIFACT / TUNING_RESULTS_FILE
    if tuning.exists():
        results = json.loads(tuning.read_text())
        ranking = ", ".join(f"trial {trial['trial']}: {trial['value']:.4f}" for trial in results["trials"])
        lines.append(f"sweep ({results['metric']} on validation, best first): {ranking}; tuning results: {tuning.with_suffix('.csv')}")
    lines += task.summary_lines(evaluation, export)
    decision, problem = gate_outcome(run_dir, evaluation, task, parameters)
    lines += gate_lines(decision)
    deployment = run_dir / "deploy" / DEPLOYMENT_ARTIFACT / DEPLOYMENT_FILE
    if deployment.exists():
        outcome = json.loads(deployment.read_text())
        lines.append(
            f"deploy: InferenceService {outcome['namespace']}/{outcome['service_name']} version {outcome['version']}: {outcome['action']}"
        )
    lines.append(f"run folder: {run_dir}")
    return lines, problem


def halving_lines(run_dir: Path) -> list[str]:
    """A line per round of a halving sweep: the trials kept and those stopped, with their scores and epochs."""
    records = [json.loads(path.read_text()) for path in run_dir.glob(f"select-survivors*/{ROUND_ARTIFACT}/{ROUND_RESULTS_FILE}")]
    lines = []
    for record in sorted(records, key=lambda record: record["round"]):
        epochs = max(trial["epochs_completed"] or 0 for trial in record["trials"])
        lines.append(f"halving round {record['round']} ({record['metric']} on validation after {epochs} epoch(s)): kept"
                     f" {scored(record, record['kept'])}; stopped {scored(record, record['stopped'])}")  # fmt: skip
    return lines


def scored(record: dict, trial_ids: list[str]) -> str:
    values = {trial["trial_id"]: trial["value"] for trial in record["trials"]}
    return ", ".join(f"{trial_id} {values[trial_id]:.4f}" for trial_id in trial_ids) or "none"


def read_evaluation(run_dir: Path) -> tuple[dict, Task]:
    """evaluate's metrics.json, and the task of the model it scored."""
    evaluation_dir = run_dir / "evaluate" / EVALUATION_ARTIFACT
    return json.loads((evaluation_dir / METRICS_FILE).read_text()), task_for(read_manifest(str(evaluation_dir)), str(evaluation_dir))


def gate_outcome(run_dir: Path, evaluation: dict, task: Task, parameters: dict) -> tuple[dict, str]:
    """register's decision (registration.json); when register did not run, evaluate's check that
    held it back; and what went wrong with the gate ("" if nothing)."""
    decision_file = run_dir / "register" / REGISTRATION_ARTIFACT / DECISION_FILE
    if decision_file.exists():
        return json.loads(decision_file.read_text()), ""
    task_gate = task.gate
    value, limit = evaluation["test"][task_gate.metric], gate.threshold(task_gate, parameters, pipeline_parameters()[0])
    why = f"{task_gate.shortfall(value, limit)} (the pipeline's quality gate)"
    decision = {"registered": False, "refused": why, "checks": [{"check": task_gate.flag, "result": REFUSED, "why": why}]}
    if task_gate.passes(value, limit):  # register should have run
        return decision, (
            f"register did not run, yet test {task_gate.label} {value:.4f} passes {task_gate.parameter} {limit}:"
            f" the quality gate did not evaluate as it should (run folder: {run_dir})"
        )
    return decision, ""


def gate_lines(decision: dict) -> list[str]:
    """Each check of the quality gate with its result, in one line, then what register decided."""
    checks = ", ".join(f"{check['check']} {check['result']}" for check in decision.get("checks", []))
    lines = [f"quality gate: {checks}"] if checks else []
    comparison = decision.get("production_comparison")
    if comparison and "p_value" in comparison:
        low, high = comparison["interval_95"]
        lines.append(
            f"against production v{comparison['version']}: {comparison['metric']} {comparison['candidate']:.4f} vs"
            f" {comparison['production']:.4f}, difference {comparison['difference']:+.4f} (95% interval {low:+.4f} to {high:+.4f});"
            f" paired bootstrap: p = {comparison['p_value']:.3g} that it is no more than {comparison['margin']} worse"
        )
    if decision["registered"]:
        return [*lines, f"registered: {decision['model_name']} version {decision['version']} at {decision['uri']}"]
    return [*lines, f"not registered: {decision['refused']}"]
