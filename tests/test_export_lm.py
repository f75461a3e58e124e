"""export on a causal_lm model: next-token logits as ONNX with dynamic axes, checked on real test blocks."""

import copy
import json

import numpy as np
import onnxruntime
import pytest
import torch

from components.export import export
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import CAUSAL_LM, TASK_KEY
from components.lib.errors import UserError
from components.lib.modelling import lm_export
from components.lib.modelling.language_model import CausalLanguageModel, score_blocks
from components.lib.storage.artifacts import read_manifest, staged_output
from tests.conftest import run_module
from tests.test_train_lm import BLOCK_SIZE, WORDS, lm_tokens, trained_lm, write_blocks  # noqa: F401

VOCABULARY = len(WORDS) + 1


@pytest.fixture(scope="module")
def exported_lm(trained_lm, lm_tokens, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("lm-onnx") / "onnx"
    result = export(model_uri=str(trained_lm), data_uri=str(lm_tokens), output_uri=str(out), latency_runs=5)
    return out, result


def test_the_onnx_model_gives_pytorchs_logits_at_other_batch_sizes_and_lengths(exported_lm, trained_lm, lm_tokens):  # noqa: F811
    """Exported from a batch of 2 blocks of 16 tokens; run here at 1 x 5 and at 3 x 11 with a padded row."""
    out, _ = exported_lm
    model = CausalLanguageModel.load(trained_lm, "trained").eval()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    test = TokenizedSplit.load_blocks(lm_tokens, "test")
    short = len(test) - 1
    assert test.lengths[short] < 11  # the padded row of the second batch
    for rows, length in ((np.array([0]), 5), (np.array([1, short, 2]), 11)):
        batch = {name: tensor[:, :length] for name, tensor in test.collate(rows, 0).items()}
        onnx_logits = session.run(["logits"], {name: tensor.numpy() for name, tensor in batch.items()})[0]
        assert onnx_logits.shape == (len(rows), length, VOCABULARY)
        with torch.no_grad():
            torch_logits = model(batch["input_ids"], batch["attention_mask"]).numpy()
        real = batch["attention_mask"].numpy().astype(bool)
        assert np.abs(onnx_logits - torch_logits)[real].max() < 1e-4


def test_the_report_holds_parity_on_real_positions_latency_and_what_was_left_out(exported_lm, trained_lm, lm_tokens):  # noqa: F811
    out, result = exported_lm
    report = json.loads((out / "export_report.json").read_text())
    test = TokenizedSplit.load_blocks(lm_tokens, "test")
    parity = report["parity"]
    # the whole test split (fewer blocks than --parity_rows), short last block included, padding not counted
    assert parity["blocks"] == len(test) and parity["positions"] == int(test.lengths.sum()) < len(test) * BLOCK_SIZE
    assert parity["max_abs_logit_diff"] < 1e-4 and parity["argmax_agreement"] == 1.0
    assert parity["atol"] == 1e-3 and parity["min_argmax_agreement"] == 0.99
    model = CausalLanguageModel.load(trained_lm, "trained")
    expected = score_blocks(model, test, 64, torch.device("cpu"), 0).perplexity
    assert parity["perplexity"]["pytorch"] == pytest.approx(expected, rel=1e-5)
    assert parity["perplexity"]["relative_difference"] < parity["perplexity"]["rtol"] == 1e-4
    assert report["vocab_size"] == VOCABULARY and report["block_size"] == BLOCK_SIZE and report["kv_cache"] is False
    latency = report["models"]["fp32"]["latency"]["batch_1"]
    assert latency["runs"] == 5 and latency["tokens"] == BLOCK_SIZE and 0 < latency["p50_ms"] <= latency["p90_ms"]
    assert set(report["not_exported"]) == {"model.int8.onnx", "model.torchscript.pt"}
    assert "needs its own accuracy judge" in report["not_exported"]["model.int8.onnx"]
    files = {path.name for path in out.iterdir()}
    assert {"model.onnx", "tokenizer.json", "config.json", "model_type.json", "export_report.json"} <= files
    assert not {"model.int8.onnx", "model.torchscript.pt", "labels.json"} & files
    assert read_manifest(str(out))["lineage"][TASK_KEY] == CAUSAL_LM
    assert result.artifact_metadata["onnx"]["task"] == result.summary["task"] == CAUSAL_LM


def test_a_few_parity_rows_still_check_the_short_last_block_padded_beside_full_ones(trained_lm, lm_tokens, tmp_path, monkeypatch):  # noqa: F811
    batches = []
    real_compare = lm_export.LogitComparison.add

    def recorded(self, batch, reference, exported):
        batches.append(batch["attention_mask"].sum(dim=1).tolist())
        real_compare(self, batch, reference, exported)

    monkeypatch.setattr(lm_export.LogitComparison, "add", recorded)
    export(
        model_uri=str(trained_lm), data_uri=str(lm_tokens), output_uri=str(tmp_path / "onnx"), parity_rows=5, latency_runs=1, batch_size=4
    )
    test = TokenizedSplit.load_blocks(lm_tokens, "test")
    last = int(test.lengths[-1])
    assert batches == [[last, BLOCK_SIZE, BLOCK_SIZE, BLOCK_SIZE], [BLOCK_SIZE, BLOCK_SIZE]]
    parity = json.loads((tmp_path / "onnx" / "export_report.json").read_text())["parity"]
    assert parity["blocks"] == 6 and parity["positions"] == 5 * BLOCK_SIZE + last


def test_a_batch_of_logits_stays_within_its_memory_budget():
    assert lm_export.rows_per_batch(64, BLOCK_SIZE, VOCABULARY) == 64
    assert lm_export.rows_per_batch(64, 1024, 50257) == 1  # GPT-2's vocabulary over 1024 positions: 200 MiB a row
    assert lm_export.rows_per_batch(64, 128, 8000) == 64 and lm_export.rows_per_batch(64, 512, 32000) == 4


def test_an_onnx_model_that_does_not_match_pytorch_is_refused_in_one_line(trained_lm, lm_tokens, tmp_path, monkeypatch):  # noqa: F811
    """The exporter is handed a copy of the model whose final LayerNorm bias moved by 0.05."""
    real_export = lm_export.export_lm_onnx

    def export_a_perturbed_copy(model, example, path, opset):
        perturbed = copy.deepcopy(model)
        with torch.no_grad():
            perturbed.network.transformer.ln_f.bias += 0.05
        real_export(perturbed, example, path, opset)

    monkeypatch.setattr(lm_export, "export_lm_onnx", export_a_perturbed_copy)
    with pytest.raises(
        UserError, match=r"^ONNX parity check failed on \d+ test blocks \(\d+ positions\): largest logit difference"
    ) as error:
        export(model_uri=str(trained_lm), data_uri=str(lm_tokens), output_uri=str(tmp_path / "onnx"), latency_runs=1)
    assert "\n" not in str(error.value) and str(error.value).endswith("the export is not faithful")
    assert not (tmp_path / "onnx" / "MANIFEST.json").exists()


FAITHFUL = {
    "blocks": 2,
    "positions": 30,
    "agreeing": 30,
    "max_abs_logit_diff": 1e-5,
    "torch_loss_sum": 28.0,
    "onnx_loss_sum": 28.0001,
    "predicted": 28,
}


@pytest.mark.parametrize(
    ("stray", "message"),
    [
        ({"max_abs_logit_diff": 2e-3}, r"largest logit difference 2\.00e-03 \(allowed 1e-03\)"),
        ({"agreeing": 29}, r"next-token argmax agreement 0\.967 \(needed 0\.99\)"),
        ({"onnx_loss_sum": 28.01}, r"perplexity 2\.7193 against PyTorch's 2\.7183 \(relative difference 3\.6e-04, allowed 1e-04\)"),
    ],
    ids=["logits", "argmax", "perplexity"],
)
def test_each_parity_figure_alone_refuses_an_export(stray, message):
    assert lm_export.check_lm_parity(lm_export.LogitComparison(**FAITHFUL), 1e-3, 0.99)["perplexity"]["relative_difference"] < 1e-5
    with pytest.raises(UserError, match=message):
        lm_export.check_lm_parity(lm_export.LogitComparison(**{**FAITHFUL, **stray}), 1e-3, 0.99)


@pytest.mark.parametrize(
    ("lineage", "largest_id", "message"),
    [
        ({}, 1, r"is sequence_classification data, not causal_lm data"),
        ({TASK_KEY: CAUSAL_LM}, VOCABULARY, rf"holds token id {VOCABULARY}, beyond the model's {VOCABULARY} entries"),
    ],
    ids=["classification-data", "another-vocabulary"],
)
def test_data_the_model_cannot_read_is_refused_in_one_line(lineage, largest_id, message, trained_lm, tmp_path):  # noqa: F811
    data = tmp_path / "tokens"
    with staged_output(str(data), extra={"lineage": lineage}) as out:
        write_blocks(out, "test", [1, 2, 3, largest_id] * 8)
    with pytest.raises(UserError, match=message):
        export(model_uri=str(trained_lm), data_uri=str(data), output_uri=str(tmp_path / "onnx"), latency_runs=1)


def test_the_command_line_fails_with_status_2_and_one_line(trained_lm, lm_tokens, tmp_path):  # noqa: F811
    """No export can agree on more than every position: the check must refuse it through the real CLI."""
    args = ["--model_uri", str(trained_lm), "--data_uri", str(lm_tokens), "--output_uri", str(tmp_path / "onnx")]
    result = run_module("components.export", *args, "--min_argmax_agreement", "1.01", "--latency_runs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # transformers draws a "Loading weights" progress bar on stderr before it; the error is the one last line
    line = result.stderr.strip().split("\n")[-1]
    assert line.startswith("error: ONNX parity check failed on") and "next-token argmax agreement 1.000 (needed 1.01)" in line
