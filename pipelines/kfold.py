"""K-fold cross-validation: the config's `kfold` section, expanded into one item per (configuration, fold).

    kfold:
      folds: 5
      seed: 0                      # the folds' shuffle
      configurations:              # two or more; the first two are tested against each other
        lr-1e-4: {learning_rate: 1.0e-4}
        lr-3e-5: {learning_rate: 3.0e-5}

The items become the kfold pipeline's `kfold_configs` parameter: a KFP ParallelFor tokenizes each fold
(pooling train and validation, stratified), trains and evaluates it, and kfold_report tabulates the
folds and tests the first two configurations against each other (components/kfold_report.py).
"""

from __future__ import annotations

import re

from components.lib.errors import UserError
from pipelines.config import KfoldSettings, coerce
from pipelines.parameters import pipeline_parameters
from pipelines.pipeline import SWEEPABLE

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,60}\Z")  # it becomes part of a folder name: <name>.fold<k>


def expand_kfold(kfold: KfoldSettings, parameters: dict) -> list[dict]:
    if kfold.folds < 2:
        raise UserError(f"kfold.folds: must be at least 2, got {kfold.folds}")
    if not kfold.configurations:
        raise UserError("kfold.configurations: empty; name at least one, e.g. lr-1e-4: {learning_rate: 1.0e-4}")
    signature = {parameter.name: parameter for parameter in pipeline_parameters()[0]}
    base = {name: parameters.get(name, signature[name].default) for name in SWEEPABLE}
    items = []
    for name, overrides in kfold.configurations.items():
        if not NAME_PATTERN.match(str(name)):
            raise UserError(f"kfold.configurations.{name}: a name of letters, digits, '_' or '-' (it names folders)")
        unknown = sorted(set(overrides or {}) - set(SWEEPABLE))
        if unknown:
            raise UserError(
                f"kfold.configurations.{name}.{unknown[0]}: cannot vary between configurations; these can: {', '.join(SWEEPABLE)}"
            )
        values = {
            flag: coerce(f"kfold.configurations.{name}.{flag}", value, signature[flag].annotation)
            for flag, value in (overrides or {}).items()
        }
        for fold in range(kfold.folds):
            items.append(
                {"trial_id": f"{name}.fold{fold}", "num_folds": kfold.folds, "fold": fold, "fold_seed": kfold.seed, **base, **values}
            )
    return items
