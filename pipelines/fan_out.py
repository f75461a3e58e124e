"""The list a fanning-out pipeline iterates over, expanded from the config section of the same name."""

from __future__ import annotations

from pipelines.config import RunConfig
from pipelines.kfold import expand_kfold
from pipelines.pipeline import ITEM_PARAMETERS
from pipelines.sweep import expand_sweep


def with_items(config: RunConfig, variant: str, parameters: dict) -> dict:
    """The run's parameters, plus `sweep_configs` or `kfold_configs` for those pipelines."""
    if variant == "sweep":
        return {**parameters, ITEM_PARAMETERS[variant][0]: expand_sweep(config.sweep, parameters)}
    if variant == "kfold":
        return {**parameters, ITEM_PARAMETERS[variant][0]: expand_kfold(config.kfold, parameters)}
    return parameters
