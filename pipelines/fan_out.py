"""A run's parameters as the config asks for them, read one way by the local run and by submit: every
required parameter present, and for a sweep or K-fold the list it fans out over, expanded from the
config section of the same name. Each then adds what its place needs (absolute local paths; remote
storage and the source's fingerprint)."""

from __future__ import annotations

from pipelines.config import RunConfig, require_parameters
from pipelines.kfold import expand_kfold
from pipelines.pipeline import ITEM_PARAMETERS
from pipelines.sweep import expand_sweep, sweep_rounds, with_first_pause


def resolved_parameters(config: RunConfig, variant: str) -> dict:
    require_parameters(config.parameters)
    return with_items(config, variant, dict(config.parameters))


def with_items(config: RunConfig, variant: str, parameters: dict) -> dict:
    """The run's parameters, plus `sweep_configs` or `kfold_configs` for those pipelines."""
    if variant == "sweep":
        return {**parameters, ITEM_PARAMETERS[variant][0]: with_first_pause(expand_sweep(config.sweep, parameters), sweep_rounds(config))}
    if variant == "kfold":
        return {**parameters, ITEM_PARAMETERS[variant][0]: expand_kfold(config.kfold, parameters)}
    return parameters
