"""The model seam holds for a family the code base has never seen: a bag-of-embeddings classifier
declared in this test and registered with one line goes through train, evaluate, export (ONNX and
TorchScript parity), register and predict with no edit in any stage. A stage that still reached for
a Hugging Face attribute (`.base_model`, `.logits`, `.config`), or special-cased a family by name,
fails here."""

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from components.evaluate import evaluate
from components.export import export
from components.lib.data.contract import (
    DECISION_FILE,
    EXPORT_REPORT_FILE,
    METRICS_FILE,
    MODEL_TYPE_FILE,
    MODEL_WEIGHTS_FILE,
    ONNX_FP32_FILE,
)
from components.lib.modelling.classifier import ModelRequest, TextClassifierModel
from components.lib.modelling.families import MODEL_TYPES, load_model
from components.predict import predict
from components.register import register
from components.train import train
from tests.conftest import train_flags, write_parquet


class BagOfEmbeddings(TextClassifierModel):
    """The mean of the real tokens' embeddings, then one linear layer."""

    model_type = "bag"
    config_file = "bag_config.json"

    def __init__(self, vocab_size: int, num_labels: int) -> None:
        super().__init__()
        self.sizes = {"vocab_size": vocab_size, "num_labels": num_labels}
        self.embedding = torch.nn.Embedding(vocab_size, 16)
        self.classifier = torch.nn.Linear(16, num_labels)

    @classmethod
    def create(cls, request: ModelRequest) -> "BagOfEmbeddings":
        return cls(request.vocab_size, len(request.label_names))

    @classmethod
    def load(cls, folder: Path, where: str, for_export: bool = False) -> "BagOfEmbeddings":
        from safetensors.torch import load_model as load_weights

        model = cls(**json.loads((folder / cls.config_file).read_text()))
        load_weights(model, str(folder / MODEL_WEIGHTS_FILE))
        return model

    def save_weights_and_config(self, folder: Path) -> None:
        from safetensors.torch import save_model

        save_model(self, str(folder / MODEL_WEIGHTS_FILE))
        (folder / self.config_file).write_text(json.dumps(self.sizes))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        mean = (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return self.classifier(mean)

    @property
    def num_labels(self) -> int:
        return self.sizes["num_labels"]

    def encoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        yield from self.embedding.parameters()


def test_a_family_declared_here_goes_through_every_stage(prepared_data, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(MODEL_TYPES, BagOfEmbeddings.model_type, BagOfEmbeddings)  # the one registration line
    tokens, root = str(prepared_data[1]), tmp_path
    train(data_uri=tokens, output_uri=str(root / "model"), base_model=str(tiny_model), model_type="bag",
          **train_flags(epochs=3, learning_rate=5e-2, freeze_encoder_epochs=1))  # fmt: skip
    assert json.loads((root / "model" / MODEL_TYPE_FILE).read_text()) == {"model_type": "bag"}
    assert isinstance(load_model(root / "model", "model"), BagOfEmbeddings)

    evaluate(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "evaluation"))
    assert json.loads((root / "evaluation" / METRICS_FILE).read_text())["test"]["macro_f1"] > 0.3

    export(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "onnx"), quantize_int8=False, latency_runs=1)
    report = json.loads((root / "onnx" / EXPORT_REPORT_FILE).read_text())
    assert report["onnxruntime_fused_operators"] == {}  # only transformers fuse
    assert report["parity"]["argmax_agreement"] == 1.0 and report["torchscript_parity"]["argmax_agreement"] == 1.0

    register(export_uri=str(root / "onnx"), evaluation_uri=str(root / "evaluation"), model_uri=str(root / "model"), data_uri=tokens,
             registry_uri=str(root / "registry"), model_name="bag", output_uri=str(root / "decision"), gate_min=0.0)  # fmt: skip
    assert json.loads((root / "decision" / DECISION_FILE).read_text())["registered"]
    assert (root / "registry" / "bag" / "1" / ONNX_FP32_FILE).is_file()

    texts = write_parquet(root / "texts.parquet", [{"text": "great, loved it"}, {"text": "awful, broke at once"}])
    for model_uri in (root / "model", root / "onnx"):  # PyTorch (loaded by its family marker) and ONNX
        predict(input_uri=str(texts), output_uri=str(root / "predicted" / model_uri.name), model_uri=str(model_uri))
        assert (root / "predicted" / model_uri.name / "predictions.parquet").is_file()
