"""Committed artifacts: an output folder counts only once its manifest is written, last.

`MANIFEST.json` lists every file of the folder with its size and sha256, plus whatever the writer
adds (lineage, parameters). A reader verifies the manifest before it uses anything, so a folder
left half-written by a killed task, a torn upload or a flipped byte is refused with one line.

Stages work on local folders: `staged_input` fetches a committed folder (from S3 if need be) and
verifies it; `staged_output` hands out an empty local folder and, when the block ends without
error, uploads it (or moves it into place) and commits it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.lib import storage
from components.lib.errors import UserError
from components.lib.storage.safe_paths import contained

MANIFEST = "MANIFEST.json"
MANIFEST_VERSION = 1
# Inside a local output folder: the next contents while a stage writes them, and the old ones while
# they are swapped out. Hidden, so never listed in a manifest.
STAGING = ".staging"
REPLACED = ".replaced"
# While a stage rewrites a folder (from the moment its last manifest is removed to the new commit):
# who writes, and which entries the last commit listed, so that a rerun after a failure may finish.
CLAIM = ".output-claim.json"
# The stage writing (its module, set by components/lib/cli.py), recorded in each manifest it commits;
# and whether the output folders are the Kubeflow launcher's own paths, where a retried attempt
# finds its earlier, unfinished files and may replace them.
WRITER: contextvars.ContextVar[str] = contextvars.ContextVar("writer", default="")
OUTPUTS_ARE_THE_LAUNCHERS: contextvars.ContextVar[bool] = contextvars.ContextVar("outputs_are_the_launchers", default=False)


def build_manifest(local_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = {
        name: {"size": size, "sha256": storage.sha256_file(local_dir / name)}
        for name, size in storage.list_files(str(local_dir)).items()
        if name != MANIFEST and not Path(name).name.startswith(".")
    }
    writer = {"written_by": WRITER.get()} if WRITER.get() else {}
    return {
        "manifest_version": MANIFEST_VERSION,
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
        **writer,
        **(extra or {}),
    }


def read_manifest(uri: str) -> dict[str, Any]:
    """The manifest of the committed folder `uri`, refused in one line if it is malformed or names a
    file outside the folder: every reader goes through here before it builds a path from a name."""
    manifest_uri = storage.join(uri, MANIFEST)
    if not is_committed(uri):
        raise UserError(f"{uri}: not a committed artifact (no {MANIFEST}); the stage that writes it did not finish: run it again")
    try:
        manifest = json.loads(storage.read_text(manifest_uri))
        entries_well_formed = all(well_formed(entry) for entry in manifest["files"].values())
    except (ValueError, KeyError, AttributeError, TypeError):
        entries_well_formed = False
    if not entries_well_formed:
        raise UserError(f"{manifest_uri}: the manifest is unreadable; run the stage that writes it again")
    # On S3 only the name's shape can be checked here; the download checks it against its scratch folder.
    folder = Path("/") if storage.is_s3(uri) else Path(uri)
    for name in manifest["files"]:
        contained(folder, name, manifest_uri)
    return manifest


def is_committed(uri: str) -> bool:
    """Whether `uri` holds a committed folder: its manifest, written last, is there."""
    return storage.exists(storage.join(uri, MANIFEST))


def well_formed(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True)


# In the manifest of an output made from a model (evaluation, export): which commit of the model.
MADE_FROM = "model_manifest_sha256"


def made_from(model_manifest: dict[str, Any]) -> dict[str, Any]:
    """What an output made from this model records: its lineage, and the digest of its manifest,
    which names one commit of one model (the files' sha256 and the time it was committed)."""
    digest = hashlib.sha256(manifest_text(model_manifest).encode()).hexdigest()
    return {"lineage": model_manifest.get("lineage", {}), MADE_FROM: digest}


def matches(path: Path, expected: dict[str, Any]) -> bool:
    return path.is_file() and path.stat().st_size == expected["size"] and storage.sha256_file(path) == expected["sha256"]


def download_verified(uri: str, name: str, expected: dict[str, Any], target: Path) -> None:
    """Fetch one file of a committed folder; fetch again if what arrived does not match (a byte
    flipped in transit). If it still does not, `verify_local` refuses it afterwards."""
    for _ in range(storage.TRANSFER_ATTEMPTS):
        storage.download_file(storage.join(uri, name), target)
        if matches(target, expected):
            return


def verify_local(local_dir: Path, manifest: dict[str, Any], uri: str) -> None:
    """Check every file in `manifest` against the copy in `local_dir`."""
    for name, expected in manifest["files"].items():
        path = contained(local_dir, name, storage.join(uri, MANIFEST))
        if not path.is_file():
            raise UserError(f"{uri}: {name} is listed in {MANIFEST} but missing; run the stage that writes it again")
        if not matches(path, expected):
            raise UserError(f"{uri}: {name} is corrupt (size or sha256 differs from {MANIFEST}); run the stage that writes it again")


@contextlib.contextmanager
def staged_input(uri: str, only: list[str] | None = None, skip: list[str] | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield a verified local copy of the committed folder `uri`, and its manifest.

    With `only`, just those files (those of them the manifest lists) are fetched and verified; with
    `skip`, all but those.
    """
    manifest = read_manifest(uri)
    wanted = {
        name: entry for name, entry in manifest["files"].items() if (only is None or name in only) and (skip is None or name not in skip)
    }
    checked = {**manifest, "files": wanted}
    if not storage.is_s3(uri):
        local_dir = Path(uri)
        verify_local(local_dir, checked, uri)
        yield local_dir, manifest
        return
    with tempfile.TemporaryDirectory(prefix="staged-input-") as scratch:
        local_dir = Path(scratch)
        for name, expected in wanted.items():
            download_verified(uri, name, expected, contained(local_dir, name, storage.join(uri, MANIFEST)))
        verify_local(local_dir, checked, uri)
        yield local_dir, manifest


def commit(local_dir: Path, uri: str, extra: dict[str, Any] | None = None, replaceable: set[str] | None = None) -> dict[str, Any]:
    """Put the files of `local_dir` at `uri` and write the manifest last: uploaded to S3, or moved
    into the local folder `uri` in place of the entries named `replaceable` (None: all it held; a
    folder committed where it is stays)."""
    manifest = build_manifest(local_dir, extra)
    if storage.is_s3(uri):
        for name in manifest["files"]:
            storage.upload_file(local_dir / name, storage.join(uri, name))
    elif local_dir.resolve() != Path(uri).resolve():
        replace_entries(Path(uri), local_dir, replaceable)
    storage.write_text(storage.join(uri, MANIFEST), manifest_text(manifest))
    return manifest


def replace_entries(target: Path, staged: Path, replaceable: set[str] | None = None) -> None:
    """Swap the visible entries of `target` named `replaceable` (None: all of them), and those the
    staged ones replace, for the entries of `staged`, by renames on one filesystem.

    The old ones are renamed away first, then removed, so none is left to be listed in the new
    manifest. Hidden entries of `target` stay: they are bookkeeping, such as the registry's claim.
    """
    replaced = target / REPLACED
    shutil.rmtree(replaced, ignore_errors=True)
    replaced.mkdir()
    arriving = {entry.name for entry in visible_entries(staged)}
    for entry in visible_entries(target):
        if replaceable is None or entry.name in replaceable | arriving:
            entry.rename(replaced / entry.name)
    for entry in visible_entries(staged):
        entry.rename(target / entry.name)
    shutil.rmtree(replaced)


def visible_entries(folder: Path) -> list[Path]:
    return [entry for entry in folder.iterdir() if not entry.name.startswith(".")]


def claim_output(uri: str) -> set[str] | None:
    """The entries of `uri` a commit there may replace: those its last commit listed. A folder that
    holds files no stage committed there, or another stage's committed output, is refused in one
    line with nothing touched. A Kubeflow task's output is the launcher's path: all of it (None)."""
    if OUTPUTS_ARE_THE_LAUNCHERS.get():
        return None
    if not storage.is_s3(uri) and Path(uri).exists() and not Path(uri).is_dir():
        raise UserError(f"{uri}: is a file; an output must be a folder (or a path that does not exist yet)")
    if is_committed(uri):
        manifest = read_manifest(uri)
        refuse_another_writer(uri, manifest.get("written_by", ""), "committed output")
        return {name.split("/")[0] for name in manifest["files"]}
    claim = read_claim(uri)
    if claim is not None:  # a rewrite of this folder that stopped before its commit
        refuse_another_writer(uri, claim["written_by"], "unfinished output")
        return set(claim["entries"])
    present = sorted(name for name in storage.list_files(uri) if not any(part.startswith(".") for part in name.split("/")))
    if present:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise UserError(
            f"{uri}: holds {len(present)} file(s) that no stage committed there ({shown}); nothing was touched:"
            " give an empty or a new folder"
        )
    return set()


def refuse_another_writer(uri: str, writer: str, what: str) -> None:
    ours = WRITER.get()
    if writer and ours and writer != ours:
        raise UserError(f"{uri}: holds {writer}'s {what}; nothing was touched: give {ours} an empty or a new folder")


def read_claim(uri: str) -> dict[str, Any] | None:
    """The claim a stopped rewrite left in `uri` ({"written_by", "entries"}), or None; one that does
    not parse is no claim. Its entries are only ever compared with names found in the folder."""
    claim_uri = storage.join(uri, CLAIM)
    if not storage.exists(claim_uri):
        return None
    try:
        claim = json.loads(storage.read_text(claim_uri))
        entries = [entry for entry in claim["entries"] if isinstance(entry, str)]
        return {"written_by": str(claim.get("written_by") or ""), "entries": entries}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def output_scratch(uri: str) -> Path:
    """An empty folder to fill for `uri`: a temporary one for S3; locally `uri/.staging`, which is
    on the same filesystem as `uri` even when `uri` is a mount point, so its entries move by rename."""
    if storage.is_s3(uri):
        return Path(tempfile.mkdtemp(prefix="staged-output-"))
    scratch = Path(uri) / STAGING
    shutil.rmtree(scratch, ignore_errors=True)  # left by a run killed before it committed
    scratch.mkdir(parents=True)
    return scratch


@contextlib.contextmanager
def staged_output(uri: str, extra: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield an empty local folder to fill; commit it to `uri` when the block ends without error.

    `uri` must be new, empty or this stage's committed output (`claim_output`). Any earlier manifest
    there is removed first, so a rerun that fails midway leaves an uncommitted folder rather than a
    stale commit over new files; one that succeeds leaves what it wrote in place of what the last
    commit listed, and nothing else is touched. `extra` may be filled in by the block before it
    ends; it is stored in the manifest.
    """
    replaceable = claim_output(uri)
    scratch = output_scratch(uri)
    try:
        if replaceable is not None:
            claim = {"written_by": WRITER.get(), "entries": sorted(replaceable)}
            storage.write_text(storage.join(uri, CLAIM), json.dumps(claim))
        storage.delete(storage.join(uri, MANIFEST))
        yield scratch
        commit(scratch, uri, extra, replaceable)
        if replaceable is not None:
            storage.delete(storage.join(uri, CLAIM))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
