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


def test_the_distillation_loss_is_hintons():
    """alpha x T^2 x KL(teacher || student) at temperature T, plus (1 - alpha) x the gold loss."""
    from components.lib.training.trainer import distillation_loss_sum

    student, teacher = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]), torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 3.0]])
    gold = torch.tensor(7.0)
    soft_student, soft_teacher = torch.softmax(student / 4, dim=1), torch.softmax(teacher / 4, dim=1)
    kl = float((soft_teacher * (soft_teacher.log() - soft_student.log())).sum())
    assert float(distillation_loss_sum(student, teacher, gold, 4.0, 1.0)) == pytest.approx(16 * kl, rel=1e-5)
    assert float(distillation_loss_sum(student, teacher, gold, 4.0, 0.0)) == pytest.approx(7.0)
    assert float(distillation_loss_sum(student, teacher, gold, 2.0, 0.7)) == pytest.approx(
        0.7 * 4 * float((torch.softmax(teacher / 2, 1) * (torch.log_softmax(teacher / 2, 1) - torch.log_softmax(student / 2, 1))).sum())
        + 0.3 * 7.0,
        rel=1e-5,
    )


@pytest.fixture(scope="module")
def contrary_teacher(tmp_path_factory, sample_source, tiny_model) -> Path:
    """A CNN taught that negative texts are positive and positive ones negative."""
    from components.preprocess import preprocess
    from components.tokenize import tokenize
    from tests.conftest import write_parquet

    root = tmp_path_factory.mktemp("contrary")
    swap = {"negative": "positive", "positive": "negative", "neutral": "neutral"}
    for name in ("train", "test"):
        rows = pq_rows(sample_source / f"{name}.parquet")
        write_parquet(root / "source" / f"{name}.parquet", [{**row, "label": swap[row["label"]]} for row in rows])
    preprocess(input_uri=str(root / "source"), output_uri=str(root / "data"))
    tokenize(data_uri=str(root / "data"), output_uri=str(root / "tokens"), base_model=str(tiny_model), max_length=32)
    train(data_uri=str(root / "tokens"), output_uri=str(root / "teacher"), base_model=str(tiny_model), model_type="cnn",
          **train_flags(epochs=4, learning_rate=1e-2))  # fmt: skip
    return root / "teacher"


def pq_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_a_student_with_only_soft_targets_learns_its_teacher_not_the_gold_labels(
    contrary_teacher, prepared_data, tiny_model, tmp_path, monkeypatch
):
    """distill_alpha 1: the gold labels weigh nothing, so the student must side with its contrary
    teacher; and the teacher reads each training row once, not once per epoch."""
    from components.lib.tasks import classification_training as train_stage

    rows_read = []
    real_loader = train_stage.load_text_classifier

    def counting_loader(*args):
        teacher = real_loader(*args)
        real_logits = teacher.logits
        teacher.logits = lambda split, batch_size: rows_read.append(len(split)) or real_logits(split, batch_size)
        return teacher

    monkeypatch.setattr(train_stage, "load_text_classifier", counting_loader)
    tokens = str(prepared_data[1])
    train(data_uri=tokens, output_uri=str(tmp_path / "student"), base_model=str(tiny_model), model_type="cnn", teacher_uri=str(contrary_teacher),
          distill_alpha=1.0, distill_temperature=2.0, **train_flags(epochs=4, learning_rate=1e-2))  # fmt: skip
    assert rows_read == [len(TokenizedSplit.load(prepared_data[1], "train"))]
    test = TokenizedSplit.load(prepared_data[1], "test")
    student = load_model(tmp_path / "student", "student").eval()
    teacher = load_model(contrary_teacher, "teacher").eval()
    batch = test.collate(np.arange(len(test)), 0)
    with torch.no_grad():
        by_student = student(batch["input_ids"], batch["attention_mask"]).argmax(1).numpy()
        by_teacher = teacher(batch["input_ids"], batch["attention_mask"]).argmax(1).numpy()
    assert (by_student == by_teacher).mean() > 0.8 and (by_student == test.labels).mean() < 0.5
    lineage = json.loads((tmp_path / "student" / "MANIFEST.json").read_text())["lineage"]
    assert lineage["teacher"] == str(contrary_teacher) and lineage["model_type"] == "cnn"
