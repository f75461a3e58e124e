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

    sweep:
      strategy: halving       # successive halving (Jamieson & Talwalkar 2016); all: every trial to the end
      eta: 3                  # each round keeps the best 1/eta ...
      min_epochs: 1           # ... after the first round's epochs, each next round eta times more

With `strategy: halving` the trials train in rounds (`sweep_rounds`): every trial pauses after
`min_epochs` (train --stop_after_epochs, its schedule still spanning --epochs), select_survivors keeps
the best 1/eta by validation score, those resume from their own checkpoints to eta times the
epochs, and so on until the survivors train to --epochs; select_best then picks among them. A
survivor ends exactly as it would have trained uninterrupted. The number of rounds is fixed when the
pipeline is compiled, so the sweep pipeline is compiled from the same config as its trials.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from components.lib.errors import UserError
from pipelines.config import RunConfig, SweepSettings, coerce
from pipelines.parameters import pipeline_parameters
from pipelines.pipeline import PAUSE_FLAG, SWEEPABLE

STRATEGIES = ("all", "halving")


@dataclass(frozen=True)
class Round:
    """One round of successive halving: how many trials train in it, and the epoch they pause at (0: the end)."""

    trials: int
    stop_after_epochs: int


def sweep_rounds(config: RunConfig) -> tuple[Round, ...]:
    """The rounds of a halving sweep, fixed by the config (the compiled DAG has one loop per round); () for strategy all."""
    sweep = config.sweep
    if sweep.strategy not in STRATEGIES:
        raise UserError(f"sweep.strategy: {sweep.strategy!r} is not one of {', '.join(STRATEGIES)}")
    if sweep.strategy == "all":
        return ()
    epochs = config.parameters.get("epochs", parameter_default("epochs"))
    check_halving(sweep, config.parameters, epochs)
    return halving_rounds(len(draws_of(sweep)), sweep.eta, sweep.min_epochs, epochs)


def halving_rounds(trials: int, eta: int, min_epochs: int, epochs: int) -> tuple[Round, ...]:
    """Rounds of `trials`, then trials // eta (at least 1), ...: each pauses at min_epochs x eta^round, until
    one trial is left or the next pause would reach --epochs; that last round trains to the end."""
    rounds, budget = [], min_epochs
    while trials > 1 and budget < epochs:
        rounds.append(Round(trials, budget))
        trials, budget = max(1, trials // eta), budget * eta
    return (*rounds, Round(trials, 0))


def check_halving(sweep: SweepSettings, parameters: dict, epochs: int) -> None:
    if PAUSE_FLAG in sweep.space or "epochs" in sweep.space:
        raise UserError("sweep.space: halving gives each round its epochs; epochs cannot be swept with strategy halving")
    if sweep.eta < 2:
        raise UserError(f"sweep.eta: must be at least 2 (each round keeps 1/eta of the trials), got {sweep.eta}")
    if not 1 <= sweep.min_epochs < epochs:
        raise UserError(f"sweep.min_epochs: must be at least 1 and below epochs ({epochs}) for a round to stop trials early, got"
                        f" {sweep.min_epochs}; strategy all trains every trial to the end")  # fmt: skip
    if not parameters.get("checkpoint_root"):
        raise UserError("sweep.strategy halving: trials resume from their checkpoints between rounds; set checkpoint_root")


def expand_sweep(sweep: SweepSettings, parameters: dict) -> list[dict]:
    if not sweep.space:
        raise UserError("sweep.space: empty; name at least one flag to vary, e.g. learning_rate: [3.0e-5, 1.0e-4]")
    unknown = sorted(set(sweep.space) - set(SWEEPABLE))
    if unknown:
        raise UserError(f"sweep.space.{unknown[0]}: cannot be swept; sweepable: {', '.join(SWEEPABLE)}")
    draws = draws_of(sweep)
    signature = {parameter.name: parameter for parameter in pipeline_parameters()[0]}
    base = {name: parameters.get(name, signature[name].default) for name in SWEEPABLE}
    configs = []
    for index, drawn in enumerate(draws):
        config = {"trial": index, "trial_id": f"trial-{index}", **base}
        for name, value in drawn.items():
            config[name] = coerce(f"sweep.space.{name}", value, signature[name].annotation)
        configs.append(config)
    return configs


def with_first_pause(configs: list[dict], rounds: tuple[Round, ...]) -> list[dict]:
    """A halving sweep's first round: every trial pauses where the first round ends."""
    return [{**config, PAUSE_FLAG: rounds[0].stop_after_epochs} for config in configs] if rounds else configs


def draws_of(sweep: SweepSettings) -> list[dict]:
    if sweep.method == "grid":
        return grid(sweep.space)
    if sweep.method == "random":
        return random_draws(sweep.space, sweep.trials, sweep.seed)
    raise UserError(f"sweep.method: {sweep.method!r} is not grid or random")


def parameter_default(name: str):
    return next(parameter.default for parameter in pipeline_parameters()[0] if parameter.name == name)


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
