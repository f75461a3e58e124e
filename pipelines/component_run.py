"""`make component-run`: run one stage in its container image with docker, as Kubeflow would.

    make component-run COMPONENT=preprocess ARGS="--input_uri data/sample/drugscom --output_uri runs/one/data ..."
    DRY_RUN=1 make component-run COMPONENT=train ARGS="..."     # print the docker command only

The current folder (or MOUNT) is mounted read-write at /workspace, the working directory, so
relative paths in ARGS work unchanged. The S3 settings pass through by name (`-e NAME`), so their
values never appear in the command. The container runs with a read-only root filesystem and a
tmpfs /tmp, as your user (as root: as the image's own non-root user, in group 0, so MOUNT must be
group-writable); train gets the CUDA image, `--gpus all` when this machine has an NVIDIA GPU, and
a larger /dev/shm for DataLoader workers. IMAGE replaces the stage's image, and NETWORK=host lets
the container reach an S3 endpoint on this machine's loopback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys

from components.lib.errors import UserError
from pipelines.compile import with_image_environment
from pipelines.config import KubeflowSettings, load_config
from pipelines.pipeline import IMAGE_USER_ID
from pipelines.stages import STAGES, stage_command

PASSED_ENVIRONMENT = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_MAX_ATTEMPTS",
    "HF_TOKEN",
    "HF_HUB_OFFLINE",
)
WORKDIR = "/workspace"


TMPFS = "/tmp:rw,exec,size=8g"  # the only writable place besides the mounts: caches and scratch (images set HOME=/tmp)
TRAIN_SHM_SIZE = "2g"


def container_user() -> str:
    """Your own uid:gid, so what the container writes stays yours; never root inside the container."""
    if os.getuid() == 0:
        return f"{IMAGE_USER_ID}:0"
    return f"{os.getuid()}:{os.getgid()}"


def docker_command(stage: str, stage_args: list[str], image: str, mount: str, gpus: bool, network: str = "") -> list[str]:
    command = ["docker", "run", "--rm", "--user", container_user(), "--read-only", "--tmpfs", TMPFS]
    command += ["-v", f"{os.path.abspath(mount)}:{WORKDIR}", "-w", WORKDIR] + (["--network", network] if network else [])
    for name in PASSED_ENVIRONMENT:
        if name in os.environ:
            command += ["-e", name]
    if stage == "train":
        command += ["--shm-size", TRAIN_SHM_SIZE] + (["--gpus", "all"] if gpus else [])
    return command + [image, *stage_command(stage), *stage_args]


def stage_image(stage: str, settings: KubeflowSettings) -> str:
    return settings.cuda_image if stage == "train" else settings.cpu_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one pipeline stage in its image with docker.")
    parser.add_argument("--component", required=True, help=f"one of {', '.join(STAGES)}")
    parser.add_argument("--config", default="configs/default.yaml", help="kubeflow.image_registry and image_tag name the images")
    parser.add_argument("--mount", default=os.environ.get("MOUNT", "."), help="local folder mounted at /workspace")
    parser.add_argument("--image", default="", help="run in this image instead of the stage's own")
    parser.add_argument("--network", default="", help="docker network, e.g. host for S3 on loopback")
    parser.add_argument("--dry-run", action="store_true", help="print the docker command instead of running it")
    parser.add_argument("stage_args", nargs=argparse.REMAINDER, help="the stage's own flags, after --")
    arguments = parser.parse_args(argv)
    if arguments.component not in STAGES:
        print(f"component-run: COMPONENT={arguments.component!r} is not a stage; choose one of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    stage_args = arguments.stage_args[1:] if arguments.stage_args[:1] == ["--"] else arguments.stage_args
    stage_args = [part for chunk in stage_args for part in shlex.split(chunk)]
    try:
        settings = with_image_environment(load_config(arguments.config).kubeflow)
    except UserError as error:
        print(f"component-run: {error}", file=sys.stderr)
        return 2
    gpus = arguments.component == "train" and shutil.which("nvidia-smi") is not None
    image = arguments.image or stage_image(arguments.component, settings)
    command = docker_command(arguments.component, stage_args, image, arguments.mount, gpus, arguments.network)
    if arguments.dry_run:
        print(shlex.join(command))
        return 0
    if shutil.which("docker") is None:
        print(
            "component-run: docker is not installed (not on PATH); install Docker, or use DRY_RUN=1 to print the command", file=sys.stderr
        )
        return 2
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("component-run: cannot reach the Docker daemon; start Docker (or use DRY_RUN=1 to print the command)", file=sys.stderr)
        return 2
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
