"""Training checkpoints on a run-stable storage URI (local or s3://), for preemptible nodes.

    <checkpoint_uri>/step-00000120/   model.safetensors, trainer.pt, state.json, MANIFEST.json
    <checkpoint_uri>/best/            the best weights so far, by the validation metric

A checkpoint holds everything a run needs to continue as if it had never stopped: weights,
optimizer, scheduler and grad-scaler state, the RNG states, the data position and the history.
Each folder is committed by its manifest, so a checkpoint cut short by SIGKILL is skipped, and
only the last K are kept. Weights are safetensors; the rest is read with `weights_only=True`.
They exist only for resuming: once train has committed its model it removes them all (unless
asked to keep them).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import torch

from components.lib import storage
from components.lib.data.contract import MODEL_WEIGHTS_FILE
from components.lib.errors import UserError
from components.lib.storage.artifacts import MANIFEST, read_manifest, staged_input, staged_output

STEP_PATTERN = re.compile(r"^step-(\d{8})/" + re.escape(MANIFEST) + r"\Z")
BEST_DIR = "best"
# A run id or trial: one folder name under the checkpoint root, never "..", never a path.
FOLDER_NAME = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}\Z")
TRAINER_FILE = "trainer.pt"
STATE_FILE = "state.json"


def run_folders(**names: str) -> list[str]:
    """The non-empty names (run id, trial), each refused unless it is one plain folder name (no '/', no '..')."""
    for flag, name in names.items():
        if name and not FOLDER_NAME.match(name):
            raise UserError(f"--{flag} {name!r}: must be one folder name of letters, digits, '.', '_' or '-'")
    return [name for name in names.values() if name]


def identity(model: torch.nn.Module, label_names: list[str], base_model: str, flags: dict[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to be resumable: labels, architecture, training flags."""
    shapes = hashlib.sha256(
        "\n".join(f"{name}:{tuple(parameter.shape)}" for name, parameter in model.state_dict().items()).encode()
    ).hexdigest()
    return {"labels": list(label_names), "base_model": base_model, "architecture": shapes, "flags": flags}


def describe_mismatch(found: dict[str, Any], expected: dict[str, Any]) -> str | None:
    if found.get("labels") != expected["labels"]:
        return f"its labels are {found.get('labels')}, this run's are {expected['labels']}"
    if found.get("architecture") != expected["architecture"] or found.get("base_model") != expected["base_model"]:
        return f"it is of a different model ({found.get('base_model')}, this run: {expected['base_model']})"
    changed = sorted(key for key in expected["flags"] if found.get("flags", {}).get(key) != expected["flags"][key])
    if changed:
        shown = ", ".join(f"{key} {found.get('flags', {}).get(key)!r} -> {expected['flags'][key]!r}" for key in changed)
        return f"it was made with other training flags ({shown})"
    return None


def rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def save(root_uri: str, step: int, model: torch.nn.Module, trainer_state: dict[str, Any], state: dict[str, Any], keep: int) -> str:
    """Write and commit checkpoint `step`, then drop all but the newest `keep`."""
    from safetensors.torch import save_model

    uri = storage.join(root_uri, f"step-{step:08d}")
    with staged_output(uri, extra={"step": step}) as folder:
        save_model(model, str(folder / MODEL_WEIGHTS_FILE))
        torch.save({**trainer_state, "rng": rng_states()}, folder / TRAINER_FILE)
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1))
    for old_step in committed_steps(root_uri)[:-keep]:
        remove(storage.join(root_uri, f"step-{old_step:08d}"))
    return uri


def remove(uri: str) -> None:
    """Uncommit first (manifest away), then delete, so no reader ever sees a half-deleted folder."""
    storage.delete(storage.join(uri, MANIFEST))
    storage.delete_tree(uri)


def remove_all(root_uri: str) -> tuple[list[str], int]:
    """Delete every checkpoint under `root_uri` (step folders and best/); return their names and the bytes freed."""
    files = storage.list_files(root_uri) if storage.is_s3(root_uri) or Path(root_uri).is_dir() else {}
    folders = sorted({name.split("/")[0] for name in files if "/" in name})
    for folder in folders:
        remove(storage.join(root_uri, folder))
    storage.delete_tree(root_uri)
    return folders, sum(files.values())


def committed_steps(root_uri: str) -> list[int]:
    if not storage.is_s3(root_uri) and not Path(root_uri).is_dir():
        return []
    return sorted(int(match.group(1)) for name in storage.list_files(root_uri) if (match := STEP_PATTERN.match(name)))


def load_latest(root_uri: str, model: torch.nn.Module, expected_identity: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Load the newest committed checkpoint into `model`; return (trainer state, plain state), or None."""
    from safetensors.torch import load_model

    steps = committed_steps(root_uri)
    if not steps:
        return None
    uri = storage.join(root_uri, f"step-{steps[-1]:08d}")
    with staged_input(uri) as (folder, _):
        state = json.loads((folder / STATE_FILE).read_text())
        mismatch = describe_mismatch(state.get("identity", {}), expected_identity)
        if mismatch:
            raise UserError(
                f"{uri}: cannot resume from this checkpoint: {mismatch}; use a new --checkpoint_uri or the flags it was made with"
            )
        try:
            load_model(model, str(folder / MODEL_WEIGHTS_FILE), strict=True)
        except (RuntimeError, ValueError) as error:
            raise UserError(f"{uri}: the checkpoint's weights do not fit this model ({str(error).splitlines()[0][:160]})") from None
        trainer_state = torch.load(folder / TRAINER_FILE, weights_only=True, map_location="cpu")
    return trainer_state, state


def save_best(root_uri: str, model: torch.nn.Module, step: int, metric: str, value: float) -> None:
    from safetensors.torch import save_model

    with staged_output(storage.join(root_uri, BEST_DIR), extra={"step": step, "metric": metric, "value": value}) as folder:
        save_model(model, str(folder / MODEL_WEIGHTS_FILE))


def load_best(root_uri: str, model: torch.nn.Module) -> dict[str, Any]:
    from safetensors.torch import load_model

    uri = storage.join(root_uri, BEST_DIR)
    manifest = read_manifest(uri)
    with staged_input(uri) as (folder, _):
        load_model(model, str(folder / MODEL_WEIGHTS_FILE), strict=True)
    return manifest
