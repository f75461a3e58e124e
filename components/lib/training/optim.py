"""AdamW parameter groups and learning-rate schedules."""

from __future__ import annotations

import logging
from collections import defaultdict

import torch

from components.lib.errors import UserError
from components.lib.modelling.classifier import TrainableModel

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "constant_with_warmup")
log = logging.getLogger("components.train")


def no_decay(name: str, parameter: torch.nn.Parameter) -> bool:
    """Biases and normalisation weights are not decayed (1-D tensors, or named so)."""
    lowered = name.lower()
    return parameter.ndim < 2 or lowered.endswith(".bias") or "layernorm" in lowered or "layer_norm" in lowered


def parameter_groups(model: TrainableModel, learning_rate: float, weight_decay: float, layerwise_lr_decay: float) -> list[dict]:
    """AdamW groups: decay or not, and with layer-wise decay, a learning rate per depth.

    With decay d < 1, the head trains at `learning_rate` and each layer below at d times the
    layer above, so the embeddings move least (as in ELECTRA and ULMFiT). The model family says
    which layer a parameter belongs to.
    """
    groups: dict[tuple[float, float], list] = defaultdict(list)
    for name, parameter in model.named_parameters():
        depth, num_layers = model.layer_depth(name)
        scale = layerwise_lr_decay ** (num_layers + 1 - depth)
        decay = 0.0 if no_decay(name, parameter) else weight_decay
        groups[(scale, decay)].append(parameter)
    return [
        {"params": parameters, "lr": learning_rate * scale, "weight_decay": decay}
        for (scale, decay), parameters in sorted(groups.items(), key=lambda item: item[0])
    ]


def warmup_steps(total_steps: int, warmup_steps: int, warmup_ratio: float) -> int:
    """`--warmup_steps`, when given, overrides `--warmup_ratio` (as in the Hugging Face Trainer)."""
    if not warmup_steps:
        return int(round(total_steps * warmup_ratio))
    if warmup_ratio:
        log.info("--warmup_steps %d overrides --warmup_ratio %s", warmup_steps, warmup_ratio)
    return warmup_steps


def build_scheduler(optimizer, name: str, total_steps: int, warmup: int, num_cycles: float):
    if name not in SCHEDULERS:
        raise UserError(f"--scheduler: {name!r} is not one of {', '.join(SCHEDULERS)}")
    from transformers import get_scheduler

    specific = {}
    if name == "cosine":
        specific["num_cycles"] = num_cycles or 0.5  # 0.5: one half wave, from the peak down to zero
    elif name == "cosine_with_restarts":
        specific["num_cycles"] = int(num_cycles) or 1
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps, scheduler_specific_kwargs=specific)
