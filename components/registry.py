"""registry: list the models, and list, show, fetch and promote versions in a model registry (local folder or s3://).

    python -m components.registry models  --registry_uri runs/registry
    python -m components.registry list    --registry_uri runs/registry --model_name drug-review-sentiment
    python -m components.registry promote --registry_uri runs/registry --model_name drug-review-sentiment --version 3
    python -m components.registry fetch   --registry_uri runs/registry --model_name drug-review-sentiment \\
        --version production --destination ./serving-model

`fetch` verifies every file's sha256 against the version's manifest before it copies anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.errors import UserError
from components.lib.storage.artifacts import MANIFEST, manifest_text
from components.lib.storage.registry import PRODUCTION, Registry, model_names
from components.lib.storage.safe_paths import contained

FETCHED = ".fetched.json"  # in a folder fetch filled: which version it holds, and that a later fetch may replace it


def list_versions(*, registry_uri: str, model_name: str, as_json: bool = False) -> StageResult | None:
    """List every committed version with its test metrics and aliases.

    Args:
      registry_uri: Registry root (local folder or s3:// prefix).
      model_name: Registered model name.
      as_json: Print JSON instead of a table.
    """
    registry = Registry(registry_uri, model_name)
    registry.require_versions()
    rows = registry.describe()
    if not as_json:
        print(f"{'version':>7}  {'registered at':20}  {'accuracy':>8}  {'macro_f1':>8}  aliases")
        for row in rows:
            metrics = row["metrics"]
            accuracy, macro_f1 = metrics.get("accuracy", float("nan")), metrics.get("macro_f1", float("nan"))
            print(f"{row['version']:>7}  {row['registered_at'] or '-':20}  {accuracy:8.4f}  {macro_f1:8.4f}  {', '.join(row['aliases'])}")
        return None
    return StageResult(summary={"model_name": model_name, "versions": rows})


def models(*, registry_uri: str) -> StageResult:
    """List the models registered in a registry.

    Args:
      registry_uri: Registry root (local folder or s3:// prefix).
    """
    names = model_names(registry_uri)
    if not names:
        raise UserError(f"{registry_uri}: no registered model there; check --registry_uri")
    return StageResult(summary={"registry_uri": registry_uri, "models": names})


def show(*, registry_uri: str, model_name: str, version: str = "latest") -> StageResult:
    """Print one version's manifest (files, sha256, lineage, metrics) after verifying its files.

    Args:
      registry_uri: Registry root (local folder or s3:// prefix).
      model_name: Registered model name.
      version: A version number or an alias (latest, production, ...).
    """
    with Registry(registry_uri, model_name).fetch(version) as (number, _, manifest):
        print(json.dumps(manifest, indent=2))
    return StageResult(summary={"model_name": model_name, "version": number, "verified": True})


def check_destination(target: Path, destination: str) -> None:
    """A new or empty folder, or one an earlier fetch filled (its marker says so): fetch writes over nothing else."""
    if target.exists() and not target.is_dir():
        raise UserError(f"--destination {destination}: is a file; give a folder (new or existing)")
    if not target.is_dir() or (target / FETCHED).is_file():
        return
    present = sorted(entry.name for entry in target.iterdir() if not entry.name.startswith("."))
    if present:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise UserError(
            f"--destination {destination}: holds files no fetch put there ({shown}); nothing was touched: give an empty or a new folder"
        )


def fetch(*, registry_uri: str, model_name: str, destination: str, version: str = "production") -> StageResult:
    """Copy a version to a local folder, after checking every sha256 in its manifest.

    Args:
      registry_uri: Registry root (local folder or s3:// prefix).
      model_name: Registered model name.
      destination: Local folder to copy the version into.
      version: A version number or an alias (production, latest, ...).
    """
    registry = Registry(registry_uri, model_name)
    with registry.fetch(version) as (number, folder, manifest):
        target = Path(destination)
        check_destination(target, destination)
        target.mkdir(parents=True, exist_ok=True)
        for name in manifest["files"]:
            path = contained(target, name, storage.join(registry.version_uri(number), MANIFEST))
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, path)
        # The manifest goes through the same check: a symlink already at <destination>/MANIFEST.json is not followed out.
        contained(target, MANIFEST, f"--destination {destination}").write_text(manifest_text(manifest))
        (target / FETCHED).write_text(json.dumps({"registry_uri": registry_uri, "model_name": model_name, "version": number}))
    return StageResult(summary={"model_name": model_name, "version": number, "destination": destination, "verified": True})


def promote(*, registry_uri: str, model_name: str, version: str, alias: str = PRODUCTION) -> StageResult:
    """Point an alias (production by default) at a version, atomically.

    Args:
      registry_uri: Registry root (local folder or s3:// prefix).
      model_name: Registered model name.
      version: The version number (or another alias, e.g. latest) to point at.
      alias: The alias to move.
    """
    registry = Registry(registry_uri, model_name)
    number = registry.resolve(version)
    with registry.fetch(number):
        pass  # verifies every file before the alias moves
    previous = registry.read_alias(alias)
    registry.move_alias(alias, number)
    return StageResult(summary={"model_name": model_name, "alias": alias, "version": number, "previous": previous})


if __name__ == "__main__":
    run_stage({"models": models, "list": list_versions, "show": show, "fetch": fetch, "promote": promote})
