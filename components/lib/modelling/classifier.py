"""The model seam: what every model family offers the stages, whatever its architecture.

Train, evaluate, export, predict and register talk only to `TextClassifierModel`: token ids and an
attention mask in, one logit per label out. A family (a Hugging Face encoder, a CNN, ...) is one
subclass in its own module, named in `components/lib/modelling/families.py`. A saved model folder
names its family in MODEL_TYPE_FILE, so later stages load it without being told.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from components.lib.data.contract import MODEL_TYPE_FILE


@dataclass(frozen=True)
class ModelRequest:
    """What train asks of a family for a new model: the base model and the task's labels and vocabulary."""

    base_model: str  # as the user named it, for messages
    source: str  # a local folder or hub id that `from_pretrained` accepts
    label_names: list[str]
    vocab_size: int  # of the tokenizer that tokenize used
    trust_remote_code: bool = False
    pretrained_embeddings: bool = False  # families that learn their own embeddings start from the base model's


class TrainableModel(torch.nn.Module, ABC):
    """What the training loop needs of a model, whatever its task: token ids and an attention mask in,
    logits out; the parameters below its head; each parameter's depth. A classifier family
    (TextClassifierModel) is one, and so is a causal language model (language_model.py)."""

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def encoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        """The parameters below the head: frozen by --freeze_encoder_epochs."""

    def layer_depth(self, parameter_name: str) -> tuple[int, int]:
        """(depth of this parameter, number of layers) for layer-wise LR decay: 0 is the input
        embedding, number of layers + 1 the head. A family without layers puts everything in the head."""
        return 1, 0


class TextClassifierModel(TrainableModel):
    model_type: ClassVar[str]  # the --model_type value that names this family
    config_file: ClassVar[str]  # the file beside the weights that describes the architecture

    @classmethod
    @abstractmethod
    def create(cls, request: ModelRequest) -> TextClassifierModel:
        """A new model for the request's labels, its head (at least) freshly initialised."""

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits, one row per sequence and one column per label."""

    @property
    @abstractmethod
    def num_labels(self) -> int: ...

    @abstractmethod
    def encoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        """The parameters below the classification head: frozen by --freeze_encoder_epochs."""

    @abstractmethod
    def save_weights_and_config(self, folder: Path) -> None:
        """Write the weights (safetensors only) and whatever `load` needs to rebuild the model."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, where: str, for_export: bool = False) -> TextClassifierModel:
        """The model saved in `folder`; `where` names it in error messages."""

    def fuse_onnx_operators(self, source: Path, target: Path) -> dict[str, int]:
        """Rewrite the exported ONNX graph with onnxruntime's fused operators into `target`, and say
        what was fused; empty when the family has nothing to fuse (the plain export ships)."""
        return {}

    def save(self, folder: Path) -> None:
        self.save_weights_and_config(folder)
        (folder / MODEL_TYPE_FILE).write_text(json.dumps({"model_type": self.model_type}) + "\n")


def saved_model_type(folder: Path) -> str:
    """The family a model folder was saved by; folders from before the seam are transformers."""
    marker = folder / MODEL_TYPE_FILE
    return json.loads(marker.read_text())["model_type"] if marker.is_file() else "transformer"
