"""A model registry on plain storage (a local folder or an s3:// prefix).

    <registry>/<model-name>/<version>/        one committed folder per version: model.onnx,
                                              tokenizer, labels.json, metrics, MODEL_CARD.md,
                                              MANIFEST.json (sha256 of every file, lineage)
    <registry>/<model-name>/aliases/<alias>.json    {"version": N}: latest, production, ...

Versions are numbered 1, 2, 3... and never overwritten: a writer first claims its number by
creating `<version>/.claim` exclusively (O_EXCL locally, `If-None-Match: *` on S3), so concurrent
registrations get distinct numbers. Aliases move by compare-and-swap (a lock file locally,
`If-Match` on the ETag on S3), so `latest` only ever moves forward.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.lib import storage
from components.lib.errors import UserError
from components.lib.storage.artifacts import MANIFEST, read_manifest, staged_input

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}\Z")
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,17}\Z")  # as `str(int)` writes it: `01` or `²` is not a version
CLAIM = ".claim"
ALIASES = "aliases"
LATEST = "latest"
PRODUCTION = "production"


def check_model_name(name: str) -> str:
    if not NAME_PATTERN.match(name) or ".." in name:
        raise UserError(
            f"--model_name {name!r}: use letters, digits, '.', '_' and '-' only (no '/', '..' or spaces),"
            " starting with a letter or digit, at most 100 characters"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.match(alias):
        raise UserError(f"alias {alias!r}: use lower-case letters, digits, '_' and '-', starting with a letter")
    return alias


def parse_alias(body: bytes, uri: str) -> int:
    try:
        version = json.loads(body)["version"]
    except (ValueError, KeyError, TypeError):
        version = None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f'{uri}: not an alias file (it must hold {{"version": N}}); delete it or fix it by hand')
    return version


def model_names(registry_uri: str) -> list[str]:
    """The models in a registry: the folders under it that hold at least one committed version."""
    if not storage.is_s3(registry_uri) and not Path(registry_uri).is_dir():
        return []
    found = set()
    for name in storage.list_files(registry_uri):
        parts = name.split("/")
        if len(parts) == 3 and NAME_PATTERN.match(parts[0]) and VERSION_PATTERN.match(parts[1]) and parts[2] == MANIFEST:
            found.add(parts[0])
    return sorted(found)


class Registry:
    def __init__(self, registry_uri: str, model_name: str) -> None:
        self.model_name = check_model_name(model_name)
        self.registry_uri = registry_uri
        self.root = storage.join(registry_uri, model_name)

    def version_uri(self, version: int) -> str:
        return storage.join(self.root, str(version))

    def alias_uri(self, alias: str) -> str:
        return storage.join(self.root, ALIASES, f"{check_alias(alias)}.json")

    # ----- versions ----------------------------------------------------------------------
    def versions(self, committed_only: bool = True) -> list[int]:
        marker = MANIFEST if committed_only else CLAIM
        found = set()
        for name in storage.list_files(self.root) if self.exists() else {}:
            first, _, rest = name.partition("/")
            if VERSION_PATTERN.match(first) and (rest == marker or not committed_only and rest == MANIFEST):
                found.add(int(first))
        return sorted(found)

    def require_versions(self) -> None:
        """Refuse, in one line, a model with no committed version: a typo in the name or the path."""
        if self.versions():
            return
        models = model_names(self.registry_uri)
        held = f"it holds {', '.join(models)}" if models else "it holds no registered model; check --registry_uri"
        raise UserError(f"{self.registry_uri}: no model {self.model_name!r} is registered there; {held}")

    def exists(self) -> bool:
        return storage.is_s3(self.root) or Path(self.root).is_dir()

    def claim_next_version(self) -> int:
        """Reserve the next free version number for this writer alone."""
        token = uuid.uuid4().hex.encode()
        version = max(self.versions(committed_only=False), default=0) + 1
        while True:
            claim_uri = storage.join(self.version_uri(version), CLAIM)
            if storage.create_exclusive(claim_uri, token):
                return version
            if storage.read_bytes(claim_uri) == token:  # our own write, answered 412 on a retry
                return version
            version += 1

    def resolve(self, version_or_alias: str | int) -> int:
        self.require_versions()
        text = str(version_or_alias)
        if re.fullmatch(r"[0-9]{1,18}", text):
            version = int(text)
        else:
            aliased = self.read_alias(text)
            if aliased is None:
                raise UserError(f"{self.root}: no alias {text!r}; see the list command for the aliases that exist")
            version = aliased
        if version not in self.versions():
            raise UserError(f"{self.version_uri(version)}: no committed version {version}; see the list command")
        return version

    @contextlib.contextmanager
    def fetch(self, version_or_alias: str | int) -> Iterator[tuple[int, Path, dict[str, Any]]]:
        """A local, sha256-verified copy of a version."""
        version = self.resolve(version_or_alias)
        with staged_input(self.version_uri(version)) as (folder, manifest):
            yield version, folder, manifest

    # ----- aliases -----------------------------------------------------------------------
    def read_alias(self, alias: str) -> int | None:
        uri = self.alias_uri(alias)
        if not storage.exists(uri):
            return None
        return parse_alias(storage.read_bytes(uri), uri)

    def aliases(self) -> dict[str, int]:
        prefix = storage.join(self.root, ALIASES)
        if not storage.is_s3(prefix) and not Path(prefix).is_dir():
            return {}
        names = [name.removesuffix(".json") for name in storage.list_files(prefix) if name.endswith(".json")]
        names = [name for name in names if ALIAS_PATTERN.match(name)]  # files of other tools, or of hand edits, are no aliases
        return {name: version for name in names if (version := self.read_alias(name)) is not None}

    def move_alias(self, alias: str, version: int, only_forward: bool = False) -> bool:
        """Point `alias` at `version` atomically; with `only_forward`, never to an older version."""
        uri = self.alias_uri(alias)
        body = json.dumps({"version": version, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
        if storage.is_s3(uri):
            return self._move_alias_s3(uri, body, version, only_forward)
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_alias(alias)
            if only_forward and current is not None and current >= version:
                return False
            storage.write_bytes(uri, body)
        return True

    def _move_alias_s3(self, uri: str, body: bytes, version: int, only_forward: bool) -> bool:
        from botocore import exceptions

        bucket, key = storage.split_s3(uri)
        client = storage.s3_client()
        while True:
            with storage.s3_errors(uri):
                try:
                    current = client.get_object(Bucket=bucket, Key=key)
                    etag, current_version = current["ETag"], parse_alias(current["Body"].read(), uri)
                except exceptions.ClientError as error:
                    if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                        raise
                    etag, current_version = None, None
                if only_forward and current_version is not None and current_version >= version:
                    return False
                condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
                try:
                    client.put_object(Bucket=bucket, Key=key, Body=body, **condition)
                    return True
                except exceptions.ClientError as error:
                    if error.response.get("Error", {}).get("Code") not in (
                        "PreconditionFailed",
                        "ConditionalRequestConflict",
                        "412",
                        "409",
                    ):
                        raise
                    # Someone moved it in between: read again and decide again.

    # ----- listing -----------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        aliases = self.aliases()
        rows = []
        for version in self.versions():
            manifest = read_manifest(self.version_uri(version))
            rows.append(
                {
                    "version": version,
                    "registered_at": manifest.get("committed_at"),
                    "metrics": manifest.get("metrics", {}),
                    "aliases": sorted(name for name, target in aliases.items() if target == version),
                    "uri": self.version_uri(version),
                }
            )
        return rows


@contextlib.contextmanager
def model_folder(model_uri: str, registry_uri: str, model_name: str, version: str):
    """A verified local copy of the model to use (predict, generate): (folder, manifest, what to call it)."""
    if bool(model_uri) == bool(registry_uri):
        raise UserError("give either --model_uri (a folder written by export or train) or --registry_uri with --model_name")
    if model_uri:
        with staged_input(model_uri) as (folder, manifest):
            yield folder, manifest, model_uri
        return
    if not model_name:
        raise UserError("--registry_uri needs --model_name (python -m components.registry models lists them)")
    with Registry(registry_uri, model_name).fetch(version) as (number, folder, manifest):
        yield folder, manifest, f"{model_name} version {number} in {registry_uri}"
