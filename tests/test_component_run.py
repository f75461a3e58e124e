"""`DRY_RUN=1 make component-run COMPONENT=<stage>` prints a runnable docker command for each stage."""

import os
import shlex
import subprocess

import pytest

from pipelines.stages import ALL_STAGES, STAGES
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
    assert {name.removeprefix("exec-") for name in executors} == {stage.replace("_", "-") for stage in ALL_STAGES}
    for stage in ALL_STAGES:
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


def dry_run(capsys, stage: str, *stage_args: str) -> tuple[int, list[str], str]:
    """`DRY_RUN=1 make component-run`, in this process: its status, the docker command, stderr."""
    from pipelines.component_run import main

    status = main(
        ["--config", str(REPO / "configs" / "default.yaml"), "--mount", str(REPO), "--component", stage, "--dry-run", "--", *stage_args]
    )
    printed = capsys.readouterr()
    return status, shlex.split(printed.out), printed.err.strip()


def volumes(command: list[str]) -> list[str]:
    return [command[index + 1] for index, part in enumerate(command) if part == "-v"]


def test_absolute_paths_are_mounted_at_the_same_path_inputs_read_only(capsys, tmp_path):
    """Under /tmp (pytest's tmp_path) an output once landed in the container's throwaway tmpfs."""
    model, tokens = tmp_path / "model", tmp_path / "tokens"
    model.mkdir(), tokens.mkdir()
    evaluation, report = tmp_path / "run" / "evaluation", tmp_path / "reports" / "report.html"
    status, command, _ = dry_run(capsys, "evaluate", "--model_uri", str(model), f"--data_uri={tokens}", "--output_uri", str(evaluation),
                                 "--report_path", str(report))  # fmt: skip
    assert status == 0
    assert volumes(command) == [f"{REPO}:/workspace", f"{model}:{model}:ro", f"{tokens}:{tokens}:ro",
                                f"{evaluation}:{evaluation}", f"{report.parent}:{report.parent}"]  # fmt: skip
    assert not evaluation.exists() and not report.parent.exists()  # a dry run creates nothing


def test_relative_paths_and_remote_uris_need_no_mount_of_their_own(capsys):
    status, command, _ = dry_run(capsys, "train", "--data_uri", "runs/x/tokens", "--output_uri=runs/x/model",
                                 "--base_model", "prajjwal1/bert-tiny", "--checkpoint_uri", "s3://bucket/checkpoints")  # fmt: skip
    assert status == 0 and volumes(command) == [f"{REPO}:/workspace"]


@pytest.mark.parametrize(
    "flags, line",
    [
        (["--model_uri", "/no/such/model"], "component-run: --model_uri /no/such/model: no such file or folder"),
        (["--output_uri", "../elsewhere"], f"component-run: --output_uri ../elsewhere: leaves MOUNT ({REPO}), which the container sees as /workspace; give an absolute path"),
        (["--report_path", "/tmp/report.html"], "component-run: --report_path /tmp/report.html: /tmp itself cannot be mounted (the container has its own); use a folder inside it"),
        (["--output_uri", "/tmp/a:b"], "component-run: --output_uri /tmp/a:b: docker cannot mount a path with ':' in it; rename it or use a relative path"),
    ],
)  # fmt: skip
def test_a_path_that_cannot_be_mounted_is_one_line(flags, line, capsys):
    status, command, error = dry_run(capsys, "evaluate", *flags)
    assert status == 2 and error == line and command == []


def test_a_run_creates_the_output_folders_it_mounts(tmp_path):
    """Docker would create a missing one as root, and podman refuses it."""
    fake_docker = tmp_path / "bin" / "docker"
    fake_docker.parent.mkdir()
    fake_docker.write_text(f'#!/bin/sh\n[ "$1" = info ] && exit 0\necho "$@" > {tmp_path}/ran\n')
    fake_docker.chmod(0o755)
    output = tmp_path / "out" / "data"
    result = run_module("pipelines.component_run", "--component", "preprocess", "--", "--input_uri", "data/sample", "--output_uri", str(output),
                        env={"PATH": f"{fake_docker.parent}:{os.environ['PATH']}"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert output.is_dir() and f"-v {output}:{output} " in (tmp_path / "ran").read_text()
