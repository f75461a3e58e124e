"""The model seam: every family trains, evaluates, exports (ONNX and TorchScript) and registers
through the same stages; and the CNN's own guarantees."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from components.evaluate import evaluate
from components.export import export
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import MODEL_TYPE_FILE, ONNX_FP32_FILE, TORCHSCRIPT_FILE
from components.lib.modelling.classifier import ModelRequest
from components.lib.modelling.cnn import CnnClassifier
from components.lib.modelling.families import MODEL_TYPES, load_model
from components.lib.training.optim import parameter_groups
from components.register import register
from components.train import train
from tests.conftest import train_flags

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module", params=sorted(MODEL_TYPES))
def released(request, prepared_data, tiny_model, tmp_path_factory) -> tuple[str, Path]:
    """One model of each family, taken through train -> evaluate -> export -> register."""
    model_type, tokens, root = request.param, str(prepared_data[1]), tmp_path_factory.mktemp(request.param)
    flags = train_flags(epochs=4, learning_rate=1e-2 if model_type == "cnn" else 5e-3)
    train(data_uri=tokens, output_uri=str(root / "model"), base_model=str(tiny_model), model_type=model_type, **flags)
    evaluate(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "evaluation"))
    export(model_uri=str(root / "model"), data_uri=tokens, output_uri=str(root / "onnx"), quantize_int8=False, latency_runs=1)
    register(export_uri=str(root / "onnx"), evaluation_uri=str(root / "evaluation"), model_uri=str(root / "model"), data_uri=tokens,
             registry_uri=str(root / "registry"), model_name="reviews", output_uri=str(root / "decision"), gate_min=0.0)  # fmt: skip
    return model_type, root


def test_each_family_goes_through_every_stage_and_is_registered(released):
    model_type, root = released
    assert json.loads((root / "model" / MODEL_TYPE_FILE).read_text()) == {"model_type": model_type}
    assert isinstance(load_model(root / "model", "model"), MODEL_TYPES[model_type])
    report = json.loads((root / "onnx" / "export_report.json").read_text())
    assert report["parity"]["argmax_agreement"] == 1.0 and report["torchscript_parity"]["argmax_agreement"] == 1.0
    decision = json.loads((root / "decision" / "registration.json").read_text())
    assert decision["registered"], decision
    files = {path.name for path in (root / "registry" / "reviews" / "1").iterdir()}
    assert {ONNX_FP32_FILE, TORCHSCRIPT_FILE, MODEL_TYPE_FILE, MODEL_TYPES[model_type].config_file} <= files


def test_each_family_learns_the_sample(released):
    """Far above the majority class (macro-F1 0.167 on three balanced classes)."""
    _, root = released
    assert json.loads((root / "evaluation" / "metrics.json").read_text())["test"]["macro_f1"] > 0.45


def test_the_torchscript_model_answers_like_pytorch_on_new_shapes(released, prepared_data):
    """Traced on a batch of two, the TorchScript file must still follow other batch sizes and lengths."""
    _, root = released
    test = TokenizedSplit.load(prepared_data[1], "test")
    batch = test.collate(np.arange(7), 0)
    eager = load_model(root / "model", "model").eval()
    scripted = torch.jit.load(str(root / "onnx" / TORCHSCRIPT_FILE))
    with torch.no_grad():
        expected, found = eager(batch["input_ids"], batch["attention_mask"]), scripted(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(expected, found, atol=1e-5)


def test_export_without_torchscript_writes_none(prepared_data, tmp_path, released):
    _, root = released
    export(model_uri=str(root / "model"), data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "onnx"),
           quantize_int8=False, torchscript=False, latency_runs=1)  # fmt: skip
    assert not (tmp_path / "onnx" / TORCHSCRIPT_FILE).exists()
    assert "torchscript_parity" not in json.loads((tmp_path / "onnx" / "export_report.json").read_text())


def cnn(vocab_size: int = 50) -> CnnClassifier:
    torch.manual_seed(0)
    return CnnClassifier.create(ModelRequest("base", "base", LABELS, vocab_size)).eval()


def test_cnn_padding_never_changes_a_prediction():
    model = cnn()
    ids = torch.randint(5, 50, (3, 9))
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [1] * 1 + [0] * 8])
    padded_ids, padded_mask = torch.nn.functional.pad(ids, (0, 20)), torch.nn.functional.pad(mask, (0, 20))
    with torch.no_grad():
        assert torch.allclose(model(ids, mask), model(padded_ids, padded_mask), atol=1e-6)
        alone = model(ids[2:3, :1], mask[2:3, :1])  # one token, shorter than every filter
    assert torch.allclose(alone, model(ids, mask)[2:3], atol=1e-6)


def test_cnn_pretrained_embeddings_are_the_base_models(tiny_model):
    request = ModelRequest(str(tiny_model), str(tiny_model), LABELS, vocab_size=80, pretrained_embeddings=True)
    model = CnnClassifier.create(request)
    base = load_file(str(tiny_model / "model.safetensors"))
    expected = next(tensor for name, tensor in base.items() if name.endswith("word_embeddings.weight"))
    assert torch.equal(model.embedding.weight.detach(), expected)
    assert model.config.embedding_dim == expected.shape[1]


def test_cnn_layerwise_decay_puts_embeddings_below_convolutions_below_head():
    model = cnn()
    groups = parameter_groups(model, 1.0, 0.0, 0.5)
    rate = {id(parameter): group["lr"] for group in groups for parameter in group["params"]}
    assert rate[id(model.classifier.weight)] == 1.0
    assert rate[id(model.convolutions[0].weight)] == 0.5
    assert rate[id(model.embedding.weight)] == 0.25


def test_an_unknown_model_type_is_refused_before_any_work(prepared_data, tmp_path, tiny_model):
    from components.lib.errors import UserError

    with pytest.raises(UserError, match=r"--model_type: 'rnn' is not a model type; known: cnn, transformer"):
        train(data_uri=str(prepared_data[1]), output_uri=str(tmp_path / "m"), base_model=str(tiny_model), model_type="rnn", **train_flags())
    assert not (tmp_path / "m").exists()
