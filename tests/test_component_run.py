"""`DRY_RUN=1 make component-run COMPONENT=<stage>` prints a runnable docker command for each stage."""

import os
import shlex
import subprocess

import pytest

from pipelines.stages import STAGES
from tests.conftest import FAKE_SECRET_KEY, REPO, run_module


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("stage", STAGES)
def test_dry_run_prints_a_runnable_docker_command(stage):
    secret_env = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY}
    result = make("component-run", f"COMPONENT={stage}", "DRY_RUN=1", "ARGS=--help", env=secret_env)
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.strip().splitlines()[-1])
    image = "ghcr.io/textclf/textclf-" + ("cuda" if stage == "train" else "cpu") + ":0.1.0"
    assert command[:3] == ["docker", "run", "--rm"]
    assert command[command.index(image) + 1 :] == ["python3", "-m", f"components.{stage}", "--help"]
    assert command[command.index("-v") + 1] == f"{REPO}:/workspace" and command[command.index("-w") + 1] == "/workspace"
    passed = [command[index + 1] for index, part in enumerate(command) if part == "-e"]
    assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(passed)
    assert FAKE_SECRET_KEY not in result.stdout  # passed by name, never by value
    assert "--read-only" in command


def test_the_command_kubeflow_runs_is_the_one_component_run_prints(tmp_path):
    """Compiled afresh (no build/ needed): every executor runs `python3 -m components.<stage>`, the
    same words `make component-run` puts after the image. (make run and make container-test run them.)"""
    import yaml

    from pipelines.compile import compile_pipeline
    from pipelines.config import KubeflowSettings

    compiled = next(yaml.safe_load_all(compile_pipeline(KubeflowSettings(), tmp_path / "pipeline.yaml", "training").read_text()))
    executors = compiled["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == {stage.replace("_", "-") for stage in STAGES}
    for stage in STAGES:
        kubeflow_command = executors[f"exec-{stage.replace('_', '-')}"]["container"]["command"]
        assert kubeflow_command == ["python3", "-m", f"components.{stage}"]
        printed = shlex.split(run_module("pipelines.component_run", "--component", stage, "--dry-run", "--", "--help").stdout)
        assert printed[printed.index("python3") : -1] == kubeflow_command


def test_unknown_component_is_one_clear_line():
    result = run_module("pipelines.component_run", "--component", "trian", "--dry-run")
    assert result.returncode == 2 and "COMPONENT='trian' is not a stage" in result.stderr


def test_missing_docker_is_a_clear_error(tmp_path):
    python_only = tmp_path / "bin"
    python_only.mkdir()
    result = run_module("pipelines.component_run", "--component", "tokenize", env={"PATH": str(python_only)})
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "component-run: docker is not installed (not on PATH); install Docker, or use DRY_RUN=1 to print the command"
    )


def test_unreachable_docker_daemon_is_a_clear_error(tmp_path):
    fake_docker = tmp_path / "docker"
    fake_docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake_docker.chmod(0o755)
    result = run_module("pipelines.component_run", "--component", "tokenize", env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert result.returncode == 2
    assert result.stderr.strip() == "component-run: cannot reach the Docker daemon; start Docker (or use DRY_RUN=1 to print the command)"
