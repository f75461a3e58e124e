"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks",
section 3.3): train for N steps while the learning rate grows exponentially from tiny to huge, watch
the loss, and take the rate where the smoothed loss is lowest, divided by 10 (the loss is still
falling fastest a decade below its minimum; past the minimum training diverges).

It runs on the trainer's own batches, loss and parameter groups, then puts back the weights and the
random number generators, so training afterwards starts exactly as it would have without it.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from components.lib.training.checkpoint import restore_rng_states, rng_states
from components.lib.training.optim import parameter_groups

START_LR = 1e-7
END_LR = 10.0
SMOOTHING = 0.98  # exponential moving average of the loss, with bias correction
DIVERGED = 4.0  # stop once the smoothed loss is this many times its lowest
log = logging.getLogger("components.train")


@dataclass
class RangeTest:
    learning_rates: list[float]
    losses: list[float]  # smoothed
    lowest_loss_at: float
    suggestion: float
    stopped_because: str

    def to_dict(self) -> dict:
        return asdict(self)


def lr_range_test(tuner, steps: int) -> RangeTest:
    """`tuner` is a FineTuner before training; its model comes back as it was."""
    model, config = tuner.model, tuner.config
    saved_weights, saved_rng = copy.deepcopy(model.state_dict()), rng_states()
    groups = parameter_groups(model, 1.0, config.weight_decay, config.layerwise_lr_decay)  # lr here is each group's scale
    scales = [group["lr"] for group in groups]
    optimizer = torch.optim.AdamW(groups, lr=START_LR)
    batches = itertools.cycle(tuner.plan(0))
    rates, losses, average, lowest, stopped = [], [], 0.0, math.inf, f"all {steps} steps ran"
    model.train()
    for step in tqdm(range(steps), desc="lr range test", unit="step", disable=not tuner.dist.is_main, mininterval=1.0):
        rate = START_LR * (END_LR / START_LR) ** (step / max(steps - 1, 1))
        for group, scale in zip(optimizer.param_groups, scales, strict=True):
            group["lr"] = rate * scale
        rows = next(batches)
        loss = tuner.mean_loss(tuner.train_split.collate(rows, tuner.pad_id), rows)
        loss.backward()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        average = SMOOTHING * average + (1 - SMOOTHING) * float(loss.detach())
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        rates.append(rate)
        losses.append(smoothed)
        lowest = min(lowest, smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGED * lowest:
            stopped = f"the loss diverged at learning rate {rate:.2e}"
            break
    model.load_state_dict(saved_weights)
    restore_rng_states(saved_rng)
    best = min(range(len(losses)), key=losses.__getitem__)
    return RangeTest(rates, losses, rates[best], rates[best] / 10, stopped)
