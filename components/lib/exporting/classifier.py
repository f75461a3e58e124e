"""export for classifiers: ONNX with parity against PyTorch, optional onnxruntime fusion and INT8, TorchScript, latency.

The INT8 model is kept only if its test macro-F1 is within --int8_max_f1_drop of fp32's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.lib.cli import StageResult
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import (
    CALIBRATION_FILE,
    EXPORT_REPORT_FILE,
    MODEL_TYPE_FILE,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    TOKENIZER_FILES,
    TORCHSCRIPT_FILE,
    other_splits,
)
from components.lib.data.labels import LABELS_FILE, read_labels
from components.lib.errors import UserError
from components.lib.modelling.classifier import TextClassifierModel
from components.lib.modelling.families import load_model
from components.lib.modelling.inference import predict_logits
from components.lib.modelling.onnx_runtime import cpu_session, feeds, latency_batches, latency_ms, session_logits
from components.lib.modelling.sources import load_tokenizer
from components.lib.modelling.sources import pad_id as pad_token
from components.lib.reporting.metrics import classification_metrics, headline
from components.lib.stage_flags import ExportFlags, StageUris
from components.lib.stage_outputs import ONNX_ARTIFACT
from components.lib.storage.artifacts import made_from, staged_input, staged_output

log = logging.getLogger("components.export")


def export_classifier(uris: StageUris, flags: ExportFlags) -> StageResult:
    """A classifier's ONNX (fused where the family can), INT8 and TorchScript, each checked against PyTorch."""
    model_uri, data_uri, output_uri = uris.model_uri, uris.data_uri, uris.output_uri
    parity_rows, parity_atol, min_argmax_agreement = flags.parity_rows, flags.parity_atol, flags.min_argmax_agreement
    batch_size, latency_runs = flags.batch_size, flags.latency_runs
    with staged_input(model_uri) as (model_dir, model_manifest), staged_input(data_uri, skip=other_splits("test")) as (data_dir, _):
        label_names = read_labels(model_dir)
        if read_labels(data_dir) != label_names:
            raise UserError(f"{data_uri}: its labels differ from the model's {label_names}; use data from the same preprocess run")
        model = load_model(model_dir, model_uri, for_export=True).eval()
        pad_id = pad_token(load_tokenizer(model_uri, str(model_dir)))
        test = TokenizedSplit.load(data_dir, "test")
        with (
            staged_output(output_uri, extra=made_from(model_manifest)) as out,
            tempfile.TemporaryDirectory(prefix="export-") as scratch,
        ):
            exported = Path(scratch) / "exported.onnx"
            export_onnx(model, test, pad_id, exported, flags.opset)
            fused = model.fuse_onnx_operators(exported, out / ONNX_FP32_FILE) if flags.fuse_for_onnxruntime else {}
            if not fused:
                shutil.copyfile(exported, out / ONNX_FP32_FILE)
            fp32 = cpu_session(out / ONNX_FP32_FILE)
            sample = test.subset(np.arange(min(parity_rows, len(test))))
            reference = predict_logits(model, sample, 32, torch.device("cpu"), pad_id)
            fp32_logits = session_logits(fp32, test, batch_size, pad_id)  # once: its first rows are the parity sample's
            parity = check_parity("ONNX", reference, fp32_logits[: len(sample)], parity_atol, min_argmax_agreement)
            report: dict[str, Any] = {
                "opset": flags.opset,
                "onnxruntime_fused_operators": fused,
                "parity": parity,
                "models": {"fp32": score(ONNX_FP32_FILE, fp32, fp32_logits, test, pad_id, label_names, latency_runs)},
            }
            if flags.quantize_int8:
                quantize(out / ONNX_FP32_FILE, out / ONNX_INT8_FILE, Path(scratch), bool(fused))
                report.update(
                    judge_int8(
                        out / ONNX_INT8_FILE,
                        report["models"]["fp32"],
                        test,
                        pad_id,
                        label_names,
                        batch_size,
                        latency_runs,
                        flags.int8_max_f1_drop,
                    )
                )
                report["models"]["int8"] = report.pop("int8")
            if flags.torchscript:
                export_torchscript(model, test, pad_id, out / TORCHSCRIPT_FILE)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; still the portable format
                    scripted = torch.jit.load(str(out / TORCHSCRIPT_FILE))
                traced_logits = predict_logits(scripted, sample, 32, torch.device("cpu"), pad_id)
                report["torchscript_parity"] = check_parity("TorchScript", reference, traced_logits, parity_atol, min_argmax_agreement)
            for name in (*TOKENIZER_FILES, LABELS_FILE, MODEL_TYPE_FILE, CALIBRATION_FILE, model.config_file):
                if (model_dir / name).is_file():
                    shutil.copyfile(model_dir / name, out / name)
            (out / EXPORT_REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return StageResult(
        summary={
            "stage": "export",
            "output_uri": output_uri,
            "parity": parity,
            "latency": {name: entry["latency"] for name, entry in report["models"].items()},
        },
        artifact_metadata={
            ONNX_ARTIFACT: {
                "max_abs_logit_diff": parity["max_abs_logit_diff"],
                "argmax_agreement": parity["argmax_agreement"],
                "int8_kept": report.get("int8_kept", False),
            }
        },
    )


def export_onnx(model: TextClassifierModel, test: TokenizedSplit, pad_id: int, path: Path, opset: int) -> None:
    """TorchScript exporter, pinned: it needs no onnxscript, and the parity check below guards it.

    Its tracer warns about Python-side branches in the attention code; they are constant for
    this model, and a wrong export would fail the parity check, so the warnings are silenced.
    """
    example = test.collate(np.arange(min(2, len(test))), pad_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_traced(model, example, path, opset)


def export_traced(model: TextClassifierModel, example: dict, path: Path, opset: int) -> None:
    torch.onnx.export(
        model.eval(),
        (example["input_ids"], example["attention_mask"]),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )


def export_torchscript(model: TextClassifierModel, test: TokenizedSplit, pad_id: int, path: Path) -> None:
    """torch.jit.trace, with the tracer's warnings silenced as for ONNX: the parity check judges the result.
    Traced over a padded batch of two rows, so the graph keeps the attention mask's effect. The tracer's
    own check (tracing again and comparing on the same two rows) is off: it repeats the work, and the
    parity check on real test rows is the stronger test."""
    example = test.collate(np.arange(min(2, len(test))), pad_id)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), (example["input_ids"], example["attention_mask"]), check_trace=False)
    traced.save(str(path))


def check_parity(exported: str, torch_logits: np.ndarray, exported_logits: np.ndarray, atol: float, min_agreement: float) -> dict:
    """PyTorch's logits against the exported model's on the same test rows; refuses an unfaithful export."""
    difference = float(np.abs(torch_logits - exported_logits).max())
    agreement = float((torch_logits.argmax(axis=1) == exported_logits.argmax(axis=1)).mean())
    parity = {
        "rows": len(torch_logits),
        "max_abs_logit_diff": difference,
        "argmax_agreement": agreement,
        "atol": atol,
        "min_argmax_agreement": min_agreement,
    }
    if difference > atol or agreement < min_agreement:
        raise UserError(
            f"{exported} parity check failed on {len(torch_logits)} test rows: largest logit difference {difference:.2e}"
            f" (allowed {atol:.0e}), argmax agreement {agreement:.3f} (needed {min_agreement}); the export is not faithful"
        )
    return parity


def quantize(fp32_path: Path, int8_path: Path, scratch: Path, fused: bool) -> None:
    """Dynamic INT8 quantization of the weights, after onnxruntime's quantization pre-processing for a model that
    was not fused. A fused model has been through onnxruntime's graph optimizations already (the transformer
    optimizer runs them first), and quantize_dynamic infers shapes itself: pre-processing would only repeat
    both (on MiniLM: the same graph and the same logits, 1.8 s more), so it is skipped, with its reminder."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = fp32_path
    if not fused:
        source = scratch / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
    # Fused com.microsoft operators have no ONNX type inference; their outputs are float.
    with without_root_warning(PRE_PROCESSING_REMINDER):
        quantize_dynamic(
            str(source), str(int8_path), weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}
        )


PRE_PROCESSING_REMINDER = "Please consider to run pre-processing before quantization"  # onnxruntime's, on the root logger


@contextlib.contextmanager
def without_root_warning(prefix: str) -> Iterator[None]:
    """Drop the root logger's records that start with `prefix` while the block runs."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def judge_int8(
    path: Path, fp32: dict, test: TokenizedSplit, pad_id: int, label_names: list[str], batch_size: int, latency_runs: int, max_drop: float
) -> dict:
    """Score the INT8 model; delete it if it loses more than `max_drop` macro-F1 against fp32."""
    session = cpu_session(path)
    int8 = score(path.name, session, session_logits(session, test, batch_size, pad_id), test, pad_id, label_names, latency_runs)
    drop = round(fp32["test"]["macro_f1"] - int8["test"]["macro_f1"], 4)
    kept = drop <= max_drop
    if not kept:
        log.warning("dropping %s: its test macro-F1 is %.4f below fp32's, more than --int8_max_f1_drop %s", path.name, drop, max_drop)
        path.unlink()
        int8["file"] = None
    return {"int8": int8, "int8_macro_f1_drop": drop, "int8_kept": kept}


def score(file: str, session, logits: np.ndarray, test: TokenizedSplit, pad_id: int, label_names: list[str], latency_runs: int) -> dict:
    """A model's test scores from its logits over the test split, and its latency at batch 1."""
    metrics = classification_metrics(test.gold, logits.argmax(axis=1), label_names)

    def run(batch):
        session.run(["logits"], feeds(batch))

    return {
        "file": file,
        "test": headline(metrics),
        "latency": {"batch_1": latency_ms(run, latency_batches(test, pad_id, 1, latency_runs))},
    }
