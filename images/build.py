"""`make images`: build (and push) the CPU and CUDA images as <registry>/textclf-{cpu,cuda}:<tag>.

    python3 images/build.py --registry ghcr.io/you --tag 0.1.0 [--images cpu] [--no-push] [--dry-run]
        [--base-image NAME] [--torch-wheels DIR]

The compiled pipeline names the same images (`make compile` reads REGISTRY and TAG too), so
build, push and compile with the same two values. It builds with whichever engine answers:
docker, or podman (images/container_engine.sh sets podman up where no Docker engine runs). The
Dockerfiles are the ones users build; only build arguments change them:
- --base-image replaces the pinned Python base (PYTHON_IMAGE), for a machine with no registry;
- --torch-wheels takes the CPU torch wheel from a local folder, mounted read-only into the build,
  instead of PyTorch's index (podman only: `docker build` cannot mount a folder).
Standard library only: it runs before setup.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {"cpu": "images/cpu.Dockerfile", "cuda": "images/cuda.Dockerfile"}
WHEELS_IN_BUILD = "/wheels"


def image_name(registry: str, flavour: str, tag: str) -> str:
    return f"{registry.rstrip('/')}/textclf-{flavour}:{tag}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def answering_engine() -> str | None:
    """podman where it is installed (it can mount build volumes), else a docker that answers."""
    for engine in ("podman", "docker"):
        if shutil.which(engine) and subprocess.run([engine, "info"], capture_output=True, timeout=60).returncode == 0:
            return engine
    return None


def build_command(engine: str, image: str, dockerfile: str, base_image: str | None, torch_wheels: Path | None) -> list[str]:
    command = [engine, "build", "--file", dockerfile, "--build-arg", f"GIT_COMMIT={git_commit()}", "--tag", image]
    if base_image:
        command += ["--build-arg", f"PYTHON_IMAGE={base_image}"]
    if torch_wheels:
        command += ["--volume", f"{torch_wheels}:{WHEELS_IN_BUILD}:ro", "--build-arg", f"TORCH_SOURCE=--find-links {WHEELS_IN_BUILD}"]
    if engine == "podman":
        command += ["--network", "host", "--layers"]
    return [*command, "."]


def planned_commands(arguments, engine: str) -> list[list[str]]:
    planned = []
    for flavour in arguments.images:
        image = image_name(arguments.registry, flavour, arguments.tag)
        planned.append(build_command(engine, image, IMAGES[flavour], arguments.base_image, arguments.torch_wheels))
        if not arguments.no_push:
            planned.append([engine, "push", image])
    return planned


DIGEST_IN_PUSH_OUTPUT = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def push(engine: str, image: str) -> str | None:
    """Push `image`; the digest the registry stored it under ('' if the engine did not say), None on failure.

    The digest comes from the push itself: podman writes it to --digestfile, docker prints it. A
    digest read back from the local image (RepoDigests) can be one the registry never had."""
    with tempfile.TemporaryDirectory() as folder:
        digest_file = Path(folder) / "digest"
        command = [engine, "push", *(["--digestfile", str(digest_file)] if engine == "podman" else []), image]
        print("+", shlex.join(command), flush=True)
        pushed = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        print(pushed.stdout, end="", flush=True)
        if pushed.returncode != 0:
            return None
        written = digest_file.read_text().strip() if digest_file.is_file() else ""
        printed = DIGEST_IN_PUSH_OUTPUT.search(pushed.stdout)
        return written or (printed.group(1) if printed else "")


def pin_lines(digests: dict[str, str]) -> list[str]:
    """How to run pipelines that pull the pushed images by digest (a tag can be pushed over)."""
    if not any(digests.values()):
        return []
    settings = [f"  {flavour}_image_digest: {digest}" for flavour, digest in digests.items() if digest]
    return ["images: to pin them by content, add to your config's kubeflow section:", *settings]


def image_size_mb(engine: str, image: str) -> float:
    size = subprocess.run([engine, "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True).stdout.strip()
    return round(int(size) / 1e6, 1) if size.isdigit() else float("nan")


def parse_arguments(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--images", type=lambda text: text.replace(",", " ").split(), default=list(IMAGES), help="cpu, cuda or both")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--no-push", action="store_true", help="build without pushing")
    parser.add_argument("--base-image", help="Python base image to build FROM instead of the pinned one")
    parser.add_argument("--torch-wheels", type=Path, help="folder holding the torch wheel, instead of PyTorch's index")
    arguments = parser.parse_args(argv)
    unknown = [flavour for flavour in arguments.images if flavour not in IMAGES]
    if unknown:
        parser.error(f"unknown image {unknown[0]!r}; choose from {', '.join(IMAGES)}")
    if arguments.tag in ("", "latest"):
        parser.error("TAG must be a pinned version such as 0.1.0, never latest")
    if arguments.torch_wheels and not arguments.torch_wheels.is_dir():
        parser.error(f"--torch-wheels {arguments.torch_wheels}: no such folder")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    engine = "docker" if arguments.dry_run else answering_engine()
    if engine is None:
        print(
            "images: no container engine answers (docker or podman); install Docker, or set up podman with"
            " images/container_engine.sh (make container-test runs it), or DRY_RUN=1",
            file=sys.stderr,
        )
        return 2
    if arguments.torch_wheels and engine != "podman":
        print(
            "images: --torch-wheels needs podman (docker build cannot mount a folder); leave it out to use PyTorch's index", file=sys.stderr
        )
        return 2
    planned = planned_commands(arguments, engine)
    if arguments.dry_run:
        print("\n".join(shlex.join(command) for command in planned))
        return 0
    digests = {}
    for command in planned:
        if command[1] == "push":
            flavour = next(name for name in IMAGES if f"/textclf-{name}:" in command[2])
            digests[flavour] = push(engine, command[2])
            if digests[flavour] is None:
                return 1
            continue
        print("+", shlex.join(command), flush=True)
        started = time.monotonic()
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 1
        image = command[command.index("--tag") + 1]
        print(f"images: built {image}: {image_size_mb(engine, image)} MB in {time.monotonic() - started:.0f} s", flush=True)
    print("\n".join(pin_lines(digests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
