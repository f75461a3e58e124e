"""export for `--task causal_lm`: the language model's next-token logits as ONNX, checked against PyTorch.

`model.onnx` takes `input_ids` and `attention_mask` (batch, sequence), both axes dynamic, and gives
`logits` (batch, sequence, vocabulary). It has no KV cache, so it scores text (perplexity) but would
re-read the whole context for every generated token: the folder also keeps the PyTorch weights
(MODEL_WEIGHTS_FILE), which `components.generate` runs with Hugging Face's KV cache.

Parity is judged on the first `parity_rows` test blocks plus the split's last (usually shorter)
block, batched and padded, over real positions only: the largest absolute logit difference, the
share of positions whose most likely next token agrees, and the perplexity from onnxruntime's
logits against PyTorch's. Latency is onnxruntime's at batch 1 over one full block.

Left out, and said so in export_report.json (`not_exported`):
- INT8: dynamic quantization moves logits over the whole vocabulary; whether that costs too much
  needs a judge of its own (perplexity on the test split), which classification's macro-F1 is not;
- TorchScript: tracing Hugging Face GPT-2 with dynamic batch and sequence axes is left out;
- onnxruntime's operator fusion: export runs its optimizer for BERT-style encoders only; the graph is plain.
So export's --quantize_int8, --int8_max_f1_drop, --torchscript and --fuse_for_onnxruntime do nothing here.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from components.lib.cli import StageResult
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import (
    CAUSAL_LM,
    EXPORT_REPORT_FILE,
    MODEL_TYPE_FILE,
    MODEL_WEIGHTS_FILE,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    TOKENIZER_FILES,
    TORCHSCRIPT_FILE,
    require_task,
    split_file,
)
from components.lib.errors import UserError
from components.lib.modelling.language_model import CausalLanguageModel, next_token_loss_sum, predicted_tokens
from components.lib.modelling.onnx_runtime import cpu_session, feeds, latency_ms
from components.lib.modelling.sources import load_tokenizer
from components.lib.modelling.sources import pad_id as pad_token
from components.lib.stage_outputs import ONNX_ARTIFACT
from components.lib.storage.artifacts import made_from, staged_input, staged_output

# float32 rounding differs per position and averages out over the thousands of positions of the
# parity blocks: a faithful export's perplexity differs by about 1e-6 relative.
PERPLEXITY_RTOL = 1e-4
# Logits are (rows, positions, vocabulary): rows per batch are cut so one batch's logits stay
# within this many floats (256 MiB), whatever --batch_size says (GPT-2's 50257 x 1024 is 200 MiB a row).
LOGITS_PER_BATCH = 2**26
NOT_EXPORTED = {
    ONNX_INT8_FILE: "INT8 dynamic quantization of a language model's logits over the whole vocabulary needs its own accuracy"
    " judge (test perplexity), which export does not have yet",
    TORCHSCRIPT_FILE: "TorchScript tracing of Hugging Face GPT-2 with dynamic batch and sequence axes is left out",
}


def export_language_model(
    *,
    model_uri: str,
    data_uri: str,
    output_uri: str,
    opset: int,
    parity_rows: int,
    parity_atol: float,
    min_argmax_agreement: float,
    latency_runs: int,
    batch_size: int,
) -> StageResult:
    """Export a causal LM (train's folder) to ONNX, check it on test blocks, time it; export's flags as export() has them."""
    test_file = split_file(Path(), "test").name
    with staged_input(model_uri) as (model_dir, model_manifest), staged_input(data_uri, only=[test_file]) as (data_dir, data_manifest):
        require_task(data_manifest, CAUSAL_LM, data_uri)
        model = CausalLanguageModel.load(model_dir, model_uri, for_export=True).eval()
        pad_id = pad_token(load_tokenizer(model_uri, str(model_dir)))
        test = TokenizedSplit.load_blocks(data_dir, "test")
        check_vocabulary(test, model.vocab_size, data_uri)
        block_size = int(test.lengths.max())
        with (
            staged_output(output_uri, extra=made_from(model_manifest)) as out,
            tempfile.TemporaryDirectory(prefix="export-") as scratch,
        ):
            exported = Path(scratch) / ONNX_FP32_FILE
            export_lm_onnx(model, test.collate(np.unique([0, len(test) - 1]), pad_id), exported, opset)
            shutil.copyfile(exported, out / ONNX_FP32_FILE)
            session = cpu_session(out / ONNX_FP32_FILE)
            rows = parity_sample(len(test), parity_rows)
            measured = compare_logits(model, session, test, rows, rows_per_batch(batch_size, block_size, model.vocab_size), pad_id)
            parity = check_lm_parity(measured, parity_atol, min_argmax_agreement)
            report = {
                "task": CAUSAL_LM,
                "opset": opset,
                "kv_cache": False,
                "vocab_size": model.vocab_size,
                "block_size": block_size,
                "onnxruntime_fused_operators": {},
                "parity": parity,
                "models": {"fp32": {"file": ONNX_FP32_FILE, "latency": {"batch_1": block_latency(session, test, pad_id, latency_runs)}}},
                "not_exported": NOT_EXPORTED,
            }
            copy_serving_files(model_dir, out, model.config_file)
            (out / EXPORT_REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return stage_result(output_uri, report)


GENERATION_CONFIG_FILE = "generation_config.json"  # what save_pretrained writes beside a causal LM's config


def copy_serving_files(model_dir: Path, out: Path, config_file: str) -> None:
    """The tokenizer, the model type and config, as classification's export copies them (no labels: a vocabulary),
    and the PyTorch weights, for generation with the KV cache (components/generate.py)."""
    for name in (*TOKENIZER_FILES, MODEL_TYPE_FILE, config_file, MODEL_WEIGHTS_FILE, GENERATION_CONFIG_FILE):
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out / name)


def check_vocabulary(split: TokenizedSplit, vocab_size: int, data_uri: str) -> None:
    largest = int(split.token_ids.max(initial=0))
    if largest >= vocab_size:
        raise UserError(f"{data_uri}: holds token id {largest}, beyond the model's {vocab_size} entries; use the data it was trained on")


def export_lm_onnx(model: CausalLanguageModel, example: dict, path: Path, opset: int) -> None:
    """The exporter classification uses (TorchScript-based, pinned), with the sequence axis of the
    logits dynamic too. The tracer's warnings about Python-side branches are silenced, as the parity
    check judges the graph. `example`: the first and the last test block, the last padded where short."""
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example["input_ids"], example["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes},
            opset_version=opset,
            dynamo=False,
        )


def parity_sample(blocks: int, parity_rows: int) -> np.ndarray:
    """The first `parity_rows` blocks and the last one, which is usually short. It goes first, so
    that its batch pads it beside full blocks, as serving a batch would."""
    first = np.arange(min(parity_rows, blocks))
    return np.concatenate([[blocks - 1], first[first != blocks - 1]]).astype(np.int64)


def rows_per_batch(batch_size: int, block_size: int, vocab_size: int) -> int:
    """--batch_size, or fewer rows where a batch's logits would pass LOGITS_PER_BATCH floats."""
    return max(1, min(batch_size, LOGITS_PER_BATCH // (block_size * vocab_size)))


@dataclass
class LogitComparison:
    """PyTorch against onnxruntime over the real (unpadded) positions of some blocks."""

    blocks: int = 0
    positions: int = 0
    agreeing: int = 0  # positions whose most likely next token is the same in both
    max_abs_logit_diff: float = 0.0
    torch_loss_sum: float = 0.0
    onnx_loss_sum: float = 0.0
    predicted: int = 0  # next-token predictions within the blocks

    def add(self, batch: dict, reference: torch.Tensor, exported: torch.Tensor) -> None:
        real = batch["attention_mask"].bool()
        ids, mask = batch["input_ids"], batch["attention_mask"]
        self.blocks += len(ids)
        self.positions += int(real.sum())
        self.agreeing += int((reference.argmax(dim=-1) == exported.argmax(dim=-1))[real].sum())
        self.max_abs_logit_diff = max(self.max_abs_logit_diff, float((reference - exported).abs()[real].max()))
        self.torch_loss_sum += float(next_token_loss_sum(reference, ids, mask))
        self.onnx_loss_sum += float(next_token_loss_sum(exported, ids, mask))
        self.predicted += predicted_tokens(mask.sum(dim=1).tolist())

    def perplexities(self) -> tuple[float, float]:
        if not self.predicted:  # blocks of one token each predict nothing
            return math.nan, math.nan
        return math.exp(self.torch_loss_sum / self.predicted), math.exp(self.onnx_loss_sum / self.predicted)


def compare_logits(model, session, split: TokenizedSplit, rows: np.ndarray, rows_per_batch: int, pad_id: int) -> LogitComparison:
    """Both models over `rows`, batch by batch: a whole sample's logits would not fit in memory."""
    comparison = LogitComparison()
    for start in range(0, len(rows), rows_per_batch):
        batch = split.collate(rows[start : start + rows_per_batch], pad_id)
        with torch.inference_mode():
            reference = model(batch["input_ids"], batch["attention_mask"])
        exported = torch.from_numpy(session.run(["logits"], feeds(batch))[0])
        comparison.add(batch, reference, exported)
    return comparison


def check_lm_parity(measured: LogitComparison, atol: float, min_agreement: float) -> dict:
    """The parity figures; an export whose logits, next-token choices or perplexity stray is refused in one line."""
    agreement = measured.agreeing / measured.positions
    torch_perplexity, onnx_perplexity = measured.perplexities()
    relative = abs(onnx_perplexity / torch_perplexity - 1)
    parity = {
        "blocks": measured.blocks,
        "positions": measured.positions,
        "max_abs_logit_diff": measured.max_abs_logit_diff,
        "argmax_agreement": agreement,
        "atol": atol,
        "min_argmax_agreement": min_agreement,
        "perplexity": {
            "pytorch": torch_perplexity,
            "onnxruntime": onnx_perplexity,
            "relative_difference": relative,
            "rtol": PERPLEXITY_RTOL,
        },
    }
    if measured.max_abs_logit_diff > atol or agreement < min_agreement or relative > PERPLEXITY_RTOL:
        raise UserError(
            f"ONNX parity check failed on {measured.blocks} test blocks ({measured.positions} positions):"
            f" largest logit difference {measured.max_abs_logit_diff:.2e} (allowed {atol:.0e}),"
            f" next-token argmax agreement {agreement:.3f} (needed {min_agreement}),"
            f" perplexity {onnx_perplexity:.4f} against PyTorch's {torch_perplexity:.4f} (relative difference {relative:.1e},"
            f" allowed {PERPLEXITY_RTOL:.0e}); the export is not faithful"
        )
    return parity


def block_latency(session, split: TokenizedSplit, pad_id: int, runs: int) -> dict:
    """onnxruntime's milliseconds for one full block at batch 1, as classification times one request."""
    block = split.collate(np.array([int(np.argmax(split.lengths))]), pad_id)

    def run(batch):
        session.run(["logits"], feeds(batch))

    return {**latency_ms(run, [block] * runs), "tokens": int(block["input_ids"].shape[1])}


def stage_result(output_uri: str, report: dict) -> StageResult:
    parity = report["parity"]
    return StageResult(
        summary={
            "stage": "export",
            "task": CAUSAL_LM,
            "output_uri": output_uri,
            "parity": parity,
            "latency": {name: entry["latency"] for name, entry in report["models"].items()},
        },
        artifact_metadata={
            ONNX_ARTIFACT: {
                "task": CAUSAL_LM,
                "max_abs_logit_diff": parity["max_abs_logit_diff"],
                "argmax_agreement": parity["argmax_agreement"],
                "perplexity": parity["perplexity"]["onnxruntime"],
                "int8_kept": False,
            }
        },
    )
