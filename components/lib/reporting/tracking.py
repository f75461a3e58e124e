"""The MLflow run that train opened (report_to=mlflow), continued by evaluate and register.

train writes the run's id into train_summary.json (`tracking.mlflow_run_id`); evaluate logs the
test metrics and its report to that run, and register logs the model card and the ONNX files there
and creates a version in the MLflow Model Registry, with the lineage as tags. The server is the one
`MLFLOW_TRACKING_URI` names in each stage's environment (credentials: MLflow's own variables, never
written here). This project's registry stays the source of truth: a stage whose MLflow call fails
says so in a warning and goes on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from components.lib.data.contract import REPORT_FILE, TRAIN_SUMMARY_FILE

log = logging.getLogger(__name__)
MLFLOW_RUN_KEY = "mlflow_run_id"
MAX_TAG_CHARS = 5000  # MLflow's limit on a model version tag's value is larger; lineage values are short


def mlflow_run_of(train_summary: dict) -> str | None:
    return (train_summary.get("tracking") or {}).get(MLFLOW_RUN_KEY)


def mlflow_client(run_id: str | None, stage: str):
    """An MlflowClient when the model was tracked in MLflow and this stage can reach it, else None (with a warning why)."""
    if not run_id:
        return None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        log.warning("%s: the model was tracked in MLflow run %s, but MLFLOW_TRACKING_URI is not set here: not logged to it", stage, run_id)
        return None
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        log.warning("%s: the model was tracked in MLflow run %s, but mlflow is not installed here: not logged to it", stage, run_id)
        return None
    return MlflowClient()


def log_evaluation(run_id: str | None, test_metrics: dict, files: list[Path]) -> None:
    if not run_id:
        return
    client = mlflow_client(run_id, "evaluate")
    if client is None:
        return
    numbers = {f"test_{name}": float(value) for name, value in test_metrics.items() if isinstance(value, int | float)}
    with warn_on_failure("evaluate", run_id):
        for name, value in numbers.items():
            client.log_metric(run_id, name, value)
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path="evaluation")
        log.info("evaluate: logged %d test metrics and %d files to MLflow run %s", len(numbers), len(files), run_id)


def register_version(run_id: str | None, model_name: str, version: int, model_files: list[Path], lineage: dict) -> dict | None:
    """Log the version's files to the run and create an MLflow model version from them; its name and number."""
    if not run_id:
        return None
    client = mlflow_client(run_id, "register")
    if client is None:
        return None
    with warn_on_failure("register", run_id):
        for path in model_files:
            client.log_artifact(run_id, str(path), artifact_path="model")
        ensure_registered_model(client, model_name)
        source = f"{client.get_run(run_id).info.artifact_uri}/model"
        tags = {"textclf.registry_version": str(version), **lineage_tags(lineage)}
        created = client.create_model_version(model_name, source, run_id=run_id, tags=tags)
        log.info("register: MLflow model %s version %s (from run %s)", model_name, created.version, run_id)
        return {"name": model_name, "version": str(created.version)}
    return None


def ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)


def lineage_tags(lineage: dict, prefix: str = "lineage") -> dict[str, str]:
    """Flat `lineage.<key>` tags; nested dicts become dotted keys, anything else JSON text."""
    tags = {}
    for key, value in lineage.items():
        if isinstance(value, dict):
            tags.update(lineage_tags(value, f"{prefix}.{key}"))
        else:
            tags[f"{prefix}.{key}"] = (value if isinstance(value, str) else json.dumps(value))[:MAX_TAG_CHARS]
    return tags


class warn_on_failure:
    """MLflow down or refusing: one warning line, and the stage goes on (its own outputs are written)."""

    def __init__(self, stage: str, run_id: str) -> None:
        self.stage, self.run_id = stage, run_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        log.warning("%s: logging to MLflow run %s failed, not logged: %s", self.stage, self.run_id, first_line)
        return True


def publish_report(report: str, out: Path, report_path: str, model_dir: Path, test_metrics: dict, files: list[Path]) -> None:
    """report.html in `out` (and at report_path, Kubeflow's HTML artifact, when given); the test scores and
    `files` logged to the MLflow run that trained the model, if it was tracked."""
    (out / REPORT_FILE).write_text(report)
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(report)
    summary_file = model_dir / TRAIN_SUMMARY_FILE
    tracked_in = mlflow_run_of(json.loads(summary_file.read_text())) if summary_file.is_file() else None
    log_evaluation(tracked_in, test_metrics, [out / REPORT_FILE, *files])
