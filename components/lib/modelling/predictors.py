"""A model folder of any kind as a TextClassifier: export's ONNX output (or a registered version),
else train's PyTorch output. Used by predict, and by train for a distillation teacher."""

from __future__ import annotations

from pathlib import Path

from components.lib.data.contract import MODEL_WEIGHTS_FILE, ONNX_FP32_FILE
from components.lib.errors import UserError
from components.lib.modelling.inference import TextClassifier, torch_text_classifier
from components.lib.modelling.onnx_runtime import onnx_text_classifier


def load_text_classifier(folder: Path, manifest: dict, where: str) -> TextClassifier:
    if (folder / ONNX_FP32_FILE).is_file():
        return onnx_text_classifier(folder, manifest, where, ONNX_FP32_FILE)
    if (folder / MODEL_WEIGHTS_FILE).is_file():
        return torch_text_classifier(folder, manifest, where)
    raise UserError(
        f"{where}: holds neither {ONNX_FP32_FILE} (export's output) nor {MODEL_WEIGHTS_FILE} (train's output); pass a model folder"
    )
