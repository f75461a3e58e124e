"""Hugging Face encoders (BERT, DistilBERT, MiniLM, mBERT, ...) with a sequence-classification head.

The folder it saves is a plain Hugging Face one (`save_pretrained`: config.json and
model.safetensors), so `AutoModelForSequenceClassification.from_pretrained` reads it too.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from components.lib.modelling.classifier import ModelRequest, TextClassifierModel
from components.lib.modelling.sources import describe_load_failure

log = logging.getLogger(__name__)
LAYER_PATTERN = re.compile(r"\.layers?\.(\d+)\.")


class HuggingFaceClassifier(TextClassifierModel):
    model_type = "transformer"
    config_file = "config.json"

    def __init__(self, network) -> None:
        super().__init__()
        self.network = network  # an AutoModelForSequenceClassification
        numbered = [int(match.group(1)) for name, _ in network.named_parameters() if (match := LAYER_PATTERN.search(name))]
        self.num_layers = max(numbered) + 1 if numbered else 0

    @classmethod
    def create(cls, request: ModelRequest) -> HuggingFaceClassifier:
        """The base encoder with a new head, one output per label, the labels named in its config."""
        return cls(from_pretrained(request.base_model, request.source, request.label_names, request.trust_remote_code))

    @classmethod
    def load(cls, folder: Path, where: str, for_export: bool = False) -> HuggingFaceClassifier:
        # Eager attention exports as plain MatMul/Softmax, the pattern onnxruntime's fusion recognises.
        return cls(from_pretrained(where, str(folder), None, attn_implementation="eager" if for_export else None))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.network(input_ids=input_ids, attention_mask=attention_mask).logits

    @property
    def num_labels(self) -> int:
        return self.network.config.num_labels

    def encoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.network.base_model.parameters()

    def layer_depth(self, parameter_name: str) -> tuple[int, int]:
        """0 for embeddings, i + 1 for transformer layer i, the number of layers + 1 for the head and pooler."""
        match = LAYER_PATTERN.search(parameter_name)
        if match:
            return int(match.group(1)) + 1, self.num_layers
        return (0 if "embeddings" in parameter_name else self.num_layers + 1), self.num_layers

    def save_weights_and_config(self, folder: Path) -> None:
        self.network.save_pretrained(folder)

    def fuse_onnx_operators(self, source: Path, target: Path) -> dict[str, int]:
        """onnxruntime's transformer optimizer: attention, SkipLayerNorm, BiasGelu and the embedding
        LayerNorm become single com.microsoft operators."""
        optimized = optimize_for_onnxruntime(source, self.network.config)
        fused = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
        if fused:
            optimized.save_model_to_file(str(target))
        else:
            log.warning("onnxruntime's transformer optimizer fused nothing in this model; shipping the plain export")
        return fused


def optimize_for_onnxruntime(source: Path, config):
    from onnxruntime.transformers import optimizer

    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optimizer.optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden)


def from_pretrained(
    spec: str, source: str, label_names: list[str] | None, trust_remote_code: bool = False, attn_implementation: str | None = None
):
    """AutoModelForSequenceClassification from safetensors; with `label_names`, a new head for them."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    labelled = {}
    if label_names is not None:
        labelled = {
            "num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {name: index for index, name in enumerate(label_names)},
        }
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source, use_safetensors=True, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation, **labelled
        )
    except Exception as error:  # transformers raises OSError, ValueError and safetensors errors here
        raise describe_load_failure(spec, "model", error) from None
