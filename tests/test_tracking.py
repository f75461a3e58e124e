"""report_to=mlflow against a real MLflow server on loopback, and report_to=wandb in W&B's offline mode.

The MLflow server is mlflow 3.17.2 in its own virtual environment (.venv/mlflow-server: its pins
clash with the project's), made by this module the first time it runs and kept, so `make setup`
does not carry 850 MB that only these tests use; a SQLite backend and proxied artifacts; the stages
talk to it over HTTP with the mlflow-skinny client, as on a cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from components.evaluate import evaluate
from components.export import export
from components.register import register
from components.train import train
from tests.conftest import REPO, train_flags

SERVER_ENVIRONMENT = REPO / ".venv" / "mlflow-server"
SERVER_PYTHON = SERVER_ENVIRONMENT / "bin" / "python"
SERVER_PACKAGE = "mlflow==3.17.2"
SERVER_CONSTRAINTS = REPO / "tests" / "mlflow_server" / "constraints.txt"
INSTALLED_MARKER = SERVER_ENVIRONMENT / ".installed"  # written last: an install cut short is redone
STARTUP_SECONDS = 120
PLANTED = {"MLFLOW_TRACKING_TOKEN": "planted-mlflow-token-4e1d7b", "WANDB_API_KEY": "planted0wandb0key0123456789abcdef"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment() -> None:
    """.venv/mlflow-server with the pinned server, made once (about 850 MB) and reused while its pins are unchanged.
    Two test modules use the server and may run at once on two workers: the first makes it, under a lock."""
    wanted = f"{SERVER_PACKAGE}\n{SERVER_CONSTRAINTS.read_text()}"
    with (REPO / ".venv" / "mlflow-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if INSTALLED_MARKER.is_file() and INSTALLED_MARKER.read_text() == wanted:
            return
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SERVER_ENVIRONMENT)], check=True)
        install = [str(SERVER_PYTHON), "-m", "pip", "install", "--quiet", "-c", str(SERVER_CONSTRAINTS), SERVER_PACKAGE]
        subprocess.run(install, check=True)
        INSTALLED_MARKER.write_text(wanted)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free loopback port; up within STARTUP_SECONDS or the test fails, stopped afterwards."""
    server_environment()
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [str(SERVER_PYTHON), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]  # fmt: skip
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        server.terminate()
        pytest.fail(f"mlflow server did not answer within {STARTUP_SECONDS} s: {(root / 'server.log').read_text()[-2000:]}")
    yield {"url": url, "root": root}
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def tracked_release(mlflow_server, prepared_data, tiny_model, tmp_path_factory):
    """train (report_to=mlflow), evaluate, export and register, with the server configured and planted secrets around."""
    root = tmp_path_factory.mktemp("tracked")
    tokens = str(prepared_data[1])
    environment = {"MLFLOW_TRACKING_URI": mlflow_server["url"], "MLFLOW_EXPERIMENT_NAME": "textclf-tests", **PLANTED}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        train(data_uri=tokens, output_uri=str(root / "model"), base_model=str(tiny_model),
              **train_flags(epochs=3, batch_size=4, learning_rate=3e-3, report_to="mlflow"))  # fmt: skip
        evaluate(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "evaluation"))
        export(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "onnx"), latency_runs=2)
        register(export_uri=str(root / "onnx"), evaluation_uri=str(root / "evaluation"), model_uri=str(root / "model"),
                 data_uri=tokens, registry_uri=str(root / "registry"), model_name="tracked-sentiment",
                 output_uri=str(root / "registration"), require_beat_baseline=False)  # fmt: skip
    run_id = json.loads((root / "model" / "train_summary.json").read_text())["tracking"]["mlflow_run_id"]
    return {"root": root, "run_id": run_id}


@pytest.fixture
def client(mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["url"])
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def test_train_logs_params_and_per_step_metrics_to_the_run(tracked_release, client):
    run = client.get_run(tracked_release["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "textclf-tests"
    assert float(run.data.params["learning_rate"]) == 3e-3 and run.data.params["epochs"] == "3"
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(losses) > 3 and [point.step for point in losses] == sorted(point.step for point in losses)


def test_evaluate_and_register_add_the_report_the_card_and_the_onnx_files(tracked_release, client):
    run_id = tracked_release["run_id"]
    run = client.get_run(run_id)
    evaluation = json.loads((tracked_release["root"] / "evaluation" / "metrics.json").read_text())
    assert run.data.metrics["test_macro_f1"] == pytest.approx(evaluation["test"]["macro_f1"])
    evaluated = {Path(item.path).name for item in client.list_artifacts(run_id, "evaluation")}
    assert {"report.html", "metrics.json", "reliability.png"} <= evaluated
    model_files = {Path(item.path).name for item in client.list_artifacts(run_id, "model")}
    assert {"MODEL_CARD.md", "model.onnx", "labels.json"} <= model_files
    card = Path(client.download_artifacts(run_id, "model/MODEL_CARD.md"))
    assert "tracked-sentiment" in card.read_text()


def test_register_creates_an_mlflow_model_version_with_the_lineage_as_tags(tracked_release, client):
    [version] = client.search_model_versions("name='tracked-sentiment'")
    assert version.run_id == tracked_release["run_id"] and version.source.endswith("/model")
    assert version.tags["textclf.registry_version"] == "1"
    manifest = json.loads((tracked_release["root"] / "registry" / "tracked-sentiment" / "1" / "MANIFEST.json").read_text())
    assert version.tags["lineage.code_version.package"] == manifest["lineage"]["code_version"]["package"]
    assert json.loads(version.tags["lineage.training.learning_rate"]) == 3e-3


def test_no_credential_reaches_the_server_or_the_outputs(tracked_release, mlflow_server):
    written = [path for folder in (tracked_release["root"], mlflow_server["root"]) for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "mlflow.db" for path in written) and any(path.name == "report.html" for path in written)
    for secret in PLANTED.values():
        leaked = [str(path) for path in written if secret.encode() in path.read_bytes()]
        assert not leaked, f"{secret} found in {leaked}"


def test_a_stage_without_the_server_configured_says_so_and_goes_on(tracked_release, prepared_data, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    evaluate(model_uri=str(tracked_release["root"] / "model"), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "evaluation"))
    assert f"tracked in MLflow run {tracked_release['run_id']}, but MLFLOW_TRACKING_URI is not set here" in caplog.text
    assert (tmp_path / "evaluation" / "metrics.json").is_file()


def test_an_unreachable_server_is_one_warning_and_the_stage_goes_on(tracked_release, prepared_data, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    evaluate(model_uri=str(tracked_release["root"] / "model"), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "evaluation"))
    warnings = [record.getMessage() for record in caplog.records if "logging to MLflow run" in record.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "failed, not logged" in warnings[0]
    assert (tmp_path / "evaluation" / "metrics.json").is_file()


def test_wandb_offline_writes_the_run_with_its_config_and_metrics(prepared_data, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_API_KEY", PLANTED["WANDB_API_KEY"])
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb-dir").mkdir()
    train(data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "model"), base_model=str(tiny_model),
          **train_flags(epochs=2, batch_size=4, report_to="wandb"))  # fmt: skip
    run_id = json.loads((tmp_path / "model" / "train_summary.json").read_text())["tracking"]["wandb_run_id"]
    [run_dir] = (tmp_path / "wandb-dir" / "wandb").glob(f"offline-run-*-{run_id}")
    # The run's record log (protobuf records, what `wandb sync` uploads later) holds the config and the curves.
    records = (run_dir / f"run-{run_id}.wandb").read_bytes()
    for key in (b"learning_rate", b"warmup_ratio", b"train/loss", b"validation/macro_f1"):
        assert key in records, key
    written = [path for path in (tmp_path / "wandb-dir").rglob("*") if path.is_file()]
    assert not [str(path) for path in written if PLANTED["WANDB_API_KEY"].encode() in path.read_bytes()]
    assert os.environ["WANDB_MODE"] == "offline"
