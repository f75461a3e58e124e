"""Every stage's command line: an unknown or short flag is refused before any work starts."""

import pytest

from tests.conftest import run_module


def assert_refused_before_work(result, line: str, output) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [line], result.stderr
    assert not output.exists()  # nothing was written: the stage never started


def test_a_mistyped_flag_is_refused_with_the_nearest_name(prepared_data, tiny_model, tmp_path):
    result = run_module("components.train", "--data_uri", str(prepared_data[1]), "--output_uri", str(tmp_path / "model"),
                        "--base_model", str(tiny_model), "--max_steps", "2", "--lerning_rate", "1e-4")  # fmt: skip
    line = "error: --lerning_rate: components.train has no such flag; did you mean --learning_rate? (python -m components.train --help lists them)"
    assert_refused_before_work(result, line, tmp_path / "model")


@pytest.mark.parametrize("flag", ["-o", "-d"])
def test_short_flags_are_refused(flag, prepared_data, tmp_path):
    result = run_module("components.tokenize", "--data_uri", str(prepared_data[0]), flag, str(tmp_path / "tokens"))
    line = f"error: {flag}: short flags are not accepted; give the full name (python -m components.tokenize --help lists them)"
    assert_refused_before_work(result, line, tmp_path / "tokens")


def test_a_subcommands_flags_are_its_own(tmp_path):
    result = run_module("components.registry", "fetch", "--registry_uri", str(tmp_path / "registry"), "--model_name", "m",
                        "--destinaton", str(tmp_path / "out"))  # fmt: skip
    line = "error: --destinaton: components.registry fetch has no such flag; did you mean --destination? (python -m components.registry fetch --help lists them)"
    assert_refused_before_work(result, line, tmp_path / "out")


def test_negative_numbers_hyphenated_names_and_fire_flags_pass_the_check(prepared_data, tiny_model, tmp_path):
    result = run_module("components.train", "--data_uri", str(prepared_data[1]), "--output_uri", str(tmp_path / "model"),
                        "--base_model", str(tiny_model), "--max-steps", "2", "--learning_rate", "-1e-4", "--", "--help")  # fmt: skip
    assert "has no such flag" not in result.stderr and "short flags" not in result.stderr
