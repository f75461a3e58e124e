"""`--precision auto`: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX), fp32 on one without; evaluate
scores a bf16-trained model in bf16 where the CPU runs it natively. The CPU's flags are faked."""

import json

import pytest
import torch

from components.lib.modelling.precision import ISA_CAP_ENV, scoring_precision
from components.lib.training.trainer import training_precision
from components.train import train
from tests.conftest import scored_with_and_without_native_bf16, train_flags

CPU = torch.device("cpu")
NO_NATIVE_BF16 = "--precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX); it is emulated, many times slower than fp32"


@pytest.mark.parametrize("avx512_bf16, amx", [(True, False), (False, True), (False, False)])
def test_auto_is_bf16_exactly_where_the_cpu_has_native_bf16(avx512_bf16, amx, cpu_flags, caplog):
    cpu_flags(avx512_bf16, amx)
    native = avx512_bf16 or amx
    auto = training_precision("auto", CPU)
    assert auto.dtype == (torch.bfloat16 if native else None)
    assert auto.reason == (
        "auto: this CPU has native bf16 (AVX512-BF16 or AMX)"
        if native
        else "auto: this CPU has no native bf16 (AVX512-BF16 or AMX); emulated bf16 is slower than fp32"
    )
    assert training_precision("fp32", CPU).dtype is None
    assert training_precision("bf16", CPU).dtype == torch.bfloat16
    warned = [record.message for record in caplog.records if "no native bf16" in record.message]
    assert warned == ([] if native else [NO_NATIVE_BF16])


def test_onednn_capped_below_bf16_counts_as_no_native_bf16(cpu_flags, monkeypatch):
    cpu_flags(avx512_bf16=True, amx=True)
    monkeypatch.setenv(ISA_CAP_ENV, "avx2")
    assert training_precision("auto", CPU).dtype is None
    monkeypatch.setenv(ISA_CAP_ENV, "AVX512_CORE_AMX")
    assert training_precision("auto", CPU).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "trained_in, native, scored_in",
    [("bfloat16", True, torch.bfloat16), ("bfloat16", False, None), ("float32", True, None), ("float16", True, None), ("", True, None)],
)
def test_evaluate_scores_in_bf16_only_a_bf16_model_on_a_cpu_with_native_bf16(trained_in, native, scored_in, cpu_flags):
    cpu_flags(avx512_bf16=native)
    assert scoring_precision(trained_in, CPU).dtype == scored_in


@pytest.fixture(scope="module")
def trained_with_native_bf16(tmp_path_factory, prepared_data, tiny_model):
    """A model trained with precision auto while the CPU reads as having AVX512-BF16."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv(ISA_CAP_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    try:
        out = tmp_path_factory.mktemp("auto-bf16") / "model"
        train(data_uri=str(prepared_data[1]), output_uri=str(out), base_model=str(tiny_model), **train_flags(epochs=1))
    finally:
        monkeypatch.undo()
    return out


def test_auto_on_a_native_bf16_cpu_trains_in_bf16_and_records_why(trained_with_native_bf16, prepared_data, tiny_model, tmp_path):
    summary = json.loads((trained_with_native_bf16 / "train_summary.json").read_text())
    assert (summary["precision"], summary["precision_reason"]) == ("bfloat16", "auto: this CPU has native bf16 (AVX512-BF16 or AMX)")
    fp32 = tmp_path / "fp32"
    train(data_uri=str(prepared_data[1]), output_uri=str(fp32), base_model=str(tiny_model), **train_flags(epochs=1))
    assert json.loads((fp32 / "train_summary.json").read_text())["precision"] == "float32"  # the suite's cap: no native bf16
    bf16_weights = (trained_with_native_bf16 / "model.safetensors").read_bytes()
    assert bf16_weights != (fp32 / "model.safetensors").read_bytes()  # autocast really ran


def test_evaluate_scores_a_bf16_model_in_bf16_on_a_native_cpu_and_in_fp32_elsewhere(trained_with_native_bf16, prepared_data, cpu_flags,
                                                                                    tmp_path):  # fmt: skip
    scored = scored_with_and_without_native_bf16(trained_with_native_bf16, prepared_data[1], tmp_path, cpu_flags, "loss")
    assert set(scored) == {"bfloat16", "float32"}
    assert scored["bfloat16"] != scored["float32"]  # the autocast really ran
    assert scored["bfloat16"] == pytest.approx(scored["float32"], rel=0.05)
