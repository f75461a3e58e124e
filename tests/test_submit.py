"""`make pipeline-submit` against a stub of the KFP REST API on loopback."""

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_module
from tests.kfp_stub import KfpStub

CONFIG = REPO / "tests" / "golden" / "config.yaml"
FINGERPRINT = "0" * 64


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    result = run_module("pipelines.compile", "--config", str(CONFIG), "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def stub():
    server = KfpStub(expected_token="test-token-abc")
    yield server
    server.stop()


def submit(compiled: Path, tmp_path, env: dict, *extra: str):
    return run_module(
        "pipelines.submit",
        "--config",
        str(CONFIG),
        "--package",
        str(compiled),
        f"source_fingerprint={FINGERPRINT}",
        *extra,
        env={"HOME": str(tmp_path), **env},
    )


def test_submit_sends_the_compiled_pipeline_with_the_configs_parameters(compiled, stub, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc"}, "epochs=2")
    assert result.returncode == 0, result.stderr
    run = stub.runs[0]
    assert f"run id: {run['run_id']}" in result.stdout
    assert f"{stub.url}/#/runs/details/{run['run_id']}" in result.stdout
    pipeline_spec, platform_spec = yaml.safe_load_all(compiled.read_text())
    assert run["pipeline_spec"] == {"pipeline_spec": pipeline_spec, "platform_spec": platform_spec}
    expected = {**yaml.safe_load(CONFIG.read_text())["parameters"], "epochs": 2, "source_fingerprint": FINGERPRINT}
    assert run["runtime_config"]["parameters"] == expected
    assert run["display_name"] == "golden-run"
    # The backend ignores the compiled pipeline root; the run must carry it, and the service account.
    assert run["runtime_config"]["pipeline_root"] == yaml.safe_load(CONFIG.read_text())["kubeflow"]["pipeline_root"]
    assert run["service_account"] == "default-editor"
    experiment = next(iter(stub.experiments.values()))
    assert experiment["display_name"] == "golden" and run["experiment_id"] == experiment["experiment_id"]
    assert all(request["authorization"] == "Bearer test-token-abc" for request in stub.requests)
    assert "test-token-abc" not in result.stdout + result.stderr


def test_token_is_read_from_the_service_account_file(compiled, stub, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("test-token-abc\n")
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KF_PIPELINES_SA_TOKEN_PATH": str(token_file), "KFP_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    assert stub.runs


def test_refused_token_is_one_clear_line(compiled, stub, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "wrong-token"})
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"pipeline-submit: {stub.url} refused the credentials (HTTP 401); set KFP_TOKEN or check the service account"
    )
    assert "Traceback" not in result.stderr and "wrong-token" not in result.stdout + result.stderr


def test_unreachable_host_is_one_clear_line(compiled, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": "http://127.0.0.1:9", "KFP_TOKEN": "x"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith("pipeline-submit: cannot reach the Kubeflow Pipelines API at http://127.0.0.1:9")
    )


def test_local_paths_are_refused_before_anything_is_sent(compiled, stub, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc"}, "source_uri=data/sample/drugscom")
    assert result.returncode == 2
    assert "parameters.source_uri: 'data/sample/drugscom' is a local path" in result.stderr
    assert not stub.requests


def test_make_pipeline_submit_compiles_then_submits(stub, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    import os
    import subprocess

    environment = {**os.environ, "KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["make", "--no-print-directory", "pipeline-submit", f"CONFIG={CONFIG}", f"ARGS=source_fingerprint={FINGERPRINT}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run id: " in result.stdout and stub.runs
