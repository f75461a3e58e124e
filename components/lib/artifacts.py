"""Committed artifacts: an output folder counts only once its manifest is written, last.

`MANIFEST.json` lists every file of the folder with its size and sha256, plus whatever the writer
adds (lineage, parameters). A reader verifies the manifest before it uses anything, so a folder
left half-written by a killed task, a torn upload or a flipped byte is refused with one line.

Stages work on local folders: `staged_input` fetches a committed folder (from S3 if need be) and
verifies it; `staged_output` hands out a local folder and, when the block ends without error,
uploads it and commits it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.lib import storage
from components.lib.errors import UserError

MANIFEST = "MANIFEST.json"
MANIFEST_VERSION = 1


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
    manifest_uri = storage.join(uri, MANIFEST)
    if not storage.exists(manifest_uri):
        raise UserError(f"{uri}: not a committed artifact (no {MANIFEST}); the stage that writes it did not finish: run it again")
    try:
        manifest = json.loads(storage.read_text(manifest_uri))
        manifest["files"].items()
    except (ValueError, KeyError, AttributeError):
        raise UserError(f"{manifest_uri}: the manifest is unreadable; run the stage that writes it again") from None
    return manifest


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
        path = local_dir / name
        if not path.is_file():
            raise UserError(f"{uri}: {name} is listed in {MANIFEST} but missing; run the stage that writes it again")
        if not matches(path, expected):
            raise UserError(f"{uri}: {name} is corrupt (size or sha256 differs from {MANIFEST}); run the stage that writes it again")


@contextlib.contextmanager
def staged_input(uri: str, only: list[str] | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield a verified local copy of the committed folder `uri`, and its manifest.

    With `only`, just those files (those of them the manifest lists) are fetched and verified.
    """
    manifest = read_manifest(uri)
    wanted = {name: entry for name, entry in manifest["files"].items() if only is None or name in only}
    checked = {**manifest, "files": wanted}
    if not storage.is_s3(uri):
        local_dir = Path(uri)
        verify_local(local_dir, checked, uri)
        yield local_dir, manifest
        return
    with tempfile.TemporaryDirectory(prefix="staged-input-") as scratch:
        local_dir = Path(scratch)
        for name, expected in wanted.items():
            download_verified(uri, name, expected, local_dir / name)
        verify_local(local_dir, checked, uri)
        yield local_dir, manifest


def commit(local_dir: Path, uri: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Upload `local_dir` to `uri` (if remote) and write the manifest last."""
    manifest = build_manifest(local_dir, extra)
    if storage.is_s3(uri):
        for name in manifest["files"]:
            storage.upload_file(local_dir / name, storage.join(uri, name))
    storage.write_text(storage.join(uri, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


@contextlib.contextmanager
def staged_output(uri: str, extra: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield a local folder to fill; commit it to `uri` when the block ends without error.

    Any earlier manifest at `uri` is removed first, so a rerun that fails midway leaves an
    uncommitted folder rather than a stale commit over new files. `extra` may be filled in by the
    block before it ends; it is stored in the manifest.
    """
    storage.delete(storage.join(uri, MANIFEST))
    if storage.is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="staged-output-") as scratch:
            yield Path(scratch)
            commit(Path(scratch), uri, extra)
        return
    local_dir = Path(uri)
    local_dir.mkdir(parents=True, exist_ok=True)
    yield local_dir
    commit(local_dir, uri, extra)
