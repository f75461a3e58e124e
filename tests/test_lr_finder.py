"""The learning-rate range test: an exponential sweep, Smith's suggestion, and no trace on training."""

import json

import pytest
import torch
from safetensors.torch import load_file

from components.lib.training.lr_finder import END_LR, START_LR, lr_range_test
from components.train import train
from tests.conftest import train_flags
from tests.test_train import make_tuner


def test_the_range_test_sweeps_exponentially_suggests_a_tenth_of_the_lowest_and_puts_the_model_back(prepared_data, tiny_model, tmp_path):
    tuner = make_tuner(prepared_data, tiny_model, tmp_path)
    before = {name: tensor.clone() for name, tensor in tuner.model.state_dict().items()}
    torch.manual_seed(7)
    expected_next_draw = torch.rand(3)
    torch.manual_seed(7)
    result = lr_range_test(tuner, 60)
    assert torch.equal(torch.rand(3), expected_next_draw)
    assert all(torch.equal(tensor, before[name]) for name, tensor in tuner.model.state_dict().items())
    rates = result.learning_rates
    assert rates[0] == pytest.approx(START_LR) and all(later > earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert rates[1] / rates[0] == pytest.approx((END_LR / START_LR) ** (1 / 59))
    lowest = min(range(len(result.losses)), key=result.losses.__getitem__)
    assert result.suggestion == pytest.approx(rates[lowest] / 10) and result.lowest_loss_at == rates[lowest]


def test_training_after_the_range_test_is_training_at_its_suggestion(prepared_data, tiny_model, tmp_path, caplog):
    """The same weights as a run given the suggested rate by hand: the test leaves nothing behind."""
    tokens = str(prepared_data[1])
    flags = train_flags(epochs=1, learning_rate=1e-4)
    train(data_uri=tokens, output_uri=str(tmp_path / "found"), base_model=str(tiny_model), lr_finder_steps=40, **flags)
    found = json.loads((tmp_path / "found" / "lr_range_test.json").read_text())
    assert (tmp_path / "found" / "lr_range_test.png").stat().st_size > 1000
    assert f"training at the range test's suggestion {found['suggestion']:.2e}, not --learning_rate 0.0001" in caplog.text
    train(
        data_uri=tokens, output_uri=str(tmp_path / "by-hand"), base_model=str(tiny_model), **{**flags, "learning_rate": found["suggestion"]}
    )
    weights, by_hand = load_file(str(tmp_path / "found" / "model.safetensors")), load_file(str(tmp_path / "by-hand" / "model.safetensors"))
    assert all(torch.equal(tensor, by_hand[name]) for name, tensor in weights.items())


def test_the_evaluation_report_shows_the_range_test(prepared_data, tiny_model, tmp_path):
    from components.evaluate import evaluate

    tokens = str(prepared_data[1])
    train(data_uri=tokens, output_uri=str(tmp_path / "model"), base_model=str(tiny_model), lr_finder_steps=20, **train_flags(epochs=1))
    evaluate(model_uri=str(tmp_path / "model"), data_uri=tokens, output_uri=str(tmp_path / "evaluation"))
    assert (tmp_path / "evaluation" / "lr_range_test.png").is_file()
    assert '<img alt="lr_range_test"' in (tmp_path / "evaluation" / "report.html").read_text()
