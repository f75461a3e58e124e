"""A Kim-style CNN text classifier (Kim 2014, "Convolutional Neural Networks for Sentence
Classification"): embeddings of the base model's token ids, 100 filters each of widths 3, 4 and 5,
ReLU, max over time, dropout 0.5, one linear layer. A cheap baseline for the transformers to beat,
and a fast student for distillation.

The embeddings start random (128 wide) or, with `--cnn_pretrained_embeddings`, as a copy of the
base model's input embeddings (as wide as the base model). Padding never changes a prediction: padded
positions are zeroed, and a window that covers no real token is left out of the max.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from components.lib.data.contract import MODEL_WEIGHTS_FILE
from components.lib.errors import UserError
from components.lib.modelling.classifier import ModelRequest, TextClassifierModel
from components.lib.modelling.sources import describe_load_failure

CONFIG_FILE = "cnn_config.json"


@dataclass(frozen=True)
class CnnConfig:
    vocab_size: int
    num_labels: int
    embedding_dim: int = 128
    filters: int = 100
    widths: tuple[int, ...] = (3, 4, 5)
    dropout: float = 0.5


class CnnClassifier(TextClassifierModel):
    model_type = "cnn"
    config_file = CONFIG_FILE

    def __init__(self, config: CnnConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = torch.nn.Embedding(config.vocab_size, config.embedding_dim)
        # Full convolution (padding width - 1 on both sides), so a text shorter than a filter still has windows.
        self.convolutions = torch.nn.ModuleList(
            torch.nn.Conv1d(config.embedding_dim, config.filters, width, padding=width - 1) for width in config.widths
        )
        self.dropout = torch.nn.Dropout(config.dropout)
        self.classifier = torch.nn.Linear(config.filters * len(config.widths), config.num_labels)

    @classmethod
    def create(cls, request: ModelRequest) -> CnnClassifier:
        labels = len(request.label_names)
        if not request.pretrained_embeddings:
            return cls(CnnConfig(vocab_size=request.vocab_size, num_labels=labels))
        embeddings = base_input_embeddings(request.base_model, request.source)
        if embeddings.shape[0] < request.vocab_size:
            raise UserError(
                f"{request.base_model}: its input embeddings have {embeddings.shape[0]} rows, fewer than the tokenizer's"
                f" {request.vocab_size} ids; --cnn_pretrained_embeddings needs the base model the data was tokenized for"
            )
        model = cls(CnnConfig(vocab_size=embeddings.shape[0], num_labels=labels, embedding_dim=embeddings.shape[1]))
        with torch.no_grad():
            model.embedding.weight.copy_(embeddings)
        return model

    @classmethod
    def load(cls, folder: Path, where: str, for_export: bool = False) -> CnnClassifier:
        from safetensors.torch import load_model

        try:
            fields = json.loads((folder / CONFIG_FILE).read_text())
            model = cls(CnnConfig(**{**fields, "widths": tuple(fields["widths"])}))
            load_model(model, str(folder / MODEL_WEIGHTS_FILE))
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
            raise describe_load_failure(where, "CNN model", error) from None
        return model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(1).to(self.embedding.weight.dtype)  # (batch, 1, length)
        embedded = self.embedding(input_ids).transpose(1, 2) * mask  # (batch, dim, length), padding zeroed
        lengths = attention_mask.sum(dim=1, keepdim=True)  # real tokens per row (padding is on the right)
        pooled = []
        for convolution, width in zip(self.convolutions, self.config.widths, strict=True):
            activations = torch.relu(convolution(embedded))  # (batch, filters, length + width - 1)
            # Window j covers positions j - width + 1 .. j: it sees a real token when j < length + width - 1.
            positions = torch.arange(activations.shape[-1], device=activations.device).unsqueeze(0)
            covers_text = (positions < lengths + width - 1).unsqueeze(1).to(activations.dtype)
            pooled.append((activations * covers_text).amax(dim=-1))  # ReLU >= 0, so zeroed windows never win
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def encoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        yield from self.embedding.parameters()
        yield from self.convolutions.parameters()

    def layer_depth(self, parameter_name: str) -> tuple[int, int]:
        """Embeddings, then the convolutions as one layer, then the head."""
        if parameter_name.startswith("embedding."):
            return 0, 1
        return (1 if parameter_name.startswith("convolutions.") else 2), 1

    def save_weights_and_config(self, folder: Path) -> None:
        from safetensors.torch import save_model

        save_model(self, str(folder / MODEL_WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")


def base_input_embeddings(spec: str, source: str) -> torch.Tensor:
    """The base model's input embedding matrix (vocabulary x hidden size), from safetensors."""
    from transformers import AutoModel

    try:
        base = AutoModel.from_pretrained(source, use_safetensors=True)
    except Exception as error:  # transformers raises OSError, ValueError and safetensors errors here
        raise describe_load_failure(spec, "model", error) from None
    return base.get_input_embeddings().weight.detach().clone()
