"""The model families, by `--model_type`. A new family is one module and one line here."""

from __future__ import annotations

from pathlib import Path

from components.lib.errors import UserError
from components.lib.modelling.classifier import TextClassifierModel, saved_model_type
from components.lib.modelling.cnn import CnnClassifier
from components.lib.modelling.huggingface import HuggingFaceClassifier

MODEL_TYPES: dict[str, type[TextClassifierModel]] = {
    HuggingFaceClassifier.model_type: HuggingFaceClassifier,
    CnnClassifier.model_type: CnnClassifier,
}


def family(model_type: str, where: str = "--model_type") -> type[TextClassifierModel]:
    if model_type not in MODEL_TYPES:
        raise UserError(f"{where}: {model_type!r} is not a model type; known: {', '.join(sorted(MODEL_TYPES))}")
    return MODEL_TYPES[model_type]


def load_model(folder: Path, where: str, for_export: bool = False) -> TextClassifierModel:
    """The model train saved in `folder`, of whichever family saved it."""
    return family(saved_model_type(folder), f"{where}: {folder.name}").load(folder, where, for_export)
