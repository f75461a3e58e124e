"""The precision a stage computes in: one rule for train's `--precision auto` and for evaluate's scoring.

bf16 pays where the hardware runs it: on a GPU that has it, and on a CPU with AVX512-BF16 or AMX,
where oneDNN runs bf16 matmuls natively (issue 32 reports such a CPU training faster in bf16 than in
fp32 at the same validation macro-F1; RESULTS.md has no such CPU yet). Elsewhere a CPU emulates bf16,
many times slower than fp32, so `auto` stays in fp32 there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from components.lib.data.contract import TRAIN_SUMMARY_FILE

# oneDNN's own cap on the instructions it may use: capped below AVX512_CORE_BF16 it emulates bf16, as
# on a CPU without it. The test suite sets it so that its figures do not depend on the CI machine's CPU.
ISA_CAP_ENV = "ONEDNN_MAX_CPU_ISA"
ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")  # lowest first
HIGHEST_ISA_WITHOUT_BF16 = ISAS_WITHOUT_BF16[-1]  # a cap that keeps every fp32 kernel and leaves bf16 emulated
TORCH_NAMES = {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
log = logging.getLogger("components.evaluate")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, and oneDNN not capped below them. torch 2.13 has no public probe; these
    private ones are what its own CPU dispatch consults (a torch without them reads as no native bf16)."""
    if os.environ.get(ISA_CAP_ENV, "").upper() in ISAS_WITHOUT_BF16:
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # the autocast dtype; None: fp32, no autocast
    reason: str  # why, in words, for the log, train_summary.json and the model card

    @property
    def name(self) -> str:
        return TORCH_NAMES[self.dtype]

    def record(self) -> dict[str, str]:
        return {"precision": self.name, "reason": self.reason}

    def autocast(self, device: torch.device):
        """A context manager factory for the model's forward passes."""
        if self.dtype is None:
            return contextlib.nullcontext
        return lambda: torch.autocast(device.type, dtype=self.dtype)


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def auto_precision(device: torch.device) -> Precision:
    """bf16 where the device runs it natively; else fp16 with loss scaling on a GPU, fp32 on a CPU."""
    if native_bf16(device):
        where = "this GPU has bf16" if device.type == "cuda" else "this CPU has native bf16 (AVX512-BF16 or AMX)"
        return Precision(torch.bfloat16, f"auto: {where}")
    if device.type == "cuda":
        return Precision(torch.float16, "auto: this GPU has no bf16, so fp16 with loss scaling")
    return Precision(None, "auto: this CPU has no native bf16 (AVX512-BF16 or AMX); emulated bf16 is slower than fp32")


def scoring_precision(trained_in: str, device: torch.device) -> Precision:
    """How evaluate scores a model train wrote in `trained_in` (train_summary.json's precision): in the
    same half precision where this device runs it natively, as auto would choose; else in fp32."""
    if trained_in == "bfloat16" and native_bf16(device):
        return Precision(torch.bfloat16, f"trained in bf16, and {device.type} runs it natively")
    if trained_in == "float16" and device.type == "cuda":
        return Precision(torch.float16, "trained in fp16 on a GPU")
    if trained_in in ("bfloat16", "float16"):
        return Precision(None, f"trained in {trained_in}, which {device.type} here does not run natively")
    return Precision(None, f"trained in {trained_in or 'an unrecorded precision'}")


def scoring_setup(model_dir: Path) -> tuple[torch.device, Precision]:
    """evaluate's device (a GPU where there is one) and its precision for the model train wrote in model_dir, said in one line."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    summary = model_dir / TRAIN_SUMMARY_FILE
    trained_in = json.loads(summary.read_text()).get("precision", "") if summary.is_file() else ""
    precision = scoring_precision(trained_in, device)
    log.info("scoring on %s in %s (%s)", device, precision.name, precision.reason)
    return device, precision
