"""register: put the exported model into the registry as a new version, behind a quality gate.

    python -m components.register --export_uri runs/x/onnx --evaluation_uri runs/x/evaluation \\
        --model_uri runs/x/model --data_uri runs/x/tokens --registry_uri runs/registry \\
        --model_name drug-review-sentiment --output_uri runs/x/registration

The gate is the task's (read from the evaluation's lineage; components/lib/tasks/). For a classifier
(components/lib/tasks/classification_gate.py) it refuses (a clear line and exit status 0, not a crash) when the test score of
`--gate_metric` is below `--gate_min`; with `--require_beat_baseline` (the default), when the model
does not beat the majority-class baseline on the test split in both accuracy and macro-F1; or,
with `--compare_with_production`, when it is more than `--max_regression` below the current
`production` version scored on the same test split: significantly so at `--significance` by a paired
bootstrap of the test rows (both fp32 ONNX models on the same rows; the figures go into
registration.json), or, with `--significance 0`, by the score alone; with the bootstrap, also
when it is significantly more than `--max_slice_regression` below production on a slice of the test split
(length in tokens, source file; components/lib/reporting/slices.py) of at least `--min_slice_rows` rows. A test split with fewer than
MIN_TEST_ROWS_PER_CLASS rows of some class is judged anyway, with a warning that it is too small. A
registered version holds the ONNX files, tokenizer, labels, metrics, a model card and a manifest
with every file's sha256 and the lineage. `latest` then moves to it; `production` moves only by
`python -m components.registry promote`.

A causal language model (components/lib/tasks/causal_lm_gate.py) has its own gate:
it is refused above `--max_perplexity` test perplexity (0: no limit); with
`--require_beat_baseline`, unless its test perplexity is below the n-gram baseline's; with
`--compare_with_production`, when its test perplexity is more than `--max_regression` (relative:
0.01 is 1%) above the production version's. A perplexity is comparable only under the same
tokenizer: when the production version's tokenizer.json is byte-identical to this run's (and its
export takes this run's block length), its model.onnx is scored with onnxruntime on this run's test
blocks; otherwise the two versions' test bits per character (each on its own test split, as its
metrics.json records them) are compared, with the same relative margin, and the log says so.
`--gate_metric` and `--gate_min` are classification's: ignored for a language model, with a warning
when set. Its version holds the ONNX model, the tokenizer, metrics.json and a language model card;
no labels.json.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import components
from components.lib.cards.shared import production_comparison_section
from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import GATE_METRIC, GATE_MIN, MAX_PERPLEXITY, takes_common_flags
from components.lib.data.contract import (
    DATA_PROFILE_FILE,
    DECISION_FILE,
    EXPORT_REPORT_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    STATS_FILE,
    TRAIN_SUMMARY_FILE,
    TRAINING_ARGS_FILE,
    require_output_of,
    require_task,
    split_file,
)
from components.lib.data.labels import LABELS_FILE
from components.lib.data.profile import DRIFT_CHECKS, drift_from_production, train_profile
from components.lib.errors import UserError
from components.lib.quality_gate import GateFlags, check_gate_metric
from components.lib.reporting.tracking import mlflow_run_of
from components.lib.reporting.tracking import register_version as register_in_mlflow
from components.lib.stage_outputs import REGISTERED_OUTPUT, REGISTRATION_ARTIFACT, VERSION_OUTPUT
from components.lib.storage.artifacts import MADE_FROM, made_from, read_manifest, staged_input, staged_output
from components.lib.storage.registry import LATEST, Registry
from components.lib.tasks import task_for
from components.lib.tasks.base import GateInputs, Task

log = logging.getLogger("components.register")
TRAINING_FILES = [TRAINING_ARGS_FILE, TRAIN_SUMMARY_FILE]
# What register reads of the tokenized data: on Kubeflow it gets URIs, not artifacts, so that the
# launcher downloads neither the weights, the predictions nor the train split (launcher_v2.go,
# downloadArtifacts, fetches every input artifact whole).
DATA_FILES = [LABELS_FILE, STATS_FILE, split_file(Path(), "test").name]


@takes_common_flags
def register(
    *,
    export_uri: str,
    evaluation_uri: str,
    model_uri: str,
    data_uri: str,
    registry_uri: str,
    model_name: str,
    output_uri: str,
    gate_metric: str = GATE_METRIC.default,
    gate_min: float = GATE_MIN.default,
    max_perplexity: float = MAX_PERPLEXITY.default,
    compare_with_production: bool = True,
    max_regression: float = 0.01,
    significance: float = 0.05,
    min_slice_rows: int = 200,
    max_slice_regression: float = 0.05,
    require_beat_baseline: bool = True,
    drift_check: str = "warn",
    executor_input: str = "",
) -> StageResult:
    """Register the exported model as a new version if it passes the quality gate.

    Args:
      export_uri: Folder (local or s3://) written by export.
      evaluation_uri: Folder (local or s3://) written by evaluate.
      model_uri: Folder (local or s3://) written by train (training flags and summary are read).
      data_uri: Folder (local or s3://) written by tokenize (the test split, to score production on).
      output_uri: Folder (local or s3://) for registration.json: the decision, and the version's URI.
      compare_with_production: Also refuse if worse than the production version on this test split.
      max_regression: How far below production the candidate may score and still register (causal_lm: how far above, relative).
      significance: Classifiers: refuse for production only if worse by over max_regression at this level (paired bootstrap); 0: by score.
      min_slice_rows: Also compare with production on each test slice (length, source, --slice_columns value) of this many rows or more.
      max_slice_regression: How far below production the candidate may score on such a slice (tested as significance says).
      require_beat_baseline: Refuse unless the model beats the majority class in test accuracy and macro-F1 (causal_lm: n-gram perplexity).
      drift_check: warn (or refuse) when this run's train split has drifted from production's: length, labels, unknown tokens; off.
    """
    for producer, uri, flag in (
        ("export", export_uri, "--export_uri"),
        ("evaluate", evaluation_uri, "--evaluation_uri"),
        ("train", model_uri, "--model_uri"),
        ("tokenize", data_uri, "--data_uri"),
    ):
        require_output_of(producer, uri, flag)
    require_one_model(model_uri, evaluation_uri, export_uri)
    registry = Registry(registry_uri, model_name)
    flags = GateFlags(
        gate_metric,
        gate_min,
        compare_with_production,
        max_regression,
        require_beat_baseline,
        max_perplexity,
        significance,
        min_slice_rows,
        max_slice_regression,
    )
    check_flags(flags)
    if drift_check not in DRIFT_CHECKS:
        raise UserError(f"--drift_check: {drift_check!r} is not one of {', '.join(DRIFT_CHECKS)}")
    with staged_input(evaluation_uri, only=[METRICS_FILE]) as (evaluation_dir, evaluation_manifest):
        metrics = json.loads((evaluation_dir / METRICS_FILE).read_text())
    task = task_for(evaluation_manifest, evaluation_uri)
    with staged_input(data_uri, only=DATA_FILES) as (data_dir, data_manifest):
        require_task(data_manifest, task.name, data_uri)
        verdict = task.verdict(GateInputs(registry, metrics, flags, data_dir, data_manifest, data_uri, export_uri))
        drift = [] if drift_check == "off" else drift_from_production(registry, data_dir)
        for line in drift:
            log.warning("data drift: %s", line)
        refusal = verdict.refusal or (
            f"data drift from production's training data: {drift[0]}" if drift and drift_check == "refuse" else None
        )
        decision = {
            "model_name": model_name,
            "gate_metric": verdict.metric,
            "candidate": verdict.candidate,
            "checks": verdict.checks,
            "registered": False,
        }
        if verdict.warning:
            decision["warning"] = verdict.warning
        if verdict.comparison:
            decision["production_comparison"] = verdict.comparison
        if drift:
            decision["drift"] = drift
        if refusal is None:
            version = publish(registry, export_uri, model_uri, data_dir, data_manifest, metrics, task, verdict.comparison)
            decision.update(
                registered=True,
                version=version,
                uri=registry.version_uri(version),
                aliases=[LATEST] if registry.read_alias(LATEST) == version else [],
            )
            log.info("registered %s version %d at %s", model_name, version, decision["uri"])
        else:
            decision["refused"] = refusal
            log.warning("not registered: %s", refusal)
    with staged_output(output_uri) as out:
        (out / DECISION_FILE).write_text(json.dumps(decision, indent=2) + "\n")
    return StageResult(
        summary={"stage": "register", **decision},
        artifact_metadata={
            REGISTRATION_ARTIFACT: {key: value for key, value in decision.items() if key in ("registered", "version", "uri", "refused")}
        },
        parameters={REGISTERED_OUTPUT: decision["registered"], VERSION_OUTPUT: str(decision.get("version", ""))},
    )


def require_one_model(model_uri: str, evaluation_uri: str, export_uri: str) -> None:
    """The evaluation and the export were made from the model given, this very commit of it: one
    model's scores must not register another model's ONNX. Outputs from before evaluate and export
    recorded it cannot be checked, which is logged."""
    expected = made_from(read_manifest(model_uri))[MADE_FROM]
    for flag, uri in (("--evaluation_uri", evaluation_uri), ("--export_uri", export_uri)):
        recorded = read_manifest(uri).get(MADE_FROM)
        if recorded is None:
            log.warning("%s %s: made before outputs recorded their model; not checked against --model_uri", flag, uri)
        elif recorded != expected:
            raise UserError(f"{flag} {uri}: was made from another model than --model_uri {model_uri}; pass the folders of one run")


def check_flags(flags: GateFlags) -> None:
    check_gate_metric(flags.gate_metric)
    if flags.min_slice_rows < 1:
        raise UserError(f"--min_slice_rows: must be at least 1, got {flags.min_slice_rows}")
    if not 0 <= flags.significance < 1:
        raise UserError(f"--significance: must be in [0, 1), got {flags.significance}; 0 compares the scores alone")
    if flags.max_perplexity < 0:
        raise UserError(f"--max_perplexity: {flags.max_perplexity} is negative; give a perplexity to refuse above, or 0 for no limit")


def publish(
    registry: Registry, export_uri: str, model_uri: str, data_dir: Path, data_manifest: dict, metrics: dict, task: Task,
    comparison: dict | None,
) -> int:  # fmt: skip
    """Claim a version number, write the version folder, commit it, move `latest`."""
    with staged_input(export_uri) as (export_dir, export_manifest), staged_input(model_uri, only=TRAINING_FILES) as (model_dir, _):
        training = json.loads((model_dir / TRAINING_ARGS_FILE).read_text())
        train_summary = json.loads((model_dir / TRAIN_SUMMARY_FILE).read_text())
        export_report = json.loads((export_dir / EXPORT_REPORT_FILE).read_text())
        lineage = {
            **data_manifest.get("lineage", {}),
            **export_manifest.get("lineage", {}),
            "training": training,
            "code_version": code_version(),
        }
        version = registry.claim_next_version()
        extra = {"model_name": registry.model_name, "version": version, "metrics": task.headline(metrics["test"]), "lineage": lineage}
        with staged_output(registry.version_uri(version), extra=extra) as out:
            for name in export_manifest["files"]:
                shutil.copyfile(export_dir / name, out / name)
            (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
            data_stats = json.loads((data_dir / STATS_FILE).read_text()) if (data_dir / STATS_FILE).is_file() else {}
            profile = train_profile(data_dir)
            if profile is not None:  # what the next run's drift check compares its data with
                (out / DATA_PROFILE_FILE).write_text(json.dumps(profile, indent=2) + "\n")
            facts = {"lineage": lineage, "training": training, "train_summary": train_summary, "metrics": metrics,
                     "export_report": export_report, "data_stats": data_stats, "code_version": lineage["code_version"]}  # fmt: skip
            card = task.model_card(registry.model_name, version, export_dir, export_manifest, facts, data_dir)
            card += production_comparison_section(comparison)
            (out / MODEL_CARD_FILE).write_text(card)
            if task.labelled and not (out / LABELS_FILE).is_file():
                raise UserError(f"{export_uri}: has no {LABELS_FILE}; export it again")
        registry.move_alias(LATEST, version, only_forward=True)
        with tempfile.TemporaryDirectory(prefix="register-") as scratch:
            card_file = Path(scratch) / MODEL_CARD_FILE
            card_file.write_text(card)
            files = [export_dir / name for name in export_manifest["files"]] + [card_file]
            register_in_mlflow(mlflow_run_of(train_summary), registry.model_name, version, files, lineage)
    return version


def code_version() -> dict:
    """The package version, and the git commit when known (GIT_COMMIT in images, git in a checkout)."""
    commit = os.environ.get("GIT_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return {"package": components.__version__, "git_commit": commit}


if __name__ == "__main__":
    run_stage(register)
