"""`make container-test`: the CPU image built for real, every stage run in it, the compiled pipeline
executed in containers by kfp.local's DockerRunner.

Needs a container engine that answers the Docker API (`make container-test` runs
images/container_engine.sh first); `make test` leaves these out (marker `container`). Every
container runs with a read-only root filesystem, never as root, with the S3 variables passed to the
S3 server on loopback. Figures (image size, build time, each step's time) are printed and written to
build/container-test.json.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from components.lib.runtime import IMAGE_USER_ID
from components.lib.storage.registry import Registry
from pipelines.cluster_check import CHECK_SOURCE
from pipelines.component_run import PASSED_ENVIRONMENT, TMPFS, container_user
from tests.conftest import REPO, upload_folder

pytestmark = pytest.mark.container

REGISTRY = "localhost/textclf"
TAG = "container-test"
CPU_IMAGE = f"{REGISTRY}/textclf-cpu:{TAG}"
FIGURES: dict = {}
TINY_TRAINING = {"max_length": 32, "epochs": 3, "batch_size": 4, "learning_rate": 3e-3, "num_workers": 0, "report_to": "none"}


def record(name: str, seconds: float, **extra) -> None:
    FIGURES[name] = {"seconds": round(seconds, 1), **extra}
    print(f"\ncontainer-test: {name}: {seconds:.1f} s {json.dumps(extra) if extra else ''}", flush=True)
    (REPO / "build").mkdir(exist_ok=True)
    (REPO / "build" / "container-test.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


def local_torch_wheel_folder() -> str | None:
    """The folder of this machine's CPU torch wheel, where pip finds it (PIP_FIND_LINKS); else None,
    and the build takes torch from PyTorch's index as a user's build does."""
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        if any(Path(folder).glob("torch-2.13.0+cpu-*.whl")):
            return folder
    return None


@pytest.fixture(scope="module")
def cpu_image() -> str:
    sys.path.insert(0, str(REPO / "images"))
    from build import answering_engine, image_size_mb

    engine = answering_engine()
    assert engine, "no container engine answers; run `bash images/container_engine.sh` as root"
    command = [sys.executable, "images/build.py", "--registry", REGISTRY, "--tag", TAG, "--images", "cpu", "--no-push"]
    if os.environ.get("BASE_IMAGE"):
        command += ["--base-image", os.environ["BASE_IMAGE"]]
    if engine == "podman" and local_torch_wheel_folder():
        command += ["--torch-wheels", local_torch_wheel_folder()]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record("build the CPU image", time.monotonic() - started, image=CPU_IMAGE, size_mb=image_size_mb(engine, CPU_IMAGE), engine=engine)
    return CPU_IMAGE


@pytest.fixture
def shared_folder(tmp_path) -> Path:
    """A folder the container user can write: yours, or as root the image's user in group 0."""
    folder = tmp_path / "mount"
    folder.mkdir()
    folder.chmod(0o775)
    return folder


def readable_copy(source: Path, target: Path) -> Path:
    """A copy the container user can read (pytest makes its folders 0700, safetensors its files 0600)."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def component_run(stage: str, mount: Path, **flags) -> subprocess.CompletedProcess:
    """`make component-run` as a user types it: the stage in the CPU image, S3 on loopback."""
    arguments = " ".join(f"--{name} {shlex.quote(str(value))}" for name, value in flags.items())
    started = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "component-run", f"COMPONENT={stage}", f"IMAGE={CPU_IMAGE}", "NETWORK=host",
         f"MOUNT={mount}", f"ARGS={arguments}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,  # the s3 fixture put the S3 variables in os.environ
    )  # fmt: skip
    assert result.returncode == 0, f"{stage}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    record(f"component-run {stage}", time.monotonic() - started)
    return result


def serve_in_container(registry_uri: str, model_name: str) -> None:
    """components.serve in the CPU image, as a KServe predictor would run it: a registered version
    from S3, a V1 request answered over HTTP, then SIGTERM (docker stop) ends it cleanly."""
    port = free_port()
    environment = [word for name in PASSED_ENVIRONMENT if name in os.environ for word in ("-e", name)]
    command = ["docker", "run", "-d", "--user", container_user(), "--read-only", "--tmpfs", TMPFS, "--network", "host", *environment,
               CPU_IMAGE, "python3", "-m", "components.serve", "--registry_uri", registry_uri, "--model_name", model_name,
               "--port", str(port)]  # fmt: skip
    started = time.monotonic()
    container = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/health/ready", container)
        record("serve ready in its container", time.monotonic() - started)
        body = json.dumps({"instances": ["awful nausea", "works well"]}).encode()
        call = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{model_name}:predict", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(call, timeout=30) as response:
            predictions = json.loads(response.read())["predictions"]
        assert len(predictions) == 2 and all(abs(sum(row["probabilities"].values()) - 1) < 1e-5 for row in predictions)
        subprocess.run(["docker", "stop", "-t", "30", container], capture_output=True, check=True)
        status = subprocess.run(["docker", "wait", container], capture_output=True, text=True, check=True).stdout.strip()
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stderr
        assert status == "0" and "Traceback" not in logs, logs[-3000:]
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, container: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True)
            if running.stdout.strip() != "true":
                logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
                raise AssertionError(f"the serving container stopped:\n{logs.stdout[-2000:]}\n{logs.stderr[-3000:]}") from None
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout:.0f} s")


def test_every_stage_runs_in_its_image_read_only_and_not_as_root(cpu_image, s3, sample_source, tiny_model, shared_folder):
    source = upload_folder(s3, sample_source, "bucket", "source")
    base_model = upload_folder(s3, tiny_model, "bucket", "tiny-bert")
    run = "s3://bucket/one-by-one"
    # preprocess writes into the mounted folder (a relative path, as on a laptop); the rest is on S3.
    component_run("preprocess", shared_folder, input_uri=source, output_uri="data")
    # The rows make cluster-check trains on travel in the image (pipelines/cluster_check.py).
    checked = component_run("preprocess", shared_folder, input_uri=CHECK_SOURCE, text_column="review", label_column="rating",
                            output_uri="check-data")  # fmt: skip
    assert '"rows_kept": 96' in checked.stdout, checked.stdout[-2000:]
    component_run("tokenize", shared_folder, data_uri="data", output_uri=f"{run}/tokens", base_model=base_model, max_length=32)
    training = {key: value for key, value in TINY_TRAINING.items() if key != "max_length"}
    component_run("train", shared_folder, data_uri=f"{run}/tokens", output_uri=f"{run}/model", base_model=base_model,
                  checkpoint_uri="s3://bucket/checkpoints", run_id="one-by-one", checkpoint_every_steps=20, **training)  # fmt: skip
    component_run("evaluate", shared_folder, model_uri=f"{run}/model", data_uri=f"{run}/tokens", output_uri=f"{run}/evaluation",
                  report_path="report.html")  # fmt: skip
    component_run("export", shared_folder, model_uri=f"{run}/model", data_uri=f"{run}/tokens", output_uri=f"{run}/onnx")
    registered = component_run("register", shared_folder, export_uri=f"{run}/onnx", evaluation_uri=f"{run}/evaluation",
                               model_uri=f"{run}/model", data_uri=f"{run}/tokens", registry_uri="s3://bucket/registry",
                               model_name="tiny-sentiment", output_uri=f"{run}/registration")  # fmt: skip
    assert '"registered": true' in registered.stdout, registered.stdout[-2000:]
    assert Registry("s3://bucket/registry", "tiny-sentiment").read_alias("latest") == 1
    serve_in_container("s3://bucket/registry", "tiny-sentiment")
    written = [path for path in shared_folder.rglob("*") if path.is_file()]
    assert (shared_folder / "report.html").is_file() and any(path.name == "MANIFEST.json" for path in written)
    owner = IMAGE_USER_ID if os.getuid() == 0 else os.getuid()  # pipelines/component_run.py, container_user
    assert {path.stat().st_uid for path in written} == {owner}


def write_config(path: Path, run_root: Path, **parameters) -> Path:
    import yaml

    config = {
        "parameters": {"source_uri": "s3://bucket/source", "base_model": "s3://bucket/tiny-bert", "registry_uri": "s3://bucket/registry",
                       "checkpoint_root": "s3://bucket/checkpoints", "model_name": "tiny-sentiment", "checkpoint_every_steps": 20,
                       "min_macro_f1": 0.3, **TINY_TRAINING, **parameters},
        "kubeflow": {"image_registry": REGISTRY, "image_tag": TAG, "train_image": CPU_IMAGE, "retries": 0},
        "local": {"run_root": str(run_root)},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def local_run_in_containers(config: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}  # the S3 variables included (the s3 fixture)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.local_run", "--config", str(config), "--runner", "docker"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def test_the_compiled_pipeline_runs_in_containers_and_registers_a_model(cpu_image, s3, sample_source, tiny_model, shared_folder):
    """The source on S3 (the environment reaches the containers); the base model, registry and
    checkpoints in local folders, which the runner mounts at their own paths, as `make run RUNNER=docker` does."""
    upload_folder(s3, sample_source, "bucket", "source")
    base_model = readable_copy(tiny_model, shared_folder / "tiny-bert")
    registry_root = shared_folder / "registry"
    config = write_config(shared_folder / "config.yaml", shared_folder / "runs", base_model=str(base_model),
                          registry_uri=str(registry_root), checkpoint_root=str(shared_folder / "checkpoints"))  # fmt: skip
    started = time.monotonic()
    result = local_run_in_containers(config)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = result.stdout[result.stdout.index("=== local run finished ===") :]
    stage_times = summary.splitlines()[1]
    record("the compiled pipeline in containers (kfp.local DockerRunner)", time.monotonic() - started, stages=stage_times)
    for stage in ("preprocess", "tokenize", "train", "evaluate", "export", "register"):
        assert f"{stage} " in stage_times
    assert f"registered: tiny-sentiment version 1 at {registry_root}" in summary
    # train checkpointed in the mounted folder, then removed the checkpoints once its model was committed
    assert f"removed the checkpoints of this finished run from {shared_folder / 'checkpoints'}/" in result.stdout + result.stderr
    assert not list((shared_folder / "checkpoints").glob("*/step-*"))
    registry = Registry(str(registry_root), "tiny-sentiment")
    assert registry.read_alias("latest") == 1
    with registry.fetch("latest") as (version, folder, manifest):  # every sha256 checked on the way
        assert version == 1 and (folder / "model.onnx").is_file() and manifest["lineage"]


def test_a_stage_failing_in_its_container_fails_the_run_with_its_own_error(cpu_image, s3, sample_source, shared_folder):
    """kfp.local's DockerRunner took a vanished container for success; a failure must stop the run."""
    source = readable_copy(sample_source, shared_folder / "source")  # a local source, mounted read-only
    config = write_config(shared_folder / "config.yaml", shared_folder / "runs", source_uri=str(source), text_column="review_text")
    result = local_run_in_containers(config)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no column 'review_text'" in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: the local run stopped: stage preprocess failed")
    assert "tokenize" not in result.stdout.split("Executing task", 2)[-1]
