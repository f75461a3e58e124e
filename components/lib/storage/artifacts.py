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


def build_manifest(local_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = {
        name: {"size": size, "sha256": storage.sha256_file(local_dir / name)}
        for name, size in storage.list_files(str(local_dir)).items()
        if name != MANIFEST and not Path(name).name.startswith(".")
    }
    return {
        "manifest_version": MANIFEST_VERSION,
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
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


def commit(local_dir: Path, uri: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put the files of `local_dir` at `uri` and write the manifest last: uploaded to S3, or moved
    into the local folder `uri` in place of what it held (a folder committed where it is stays)."""
    manifest = build_manifest(local_dir, extra)
    if storage.is_s3(uri):
        for name in manifest["files"]:
            storage.upload_file(local_dir / name, storage.join(uri, name))
    elif local_dir.resolve() != Path(uri).resolve():
        replace_entries(Path(uri), local_dir)
    storage.write_text(storage.join(uri, MANIFEST), manifest_text(manifest))
    return manifest


def replace_entries(target: Path, staged: Path) -> None:
    """Swap the visible entries of `target` for those of `staged`, by renames on one filesystem.

    The old ones are renamed away first, then removed, so none is left to be listed in the new
    manifest. Hidden entries of `target` stay: they are bookkeeping, such as the registry's claim.
    """
    replaced = target / REPLACED
    shutil.rmtree(replaced, ignore_errors=True)
    replaced.mkdir()
    for entry in visible_entries(target):
        entry.rename(replaced / entry.name)
    for entry in visible_entries(staged):
        entry.rename(target / entry.name)
    shutil.rmtree(replaced)


def visible_entries(folder: Path) -> list[Path]:
    return [entry for entry in folder.iterdir() if not entry.name.startswith(".")]


def output_scratch(uri: str) -> Path:
    """An empty folder to fill for `uri`: a temporary one for S3; locally `uri/.staging`, which is
    on the same filesystem as `uri` even when `uri` is a mount point, so its entries move by rename."""
    if storage.is_s3(uri):
        return Path(tempfile.mkdtemp(prefix="staged-output-"))
    target = Path(uri)
    if target.exists() and not target.is_dir():
        raise UserError(f"{uri}: is a file; an output must be a folder (or a path that does not exist yet)")
    scratch = target / STAGING
    shutil.rmtree(scratch, ignore_errors=True)  # left by a run killed before it committed
    scratch.mkdir(parents=True)
    return scratch


@contextlib.contextmanager
def staged_output(uri: str, extra: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield an empty local folder to fill; commit it to `uri` when the block ends without error.

    Any earlier manifest at `uri` is removed first, so a rerun that fails midway leaves an
    uncommitted folder rather than a stale commit over new files; one that succeeds leaves only
    what it wrote. `extra` may be filled in by the block before it ends; it is stored in the manifest.
    """
    scratch = output_scratch(uri)
    try:
        storage.delete(storage.join(uri, MANIFEST))
        yield scratch
        commit(scratch, uri, extra)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
