"""`make component-run`: run one stage in its container image with docker, as Kubeflow would.

    make component-run COMPONENT=preprocess ARGS="--input_uri data/sample/drugscom --output_uri runs/one/data ..."
    DRY_RUN=1 make component-run COMPONENT=train ARGS="..."     # print the docker command only

The stage's flags are checked first, as the stage itself checks them: an unknown flag (with the
nearest one) or a missing required flag is one line, and nothing runs. The image must exist where
docker runs: one that is not present locally is pulled, and one that cannot be pulled is one line
saying how to build it (`make images ... PUSH=0`); a dry run notes when it is not present.

The current folder (or MOUNT) is mounted read-write at /workspace, the working directory, so
relative paths in ARGS work unchanged (one that leaves MOUNT is refused). A flag that names an
absolute local path is mounted at that same path: what a stage reads read-only, what it writes
read-write (the output folder, or a file's folder, created first; not by DRY_RUN). A path that
cannot be mounted (a missing input, a file right in /tmp, a ':' in the name) is refused in one
line. The S3 settings pass through by name (`-e NAME`), so their
values never appear in the command. The container runs with a read-only root filesystem and a
tmpfs /tmp, as your user (as root: as the image's own non-root user, in group 0, so MOUNT must be
group-writable); train gets the CUDA image, `--gpus all` when this machine has an NVIDIA GPU, and
a larger /dev/shm for DataLoader workers. IMAGE replaces the stage's image, and NETWORK=host lets
the container reach an S3 endpoint on this machine's loopback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

from components.lib.cli import HELP_WORDS, check_flags, typed_command
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from components.lib.runtime import HUB_TOKEN_VARIABLE, IMAGE_USER_ID
from pipelines.compile import with_image_environment
from pipelines.config import KubeflowSettings, load_config
from pipelines.stages import ALL_STAGES, INTERFACES, stage_command, stage_function

PASSED_ENVIRONMENT = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_MAX_ATTEMPTS",
    HUB_TOKEN_VARIABLE,
    "HF_HUB_OFFLINE",
)
WORKDIR = "/workspace"


CONTAINER_TMP = "/tmp"
TMPFS = f"{CONTAINER_TMP}:rw,exec,size=8g"  # the only writable place besides the mounts: caches and scratch (images set HOME=/tmp)
TRAIN_SHM_SIZE = "2g"
ENGINE_TIMEOUT_SECONDS = 60  # `docker info` and `docker image inspect`; a pull takes as long as it takes

# Flags that name a file or folder: `*_uri`, `*_path` (a file) and the base model (a Hub id, or a folder).
PATH_FLAG_SUFFIXES = ("_uri", "_path")
FILE_FLAG_SUFFIX = "_path"
BASE_MODEL_FLAG = "base_model"
# What a stage writes: its outputs as Kubeflow sees them, and the folders it reads and writes.
WRITTEN_FLAGS = {artifact.flag for interface in INTERFACES.values() for artifact in interface.artifacts if artifact.is_output} | {
    "checkpoint_uri",
    "registry_uri",
}


@dataclass(frozen=True)
class Mount:
    """A local file or folder that a flag names, mounted at the same path in the container."""

    path: str
    writable: bool

    def volume(self) -> str:
        return f"{self.path}:{self.path}" + ("" if self.writable else ":ro")


def given_flags(stage_args: list[str]) -> list[tuple[str, str]]:
    """(flag, value) for each `--flag value` or `--flag=value`, the flag spelt as its parameter."""
    found = []
    for index, word in enumerate(stage_args):
        if word == "--":  # Fire's own flags follow
            break
        if not word.startswith("--"):
            continue
        name, has_value, value = word[2:].partition("=")
        if not has_value and index + 1 < len(stage_args):
            value = stage_args[index + 1]
        found.append((name.replace("-", "_"), value))
    return found


def local_path_flags(stage_args: list[str]) -> list[tuple[str, str]]:
    """(flag, value) for each flag that names a local path (no scheme)."""
    return [
        (name, value)
        for name, value in given_flags(stage_args)
        if (name.endswith(PATH_FLAG_SUFFIXES) or name == BASE_MODEL_FLAG) and value and "://" not in value
    ]


def check_stage_flags(stage: str, stage_args: list[str]) -> None:
    """Refuse, before any container starts, the flags the stage would refuse: an unknown one, by the stage's own
    check (components/lib/cli.py), and a missing required one, which Fire reports in a screenful of usage."""
    if any(word in HELP_WORDS for word in stage_args):
        return  # the stage prints its help
    check_flags(stage_args, typed_command(stage_function(stage)), stage_command(stage)[-1])


def flag_mounts(stage_args: list[str], workspace: str) -> list[Mount]:
    """The mounts the stage's path flags need; relative paths are seen through the workspace mount."""
    writable: dict[str, bool] = {}
    for flag, value in local_path_flags(stage_args):
        if not os.path.isabs(value):
            require_inside(flag, value, workspace)
            continue
        path = mounted_path(flag, value)
        writable[path] = writable.get(path, False) or flag in WRITTEN_FLAGS
    return [Mount(path, writes) for path, writes in writable.items()]


def require_inside(flag: str, value: str, workspace: str) -> None:
    inside = os.path.realpath(workspace)
    if os.path.commonpath([inside, os.path.realpath(os.path.join(workspace, value))]) != inside:
        raise UserError(
            f"--{flag} {value}: leaves MOUNT ({os.path.abspath(workspace)}), which the container sees as {WORKDIR}; give an absolute path"
        )


def mounted_path(flag: str, value: str) -> str:
    """What to mount for one absolute path: an input itself; an output folder itself, or an output
    file's folder (the file does not exist yet)."""
    path = os.path.normpath(value)
    if flag not in WRITTEN_FLAGS and not os.path.exists(path):
        raise UserError(f"--{flag} {value}: no such file or folder")
    if flag in WRITTEN_FLAGS and flag.endswith(FILE_FLAG_SUFFIX):
        path = os.path.dirname(path)
    if ":" in path:
        raise UserError(f"--{flag} {value}: docker cannot mount a path with ':' in it; rename it or use a relative path")
    if path in ("/", CONTAINER_TMP, WORKDIR):
        raise UserError(f"--{flag} {value}: {path} itself cannot be mounted (the container has its own); use a folder inside it")
    return path


def create_output_folders(mounts: list[Mount]) -> None:
    """Create the writable mounts docker would otherwise create as root (podman refuses a missing one)."""
    for mount in mounts:
        if not mount.writable or os.path.isdir(mount.path):
            continue
        try:
            os.makedirs(mount.path)
        except OSError as error:
            raise UserError(f"{mount.path}: cannot create this output folder ({error.strerror})") from None
        if os.getuid() == 0:
            os.chmod(mount.path, 0o775)  # noqa: S103 - the image's user, in group 0, writes there (container_user)


def container_user() -> str:
    """Your own uid:gid, so what the container writes stays yours; never root inside the container."""
    if os.getuid() == 0:
        return f"{IMAGE_USER_ID}:0"
    return f"{os.getuid()}:{os.getgid()}"


def docker_command(
    stage: str, stage_args: list[str], image: str, mount: str, gpus: bool, network: str = "", flag_mounts: tuple[Mount, ...] = ()
) -> list[str]:
    command = ["docker", "run", "--rm", "--user", container_user(), "--read-only", "--tmpfs", TMPFS]
    command += ["-v", f"{os.path.abspath(mount)}:{WORKDIR}", "-w", WORKDIR] + (["--network", network] if network else [])
    for path_mount in flag_mounts:
        command += ["-v", path_mount.volume()]
    for name in PASSED_ENVIRONMENT:
        if name in os.environ:
            command += ["-e", name]
    if stage == "train":
        command += ["--shm-size", TRAIN_SHM_SIZE] + (["--gpus", "all"] if gpus else [])
    return command + [image, *stage_command(stage), *stage_args]


def image_flavour(stage: str) -> str:
    """Which of `make images`' two images the stage runs in (IMAGES=...)."""
    return "cuda" if stage == "train" else "cpu"


def stage_image(stage: str, settings: KubeflowSettings) -> str:
    return settings.cuda_image if image_flavour(stage) == "cuda" else settings.cpu_image


def how_to_build(stage: str, settings: KubeflowSettings, image: str) -> str:
    """`make images` for the image it names (the config's, without a digest); any other image is the user's own."""
    built = dataclasses.replace(settings, cpu_image_digest="", cuda_image_digest="", train_image="")
    if image != stage_image(stage, built):
        return "build it"
    return f"build it with: make images REGISTRY={settings.image_registry} TAG={settings.image_tag} PUSH=0 IMAGES={image_flavour(stage)}"


def docker_succeeds(*words: str) -> bool:
    try:
        return subprocess.run(["docker", *words], capture_output=True, timeout=ENGINE_TIMEOUT_SECONDS).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def docker_answers() -> bool:
    return shutil.which("docker") is not None and docker_succeeds("info")


def image_is_local(image: str) -> bool:
    return docker_succeeds("image", "inspect", image)


def dry_run_image_note(image: str, how: str) -> str:
    if not docker_answers():
        return f"the image {image} must exist where this runs; {how}, or pull it"
    if image_is_local(image):
        return ""
    return f"the image {image} is not present locally; {how}, or pull it, first"


def require_image(image: str, how: str) -> None:
    """Pull an image that is not present locally, as `docker run` would (its progress shown), but end in one line if that fails."""
    if image_is_local(image):
        return
    pulled = subprocess.run(["docker", "pull", image], stderr=subprocess.PIPE, text=True)
    if pulled.returncode != 0:
        reason = (pulled.stderr.strip().splitlines() or ["docker pull failed"])[-1][:200]
        raise UserError(f"the image {image} is not present locally and cannot be pulled ({reason}); {how}")


def require_docker() -> None:
    if shutil.which("docker") is None:
        raise UserError("docker is not installed (not on PATH); install Docker, or use DRY_RUN=1 to print the command")
    if not docker_answers():
        raise UserError("cannot reach the Docker daemon; start Docker (or use DRY_RUN=1 to print the command)")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one pipeline stage in its image with docker.")
    parser.add_argument("--component", required=True, help=f"one of {', '.join(ALL_STAGES)}")
    parser.add_argument("--config", default="configs/default.yaml", help="kubeflow.image_registry and image_tag name the images")
    parser.add_argument("--mount", default=os.environ.get("MOUNT", "."), help="local folder mounted at /workspace")
    parser.add_argument("--image", default="", help="run in this image instead of the stage's own")
    parser.add_argument("--network", default="", help="docker network, e.g. host for S3 on loopback")
    parser.add_argument("--dry-run", action="store_true", help="print the docker command instead of running it")
    parser.add_argument("stage_args", nargs=argparse.REMAINDER, help="the stage's own flags, after --")
    return parser.parse_args(argv)


def run_component(arguments: argparse.Namespace) -> int:
    stage = arguments.component
    if stage not in ALL_STAGES:
        raise UserError(f"COMPONENT={stage!r} is not a stage; choose one of {', '.join(ALL_STAGES)}")
    stage_args = arguments.stage_args[1:] if arguments.stage_args[:1] == ["--"] else arguments.stage_args
    stage_args = [part for chunk in stage_args for part in shlex.split(chunk)]
    check_stage_flags(stage, stage_args)
    settings = with_image_environment(load_config(arguments.config).kubeflow)
    mounts = flag_mounts(stage_args, arguments.mount)
    gpus = stage == "train" and shutil.which("nvidia-smi") is not None
    image = arguments.image or stage_image(stage, settings)
    how = how_to_build(stage, settings, image)
    command = docker_command(stage, stage_args, image, arguments.mount, gpus, arguments.network, tuple(mounts))
    if arguments.dry_run:
        print(shlex.join(command))
        note = dry_run_image_note(image, how)
        if note:
            print(f"component-run: note: {note}", file=sys.stderr)
        return 0
    require_docker()
    require_image(image, how)
    create_output_folders(mounts)
    return subprocess.run(command).returncode


def main(argv: list[str] | None = None) -> int:
    try:
        return run_component(parse_arguments(argv))
    except UserError as error:
        print(f"component-run: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
