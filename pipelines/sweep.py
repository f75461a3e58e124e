"""Hyperparameter sweeps: the config's `sweep` section, expanded into one config per trial.

    sweep:
      method: random          # grid: every combination; random: `trials` seeded draws
      trials: 6
      seed: 0
      space:
        learning_rate: {low: 2.0e-5, high: 2.0e-4, log: true}   # a range (random only)
        batch_size: [16, 32]                                    # a list of choices

The trial configs become the sweep pipeline's `sweep_configs` parameter: a KFP ParallelFor
trains them with a parallelism limit, and only the best by validation score is evaluated,
exported and registered. Each config holds every sweepable flag, so the compiled pipeline
does not depend on which ones a particular sweep varies.
"""

from __future__ import annotations

import itertools
import math
import random

from components.lib.errors import UserError
from pipelines.config import SweepSettings, coerce
from pipelines.parameters import pipeline_parameters
from pipelines.pipeline import SWEEPABLE


def expand_sweep(sweep: SweepSettings, parameters: dict) -> list[dict]:
    if not sweep.space:
        raise UserError("sweep.space: empty; name at least one flag to vary, e.g. learning_rate: [3.0e-5, 1.0e-4]")
    unknown = sorted(set(sweep.space) - set(SWEEPABLE))
    if unknown:
        raise UserError(f"sweep.space.{unknown[0]}: cannot be swept; sweepable: {', '.join(SWEEPABLE)}")
    if sweep.method == "grid":
        draws = grid(sweep.space)
    elif sweep.method == "random":
        draws = random_draws(sweep.space, sweep.trials, sweep.seed)
    else:
        raise UserError(f"sweep.method: {sweep.method!r} is not grid or random")
    signature = {parameter.name: parameter for parameter in pipeline_parameters()[0]}
    base = {name: parameters.get(name, signature[name].default) for name in SWEEPABLE}
    configs = []
    for index, drawn in enumerate(draws):
        config = {"trial": index, "trial_id": f"trial-{index}", **base}
        for name, value in drawn.items():
            config[name] = coerce(f"sweep.space.{name}", value, signature[name].annotation)
        configs.append(config)
    return configs


def grid(space: dict) -> list[dict]:
    for name, values in space.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"sweep.space.{name}: a grid needs a non-empty list of values")
    names = list(space)
    return [dict(zip(names, combination)) for combination in itertools.product(*(space[name] for name in names))]


def random_draws(space: dict, trials: int, seed: int) -> list[dict]:
    if trials < 1:
        raise UserError(f"sweep.trials: must be at least 1, got {trials}")
    rng = random.Random(seed)
    return [{name: draw(name, choices, rng) for name, choices in space.items()} for _ in range(trials)]


def draw(name: str, choices, rng: random.Random):
    if isinstance(choices, list) and choices:
        return rng.choice(choices)
    if isinstance(choices, dict) and {"low", "high"} <= set(choices):
        low, high = float(choices["low"]), float(choices["high"])
        if not low < high:
            raise UserError(f"sweep.space.{name}: low must be below high")
        if choices.get("log"):
            if low <= 0:
                raise UserError(f"sweep.space.{name}: a log range needs low > 0")
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.uniform(low, high)
    raise UserError(f"sweep.space.{name}: give a list of choices or {{low, high[, log]}}")
