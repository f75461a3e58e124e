"""registry: list the models, and list, show, fetch and promote versions in a model registry (local folder or s3://).

    python -m components.registry models  --registry_uri runs/registry
    python -m components.registry list    --registry_uri runs/registry --model_name drug-review-sentiment
    python -m components.registry show    --registry_uri runs/registry --model_name drug-review-sentiment --version production
    python -m components.registry promote --registry_uri runs/registry --model_name drug-review-sentiment --version 3
    python -m components.registry fetch   --registry_uri runs/registry --model_name drug-review-sentiment \\
        --version production --destination ./serving-model

`fetch` verifies every file's sha256 against the version's manifest before it copies anything; so
does `show`, which prints a short summary (`--as_json`: the whole manifest, with every sha256).
"""

from __future__ import annotations

import difflib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.lib import storage
from components.lib.cli import HELP_WORDS, StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import METRICS_FILE, MODEL_CARD_FILE
from components.lib.data.labels import LABELS_FILE, read_labels
from components.lib.errors import USER_ERROR_EXIT_CODE, USER_ERROR_PREFIX, UserError
from components.lib.storage.artifacts import MANIFEST, manifest_text
from components.lib.storage.registry import PRODUCTION, Registry, model_names
from components.lib.storage.safe_paths import contained
from components.lib.tasks import task_for
from components.lib.tasks.base import Task

FETCHED = ".fetched.json"  # in a folder fetch filled: which version it holds, and that a later fetch may replace it
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


@takes_common_flags
def list_versions(*, registry_uri: str, model_name: str, as_json: bool = False) -> StageResult | None:
    """List every committed version with its test metrics and aliases.

    Args:
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


@takes_common_flags
def models(*, registry_uri: str) -> StageResult:
    """List the models registered in a registry."""
    names = model_names(registry_uri)
    if not names:
        raise UserError(f"{registry_uri}: no registered model there; check --registry_uri")
    return StageResult(summary={"registry_uri": registry_uri, "models": names})


@takes_common_flags
def show(*, registry_uri: str, model_name: str, version: str = "latest", as_json: bool = False) -> StageResult | None:
    """Summarise one version (aliases, test scores beside the baseline, lineage, files) after verifying its files.

    The summary leaves out the files' sha256 and the training flags: --as_json prints the whole
    manifest instead, with both.

    Args:
      as_json: Print the version's whole manifest (every file's sha256, the full lineage) as JSON instead of the summary.
    """
    registry = Registry(registry_uri, model_name)
    with registry.fetch(version) as (number, folder, manifest):
        if not as_json:
            print("\n".join(version_summary(registry, number, folder, manifest)))
            return None
        print(json.dumps(manifest, indent=2))
    return StageResult(summary={"model_name": model_name, "version": number, "verified": True})


def version_summary(registry: Registry, number: int, folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The lines of `show`: what a person reads first about a version, one fact a line."""
    lineage, task, files = manifest.get("lineage", {}), task_for(manifest, registry.version_uri(number)), manifest["files"]
    test = manifest.get("metrics", {})
    metrics = json.loads((folder / METRICS_FILE).read_text()) if METRICS_FILE in files else {}
    total_size = sum(entry["size"] for entry in files.values())
    facts = {
        "aliases": ", ".join(sorted(name for name, target in registry.aliases().items() if target == number)) or "none",
        "registered": f"{manifest.get('committed_at', '?')} by {manifest.get('written_by', '?')}",
        "task": task.name + (f": {', '.join(read_labels(folder))}" if LABELS_FILE in files else ""),
        "test": figures(test, test),
        "baseline": baseline_line(task, test, metrics),
        "model": task.model_origin(lineage),
        "data": data_line(lineage),
        "code": code_line(lineage.get("code_version", {})),
        "card": storage.join(registry.version_uri(number), MODEL_CARD_FILE) if MODEL_CARD_FILE in files else "none",
        "files": f"{len(files)}, {readable_size(total_size)}, each sha256 checked (--as_json shows them):",
    }
    width = max((len(name) for name in files), default=0)
    return [
        f"{registry.model_name} version {number}",
        *(f"  {name:<10}  {value}" for name, value in facts.items()),
        *(f"    {name:<{width}}  {readable_size(entry['size']):>10}" for name, entry in sorted(files.items())),
    ]


def figures(names: dict[str, Any], values: dict[str, Any]) -> str:
    """`values` of the figures named in `names` (the test figures the manifest keeps), a dash for a missing one."""
    shown = (f"{values[name]:.4f}" if isinstance(values.get(name), (int, float)) else "-" for name in names)
    return ", ".join(f"{name} {value}" for name, value in zip(names, shown)) or "none recorded"


def baseline_line(task: Task, test: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The same figures for the baseline evaluate scored beside the model (metrics.json), and what it is."""
    baseline, description = task.baseline(metrics)
    return f"{figures(test, baseline)} ({description})"


def data_line(lineage: dict[str, Any]) -> str:
    cleaning = ", ".join(f"{name}={value}" for name, value in lineage.get("text_cleaning", {}).items())
    cut = f"; texts cut at {lineage['max_length']} tokens" if "max_length" in lineage else ""
    return f"{lineage.get('source_uri', '?')}; text cleaning {cleaning or '?'}{cut}"


def code_line(code_version: dict[str, str]) -> str:
    commit = code_version.get("git_commit", "")
    return f"{code_version.get('package', '?')}" + (f", commit {commit[:12]}" if commit else "")


def readable_size(size: float) -> str:
    unit = 0
    while size >= 1024 and unit < len(SIZE_UNITS) - 1:
        size, unit = size / 1024, unit + 1
    return f"{size:.0f} B" if unit == 0 else f"{size:.1f} {SIZE_UNITS[unit]}"


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


@takes_common_flags
def fetch(*, registry_uri: str, model_name: str, destination: str, version: str = "production") -> StageResult:
    """Copy a version to a local folder, after checking every sha256 in its manifest.

    Args:
      destination: Local folder to copy the version into.
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


@takes_common_flags
def promote(*, registry_uri: str, model_name: str, version: str, alias: str = PRODUCTION) -> StageResult:
    """Point an alias (production by default) at a version, atomically.

    Args:
      alias: The alias to move.
    """
    registry = Registry(registry_uri, model_name)
    number = registry.resolve(version)
    with registry.fetch(number):
        pass  # verifies every file before the alias moves
    previous = registry.read_alias(alias)
    registry.move_alias(alias, number)
    return StageResult(summary={"model_name": model_name, "alias": alias, "version": number, "previous": previous})


COMMANDS: dict[str, Callable[..., StageResult | None]] = {
    "models": models,
    "list": list_versions,
    "show": show,
    "fetch": fetch,
    "promote": promote,
}


def refuse_unknown_command(argv: list[str]) -> None:
    """A first word that is no command is one line naming the nearest; Fire's own answer is a
    usage screen headed "Cannot find key"."""
    if not argv or argv[0] in COMMANDS or argv[0] in HELP_WORDS:
        return
    commands = ", ".join(COMMANDS)
    if argv[0].startswith("-"):
        raise UserError(f"registry: give a command before {argv[0]} (commands: {commands})")
    nearest = difflib.get_close_matches(argv[0], COMMANDS, n=1)
    hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
    raise UserError(f"registry: no command {argv[0]!r}{hint} (commands: {commands})")


def main() -> None:
    try:
        refuse_unknown_command(sys.argv[1:])
    except UserError as error:
        print(f"{USER_ERROR_PREFIX}{error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    run_stage(COMMANDS)


if __name__ == "__main__":
    main()
