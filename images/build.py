"""`make images`: build and push the CPU and CUDA images as <registry>/textclf-{cpu,cuda}:<tag>.

    python3 images/build.py --registry ghcr.io/you --tag 0.1.0 [--dry-run] [--no-push]

The compiled pipeline names the same images (`make compile` reads REGISTRY and TAG too), so
build, push and compile with the same two values. Standard library only: it runs before setup.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {"textclf-cpu": "images/cpu.Dockerfile", "textclf-cuda": "images/cuda.Dockerfile"}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def commands(registry: str, tag: str, push: bool) -> list[list[str]]:
    planned = []
    for name, dockerfile in IMAGES.items():
        image = f"{registry}/{name}:{tag}"
        planned.append(["docker", "build", "--file", dockerfile, "--build-arg", f"GIT_COMMIT={git_commit()}", "--tag", image, "."])
        if push:
            planned.append(["docker", "push", image])
    return planned


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--no-push", action="store_true", help="build without pushing")
    arguments = parser.parse_args()
    if arguments.tag in ("", "latest"):
        print("images: TAG must be a pinned version such as 0.1.0, never latest", file=sys.stderr)
        return 2
    planned = commands(arguments.registry.rstrip("/"), arguments.tag, not arguments.no_push)
    if arguments.dry_run:
        print("\n".join(shlex.join(command) for command in planned))
        return 0
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("images: no Docker engine here (docker missing or its daemon not running); DRY_RUN=1 prints the commands", file=sys.stderr)
        return 2
    for command in planned:
        print("+", shlex.join(command), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
