"""export for multi-label classifiers: exporting/classifier.py's ONNX, fusion, INT8 and TorchScript, judged on what a
multi-label model answers, a probability and a yes/no per label.

Parity: the largest absolute difference between PyTorch's and onnxruntime's probabilities (sigmoids) must be
within --parity_atol, and the share of rows whose whole set of decisions (at the model's thresholds) agrees
at least --min_argmax_agreement. INT8 is kept only if no label's test F1 drops more than --int8_max_f1_drop.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.lib.cli import StageResult
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import (
    EXPORT_REPORT_FILE,
    MODEL_TYPE_FILE,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    THRESHOLDS_FILE,
    TOKENIZER_FILES,
    TORCHSCRIPT_FILE,
    other_splits,
)
from components.lib.data.label_sets import label_names_of, membership
from components.lib.data.labels import LABELS_FILE, read_labels
from components.lib.errors import UserError
from components.lib.exporting.classifier import export_onnx, export_torchscript, log, quantize
from components.lib.modelling.families import load_model
from components.lib.modelling.inference import predict_logits
from components.lib.modelling.onnx_runtime import cpu_session, latency_batches, latency_ms, session_logits
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.modelling.thresholds import read_thresholds, sigmoid
from components.lib.reporting.multilabel_metrics import headline, multilabel_metrics
from components.lib.stage_flags import ExportFlags, StageUris
from components.lib.stage_outputs import ONNX_ARTIFACT
from components.lib.storage.artifacts import made_from, staged_input, staged_output


def export_multilabel(uris: StageUris, flags: ExportFlags) -> StageResult:
    with (
        staged_input(uris.model_uri) as (model_dir, model_manifest),
        staged_input(uris.data_uri, skip=other_splits("test")) as (data_dir, _),
    ):
        names = read_labels(model_dir)
        set_keys = read_labels(data_dir)
        if label_names_of(set_keys) != names:
            raise UserError(f"{uris.data_uri}: its labels differ from the model's {names}; use data from the same preprocess run")
        thresholds = read_thresholds(model_dir, names, uris.model_uri)
        if thresholds is None:
            raise UserError(f"{uris.model_uri}: has no {THRESHOLDS_FILE}; it is not a multi-label model train wrote")
        model = load_model(model_dir, uris.model_uri, for_export=True).eval()
        pad = pad_id(load_tokenizer(uris.model_uri, str(model_dir)))
        test = TokenizedSplit.load(data_dir, "test")
        gold = membership(set_keys, names)[test.labels]
        with (
            staged_output(uris.output_uri, extra=made_from(model_manifest)) as out,
            tempfile.TemporaryDirectory(prefix="export-") as scratch,
        ):
            exported = Path(scratch) / "exported.onnx"
            export_onnx(model, test, pad, exported, flags.opset)
            fused = model.fuse_onnx_operators(exported, out / ONNX_FP32_FILE) if flags.fuse_for_onnxruntime else {}
            if not fused:
                shutil.copyfile(exported, out / ONNX_FP32_FILE)
            fp32 = cpu_session(out / ONNX_FP32_FILE)
            sample = test.subset(np.arange(min(flags.parity_rows, len(test))))
            reference = predict_logits(model, sample, 32, torch.device("cpu"), pad)
            fp32_logits = session_logits(fp32, test, flags.batch_size, pad)
            parity = check_parity("ONNX", reference, fp32_logits[: len(sample)], thresholds, flags)
            models = {"fp32": score(ONNX_FP32_FILE, fp32, fp32_logits, gold, thresholds, names, test, pad, flags.latency_runs)}
            report: dict[str, Any] = {"opset": flags.opset, "onnxruntime_fused_operators": fused, "parity": parity, "models": models}
            if flags.quantize_int8:
                quantize(out / ONNX_FP32_FILE, out / ONNX_INT8_FILE, Path(scratch), bool(fused))
                report.update(judge_int8(out / ONNX_INT8_FILE, models["fp32"], gold, thresholds, names, test, pad, flags))
                models["int8"] = report.pop("int8")
            if flags.torchscript:
                export_torchscript(model, test, pad, out / TORCHSCRIPT_FILE)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; still the portable format
                    scripted = torch.jit.load(str(out / TORCHSCRIPT_FILE))
                traced = predict_logits(scripted, sample, 32, torch.device("cpu"), pad)
                report["torchscript_parity"] = check_parity("TorchScript", reference, traced, thresholds, flags)
            for name in (*TOKENIZER_FILES, LABELS_FILE, MODEL_TYPE_FILE, THRESHOLDS_FILE, model.config_file):
                if (model_dir / name).is_file():
                    shutil.copyfile(model_dir / name, out / name)
            (out / EXPORT_REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return StageResult(
        summary={
            "stage": "export",
            "output_uri": uris.output_uri,
            "parity": parity,
            "latency": {name: entry["latency"] for name, entry in report["models"].items()},
        },  # fmt: skip
        artifact_metadata={
            ONNX_ARTIFACT: {key: parity[key] for key in ("max_abs_probability_diff", "decision_agreement")}
            | {"int8_kept": report.get("int8_kept", False)}
        },  # fmt: skip
    )


def check_parity(exported: str, torch_logits: np.ndarray, exported_logits: np.ndarray, thresholds: np.ndarray, flags: ExportFlags) -> dict:
    """PyTorch's probabilities and decisions against the exported model's on the same test rows."""
    torch_probabilities, exported_probabilities = sigmoid(torch_logits), sigmoid(exported_logits)
    difference = float(np.abs(torch_probabilities - exported_probabilities).max(initial=0.0))
    same = (torch_probabilities >= thresholds) == (exported_probabilities >= thresholds)
    agreement = float(same.all(axis=1).mean()) if len(same) else 1.0
    logit_difference = float(np.abs(torch_logits - exported_logits).max(initial=0.0))
    parity = {"rows": len(torch_logits), "max_abs_probability_diff": difference, "max_abs_logit_diff": logit_difference,
              "decision_agreement": agreement, "atol": flags.parity_atol, "min_agreement": flags.min_argmax_agreement}  # fmt: skip
    if difference > flags.parity_atol or agreement < flags.min_argmax_agreement:
        raise UserError(
            f"{exported} parity check failed on {len(torch_logits)} test rows: largest probability difference {difference:.2e}"
            f" (allowed {flags.parity_atol:.0e}), whole-set decision agreement {agreement:.3f} (needed {flags.min_argmax_agreement});"
            " the export is not faithful"
        )
    return parity


def score(file: str, session, logits: np.ndarray, gold: np.ndarray, thresholds: np.ndarray, names: list[str],
          test: TokenizedSplit, pad: int, latency_runs: int) -> dict:  # fmt: skip
    """A model's test scores from its logits, each label's F1, and its latency at batch 1."""
    metrics = multilabel_metrics(gold, sigmoid(logits), thresholds, names)

    def run(batch):
        session.run(["logits"], {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()})

    return {
        "file": file,
        "test": headline(metrics),
        "per_label_f1": {name: round(entry["f1"], 4) for name, entry in metrics["per_label"].items()},
        "latency": {"batch_1": latency_ms(run, latency_batches(test, pad, 1, latency_runs))},
    }


def judge_int8(path: Path, fp32: dict, gold: np.ndarray, thresholds: np.ndarray, names: list[str],
               test: TokenizedSplit, pad: int, flags: ExportFlags) -> dict:  # fmt: skip
    """Score the INT8 model label by label; delete it if any label's F1 falls more than --int8_max_f1_drop below fp32's."""
    session = cpu_session(path)
    int8 = score(
        path.name, session, session_logits(session, test, flags.batch_size, pad), gold, thresholds, names, test, pad, flags.latency_runs
    )
    drops = {name: round(fp32["per_label_f1"][name] - int8["per_label_f1"][name], 4) for name in names}
    worst = max(drops, key=drops.__getitem__)
    kept = drops[worst] <= flags.int8_max_f1_drop
    if not kept:
        log.warning("dropping %s: label %r's test F1 is %.4f below fp32's, more than --int8_max_f1_drop %s",
                    path.name, worst, drops[worst], flags.int8_max_f1_drop)  # fmt: skip
        path.unlink()
        int8["file"] = None
    return {"int8": int8, "int8_label_f1_drops": drops, "int8_kept": kept}
