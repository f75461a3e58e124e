"""export: the fine-tuned model as ONNX (fp32, and optionally INT8), checked against PyTorch.

    python -m components.export --model_uri runs/x/model --data_uri runs/x/tokens --output_uri runs/x/onnx

Writes `model.onnx` with dynamic batch and sequence axes (TorchScript exporter, opset 17), then:
- parity: PyTorch and onnxruntime logits on real test rows; fails if the largest absolute
  difference exceeds `--parity_atol` or the argmax agreement falls below `--min_argmax_agreement`;
- INT8: dynamic quantization of the weights to `model.int8.onnx` (after onnxruntime's quantization
  pre-processing where the graph was not fused: a fused one has had those passes), kept only if its
  test macro-F1 is within `--int8_max_f1_drop` of fp32;
- both scored on the whole test split, and their onnxruntime CPU latency at batch 1 (one request, as the model
  card reports it; batch throughput is benchmark 3's, which timing here would double the stage for);
- TorchScript (`torch.jit.trace`) beside them, for PyTorch serving, under the same parity check.
The tokenizer, labels.json and the model's config go alongside, so the folder is all serving needs.
Only transformers are fused; every model family exports through the same checks.
What is exported is the task's (read from the model's lineage): a classifier as above
(components/lib/exporting/classifier.py); a causal language model its next-token logits, checked
on test blocks (components/lib/modelling/lm_export.py).
"""

from __future__ import annotations

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import require_output_of
from components.lib.stage_flags import ExportFlags, StageUris
from components.lib.storage.artifacts import read_manifest
from components.lib.tasks import task_for

OPSET = 17


@takes_common_flags
def export(
    *,
    model_uri: str,
    data_uri: str,
    output_uri: str,
    quantize_int8: bool = True,
    torchscript: bool = True,
    fuse_for_onnxruntime: bool = True,
    int8_max_f1_drop: float = 0.02,
    parity_rows: int = 256,
    parity_atol: float = 1e-3,
    min_argmax_agreement: float = 0.99,
    latency_runs: int = 50,
    batch_size: int = 64,
    executor_input: str = "",
) -> StageResult:
    """Export to ONNX, check parity with PyTorch, optionally quantize to INT8, measure latency.

    Args:
      model_uri: Folder (local or s3://) written by train.
      data_uri: Folder (local or s3://) written by tokenize; its test split is used for the checks.
      output_uri: Folder (local or s3://) for the ONNX files, tokenizer, labels and export_report.json.
      quantize_int8: Also write an INT8 (dynamic quantization) model.
      torchscript: Also write a TorchScript model (model.torchscript.pt), checked against PyTorch like the ONNX one.
      fuse_for_onnxruntime: Transformers: fuse attention, LayerNorm and GELU into onnxruntime's own faster operators; false: plain ONNX.
      int8_max_f1_drop: Keep the INT8 model only if its test macro-F1 is at most this far below fp32.
      parity_rows: Test rows used for the PyTorch/onnxruntime parity check.
      parity_atol: Largest absolute logit difference allowed between PyTorch and onnxruntime.
      min_argmax_agreement: Smallest share of rows on which PyTorch and onnxruntime must pick the same class.
      latency_runs: Timed runs per latency figure.
      batch_size: Rows per batch when scoring the test split.
    """
    require_output_of("train", model_uri, "--model_uri")
    require_output_of("tokenize", data_uri, "--data_uri")
    flags = ExportFlags(
        opset=OPSET,
        quantize_int8=quantize_int8,
        torchscript=torchscript,
        fuse_for_onnxruntime=fuse_for_onnxruntime,
        int8_max_f1_drop=int8_max_f1_drop,
        parity_rows=parity_rows,
        parity_atol=parity_atol,
        min_argmax_agreement=min_argmax_agreement,
        latency_runs=latency_runs,
        batch_size=batch_size,
    )
    task = task_for(read_manifest(model_uri), model_uri)
    return task.export(StageUris(model_uri, data_uri, output_uri), flags)


if __name__ == "__main__":
    run_stage(export)
