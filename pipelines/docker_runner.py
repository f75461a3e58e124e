"""`make run --runner docker` (RUNNER=docker): kfp.local's DockerRunner set up as component-run sets up a
container, and the local paths among the pipeline parameters mounted into every task's container.

Each task runs in the image the compiled pipeline names: read-only root filesystem, a tmpfs /tmp,
never root, host networking (so an S3 endpoint on loopback is reachable) and the S3 environment
passed in. Besides the run folder, the local paths among the parameters are mounted at the same
paths: the source and a base model folder read-only, the registry and checkpoint roots read-write
(the mounts reach the containers through kfp_local_patches.timed_handlers' DockerHandler).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from components.lib.errors import FLAG_STYLE_ENV, KEY_VALUE_STYLE, UserError
from pipelines.component_run import PASSED_ENVIRONMENT, TMPFS, TRAIN_SHM_SIZE, container_user
from pipelines.config import REMOTE_SCHEMES, STORAGE_PARAMETERS


def docker_runner():
    """kfp.local.DockerRunner with the containers set up as component-run sets them up."""
    from kfp import local

    tmpfs_path, _, tmpfs_options = TMPFS.partition(":")
    environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ} | {FLAG_STYLE_ENV: KEY_VALUE_STYLE}
    return local.DockerRunner(
        user=container_user(), read_only=True, tmpfs={tmpfs_path: tmpfs_options}, network_mode="host",
        shm_size=TRAIN_SHM_SIZE, environment=environment,
    )  # fmt: skip


class DockerMounts:
    """The local paths among the parameters, mounted into every task's container at the same path."""

    volumes: dict[str, dict[str, str]] = {}
    READ_WRITE = ("registry_uri", "checkpoint_root")

    @classmethod
    def share(cls, parameters: dict) -> None:
        # The run folder and kfp.local's task folders are made from this process; as root they must
        # stay writable for the image's user in group 0 (component_run.container_user).
        os.umask(0o002)
        for name in (*STORAGE_PARAMETERS, "base_model"):
            value = parameters.get(name, "")
            if not value or value.startswith(REMOTE_SCHEMES) or (name == "base_model" and not Path(value).exists()):
                continue  # remote, a hub id or a bundled model: nothing to mount
            path = Path(value).resolve()
            if name in cls.READ_WRITE:
                path.mkdir(parents=True, exist_ok=True)
                if os.getuid() == 0:
                    cls.let_group_write(path)
            elif os.getuid() == 0:
                cls.require_group_read(name, path)
            cls.volumes[str(path)] = {"bind": str(path), "mode": "rw" if name in cls.READ_WRITE else "ro"}

    @staticmethod
    def require_group_read(name: str, root: Path) -> None:
        """Refuse, in one line, a read-only input the containers' user (group 0) could not read."""
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            needed = 0o050 if path.is_dir() else 0o040
            if path.stat().st_mode & needed != needed:
                raise UserError(
                    f"parameters.{name}: {path} is not readable by the containers' user (mode {path.stat().st_mode & 0o777:o});"
                    f" run chmod -R g+rX {root}"
                )

    @staticmethod
    def let_group_write(root: Path) -> None:
        """As root, the containers run as the image's user in group 0 (component_run.container_user):
        the folders they write into must be group-writable, earlier runs' folders included."""
        changed = 0
        for folder in [root, *(path for path in root.rglob("*") if path.is_dir())]:
            if not folder.stat().st_mode & 0o020:
                folder.chmod(folder.stat().st_mode | 0o070)
                changed += 1
        if changed:
            logging.getLogger(__name__).info("%s: %d folder(s) made group-writable for the containers' user", root, changed)
