"""The training loop's small parts: the precision --precision asks for, the dataset of planned batches, the
SIGTERM flag, and Progress, the plain-data part of a checkpoint."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field

import numpy as np
import torch

from components.lib.data.batching import TokenizedSplit
from components.lib.errors import UserError
from components.lib.modelling.precision import Precision, auto_precision, cpu_has_native_bf16

SIGTERM_EXIT_CODE = 143
log = logging.getLogger("components.train")


def training_precision(precision: str, device: torch.device) -> Precision:
    """--precision on this device; `auto` follows modelling/precision.py's rule."""
    if precision == "auto":
        return auto_precision(device)
    if precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16: needs a CUDA GPU; on CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU has no bf16; use fp16 or auto")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("--precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX); it is emulated, many times slower than fp32")
    return Precision({"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision], f"--precision {precision}")


class PlannedBatches(torch.utils.data.Dataset):
    """Map-style dataset whose items are whole, already-planned batches."""

    def __init__(self, split: TokenizedSplit, batches: list[np.ndarray], pad_id: int) -> None:
        self.split, self.batches, self.pad_id = split, batches, pad_id

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.split.collate(self.batches[index], self.pad_id)


class StopRequest:
    """Set by SIGTERM (Kubernetes' notice before it kills a preempted pod); read between steps."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = signal.signal(signal.SIGTERM, self.request)

    def request(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)


@dataclass
class Progress:
    """The plain-data part of a checkpoint: where the run is and what it has seen."""

    global_step: int = 0
    epoch: int = 0
    next_micro_batch: int = 0
    best_value: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    stopped_early: bool = False
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    interval_loss_sum: float = 0.0
    interval_loss_steps: int = 0
    logging_loss_sum: float = 0.0
    logging_loss_steps: int = 0
    history: dict[str, list] = field(default_factory=lambda: {"steps": [], "evaluations": [], "epochs": []})
