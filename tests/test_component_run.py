"""`DRY_RUN=1 make component-run COMPONENT=<stage>` prints a runnable docker command for each stage."""

import os
import shlex
import subprocess
from pathlib import Path

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


TOKENIZE_FLAGS = ("--data_uri", "runs/x/data", "--output_uri", "runs/x/tokens")


def test_missing_docker_is_a_clear_error(tmp_path):
    python_only = tmp_path / "bin"
    python_only.mkdir()
    result = run_module("pipelines.component_run", "--component", "tokenize", "--", *TOKENIZE_FLAGS, env={"PATH": str(python_only)})
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "component-run: docker is not installed (not on PATH); install Docker, or use DRY_RUN=1 to print the command"
    )


def fake_docker(monkeypatch, tmp_path, info: int = 0, inspect: int = 0, pull: int = 0) -> Path:
    """A `docker` first on PATH that answers `info`, `image inspect` and `pull` with these statuses and
    logs every call, one a line, to the file it returns."""
    log = tmp_path / "docker.log"
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$1 $2" in
  "info "*) [ {info} = 0 ] || echo 'Cannot connect to the Docker daemon' >&2; exit {info};;
  "image inspect") [ {inspect} = 0 ] || echo 'Error: No such image' >&2; exit {inspect};;
  "pull "*) [ {pull} = 0 ] || echo 'Error response from daemon: pull access denied' >&2; exit {pull};;
esac
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return log


def docker_calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_unreachable_docker_daemon_is_a_clear_error(monkeypatch, tmp_path):
    fake_docker(monkeypatch, tmp_path, info=1)
    result = run_module("pipelines.component_run", "--component", "tokenize", "--", *TOKENIZE_FLAGS)
    assert result.returncode == 2
    assert result.stderr.strip() == "component-run: cannot reach the Docker daemon; start Docker (or use DRY_RUN=1 to print the command)"


def component_run(capsys, stage: str, *stage_args: str, dry_run: bool = True) -> tuple[int, list[str], str]:
    """`make component-run`, in this process: its status, the docker command printed (DRY_RUN=1), stderr."""
    from pipelines.component_run import main

    status = main(
        ["--config", str(REPO / "configs" / "default.yaml"), "--mount", str(REPO), "--component", stage]
        + (["--dry-run"] if dry_run else []) + ["--", *stage_args]
    )  # fmt: skip
    printed = capsys.readouterr()
    return status, shlex.split(printed.out), printed.err.strip()


def volumes(command: list[str]) -> list[str]:
    return [command[index + 1] for index, part in enumerate(command) if part == "-v"]


def test_absolute_paths_are_mounted_at_the_same_path_inputs_read_only(capsys, tmp_path):
    """Under /tmp (pytest's tmp_path) an output once landed in the container's throwaway tmpfs."""
    model, tokens = tmp_path / "model", tmp_path / "tokens"
    model.mkdir(), tokens.mkdir()
    evaluation, report = tmp_path / "run" / "evaluation", tmp_path / "reports" / "report.html"
    status, command, _ = component_run(capsys, "evaluate", "--model_uri", str(model), f"--data_uri={tokens}", "--output_uri", str(evaluation),
                                       "--report_path", str(report))  # fmt: skip
    assert status == 0
    assert volumes(command) == [f"{REPO}:/workspace", f"{model}:{model}:ro", f"{tokens}:{tokens}:ro",
                                f"{evaluation}:{evaluation}", f"{report.parent}:{report.parent}"]  # fmt: skip
    assert not evaluation.exists() and not report.parent.exists()  # a dry run creates nothing


def test_relative_paths_and_remote_uris_need_no_mount_of_their_own(capsys):
    status, command, _ = component_run(capsys, "train", "--data_uri", "runs/x/tokens", "--output_uri=runs/x/model",
                                       "--base_model", "prajjwal1/bert-tiny", "--checkpoint_uri", "s3://bucket/checkpoints")  # fmt: skip
    assert status == 0 and volumes(command) == [f"{REPO}:/workspace"]


EVALUATE_FLAGS = {"model_uri": "runs/x/model", "data_uri": "runs/x/tokens", "output_uri": "runs/x/evaluation"}


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
    required = [word for name, value in EVALUATE_FLAGS.items() if f"--{name}" not in flags for word in (f"--{name}", value)]
    status, command, error = component_run(capsys, "evaluate", *required, *flags)
    assert status == 2 and error == line and command == []


def test_a_run_creates_the_output_folders_it_mounts(monkeypatch, tmp_path):
    """Docker would create a missing one as root, and podman refuses it."""
    log = fake_docker(monkeypatch, tmp_path)
    output = tmp_path / "out" / "data"
    result = run_module(
        "pipelines.component_run", "--component", "preprocess", "--", "--input_uri", "data/sample", "--output_uri", str(output)
    )
    assert result.returncode == 0, result.stderr
    assert output.is_dir() and f"-v {output}:{output} " in docker_calls(log)[-1]


PREPROCESS_FLAGS = ("--input_uri", "data/sample", "--output_uri", "runs/x/data")
CPU_IMAGE = "ghcr.io/textclf/textclf-cpu:0.1.0"
BUILD_CPU_IMAGE = "make images REGISTRY=ghcr.io/textclf TAG=0.1.0 PUSH=0 IMAGES=cpu"


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize(
    "stage, stage_args, line",
    [
        ("preprocess", [*PREPROCESS_FLAGS, "--text_colum", "review"], "component-run: --text_colum: components.preprocess has no such flag; did you mean --text_column? (python -m components.preprocess --help lists them)"),
        ("train", ["--output_uri", "runs/x/model"], "component-run: components.train needs --data_uri; python -m components.train --help lists its flags"),
        ("evaluate", ["--report_path", "runs/x/report.html"], "component-run: components.evaluate needs --model_uri, --data_uri, --output_uri; python -m components.evaluate --help lists its flags"),
    ],
    ids=["unknown", "missing-one", "missing-three"],
)  # fmt: skip
def test_the_stage_flags_are_checked_before_anything_is_printed_or_run(stage, stage_args, line, dry_run, capsys, monkeypatch, tmp_path):
    log = fake_docker(monkeypatch, tmp_path)
    status, command, error = component_run(capsys, stage, *stage_args, dry_run=dry_run)
    assert status == 2 and error == line
    assert command == [] and docker_calls(log) == []


def test_an_image_that_is_not_here_and_cannot_be_pulled_is_one_line_saying_how_to_build_it(capsys, monkeypatch, tmp_path):
    log = fake_docker(monkeypatch, tmp_path, inspect=1, pull=1)
    status, _, error = component_run(capsys, "preprocess", *PREPROCESS_FLAGS, dry_run=False)
    assert status == 2
    assert error == (f"component-run: the image {CPU_IMAGE} is not present locally and cannot be pulled"
                     f" (Error response from daemon: pull access denied); build it with: {BUILD_CPU_IMAGE}")  # fmt: skip
    assert not any(call.startswith("run ") for call in docker_calls(log))


def test_the_build_command_builds_the_image_the_stage_runs_in(capsys, monkeypatch, tmp_path):
    """REGISTRY and TAG choose both; train runs in the CUDA image."""
    monkeypatch.setenv("REGISTRY", "localhost/me")
    monkeypatch.setenv("TAG", "0.2.0")
    fake_docker(monkeypatch, tmp_path, inspect=1, pull=1)
    _, _, error = component_run(capsys, "train", "--data_uri", "runs/x/tokens", "--output_uri", "runs/x/model", dry_run=False)
    build = error.partition("build it with: ")[2]
    assert build == "make images REGISTRY=localhost/me TAG=0.2.0 PUSH=0 IMAGES=cuda"
    planned = make(*shlex.split(build)[1:], "DRY_RUN=1")  # images/build.py prints its build commands
    assert planned.returncode == 0, planned.stderr
    assert "--tag localhost/me/textclf-cuda:0.2.0 " in planned.stdout


def test_an_image_that_is_not_here_is_pulled_as_docker_run_would(capsys, monkeypatch, tmp_path):
    log = fake_docker(monkeypatch, tmp_path, inspect=1)
    status, _, error = component_run(capsys, "preprocess", *PREPROCESS_FLAGS, dry_run=False)
    assert status == 0, error
    calls = docker_calls(log)
    assert calls.index(f"pull {CPU_IMAGE}") < next(index for index, call in enumerate(calls) if call.startswith("run "))


@pytest.mark.parametrize(
    "docker, note",
    [
        ({}, ""),
        ({"inspect": 1}, f"component-run: note: the image {CPU_IMAGE} is not present locally; build it with: {BUILD_CPU_IMAGE}, or pull it, first"),
        ({"info": 1}, f"component-run: note: the image {CPU_IMAGE} must exist where this runs; build it with: {BUILD_CPU_IMAGE}, or pull it"),
    ],
    ids=["present", "absent", "no-engine"],
)  # fmt: skip
def test_a_dry_run_notes_an_image_that_must_be_built_first(docker, note, capsys, monkeypatch, tmp_path):
    log = fake_docker(monkeypatch, tmp_path, **docker)
    status, command, error = component_run(capsys, "preprocess", *PREPROCESS_FLAGS)
    assert status == 0 and CPU_IMAGE in command and error == note
    assert not any(call.startswith(("run ", "pull ")) for call in docker_calls(log))
