"""The one check for names read from storage (manifest entries, S3 keys) before they become local
paths: such data is untrusted, and a name like `../x` or `/etc/x` must never write outside its folder.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from components.lib.errors import UserError


def contained(folder: Path, name: str, source: str) -> Path:
    """`folder / name`, refused in one line naming `source` unless it stays inside `folder`.

    Refuses empty and absolute names, any `..` part, backslashes (a separator on Windows, and never
    written by our stages), and a path that resolves outside `folder` through a symlink.
    """
    parts = PurePosixPath(name).parts
    if not name or "\\" in name or "\x00" in name or PurePosixPath(name).is_absolute() or ".." in parts or name.endswith("/"):
        raise UserError(f"{source}: refusing the file name {name!r}: it is not a plain path inside its folder")
    path = folder / name
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        raise UserError(f"{source}: refusing the file name {name!r}: it cannot be resolved (a symlink loop?)") from None
    if not inside:
        raise UserError(f"{source}: refusing the file name {name!r}: it resolves outside {folder}")
    return path
