"""Every stage's command line: an unknown or short flag is refused before any work starts, `--help`
lists every flag in full, and a committed output is replaced only when asked."""

import json
import shlex

import pytest

from components.lib.storage.artifacts import read_manifest, staged_output
from pipelines.stages import ALL_STAGES
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


def test_a_flag_with_no_near_name_is_refused_without_a_stray_separator(prepared_data, tmp_path):
    result = run_module("components.tokenize", "--data_uri", str(prepared_data[0]), "--output_uri", str(tmp_path / "tokens"), "--zzzz", "1")
    line = "error: --zzzz: components.tokenize has no such flag (python -m components.tokenize --help lists them)"
    assert_refused_before_work(result, line, tmp_path / "tokens")


def test_a_missing_required_flag_is_one_line_not_fires_usage_screen(tmp_path):
    result = run_module("components.tokenize", "--output_uri", str(tmp_path / "tokens"))
    line = "error: components.tokenize needs --data_uri; python -m components.tokenize --help lists its flags"
    assert_refused_before_work(result, line, tmp_path / "tokens")


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


@pytest.mark.parametrize("help_word", ["--help", "-h"])
def test_help_shows_every_flag_with_its_full_default_and_help_text(help_word):
    import inspect

    from components.train import train

    result = run_module("components.train", help_word)
    assert result.returncode == 0, result.stderr
    assert "  --base_model TEXT (default: bundled://all-MiniLM-L6-v2)\n" in result.stdout  # Fire cut it to 'bundled://all-MiniLM-L...
    assert "  --data_uri TEXT (required)\n      Folder (local or s3://) written by tokenize.\n" in result.stdout
    for name in inspect.signature(train).parameters:
        assert f"\n  --{name} " in result.stdout
    assert "-d, --data_uri" not in result.stdout  # Fire offered short flags that are refused


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_every_stage_help_is_its_signature_and_docstring(stage):
    import inspect

    import fire.docstrings

    from components.lib.cli import command_help, typed_command
    from pipelines.stages import stage_function

    function = stage_function(stage)
    text = command_help(typed_command(function), f"components.{stage}")
    described = {arg.name: arg.description for arg in fire.docstrings.parse(function.__doc__).args}
    for name, parameter in inspect.signature(function).parameters.items():
        default = "required" if parameter.default is parameter.empty else f"default: {as_typed(parameter.default)}"
        assert f"\n  --{name} " in text and f" ({default})\n      {described[name]}" in text
    assert "\n  --overwrite true|false (default: false)\n      Replace a committed output" in text


def test_registry_help_lists_its_commands_and_each_commands_flags():
    group = run_module("components.registry", "--help")
    assert group.returncode == 0 and "\n  fetch    Copy a version to a local folder" in group.stdout
    fetch = run_module("components.registry", "fetch", "-h")
    assert fetch.returncode == 0 and "\n  --destination TEXT (required)\n      Local folder to copy the version into." in fetch.stdout
    assert "--overwrite" not in fetch.stdout  # only a stage with an --output_uri has it


def as_typed(default) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    return shlex.quote(default) if isinstance(default, str) else str(default)  # as typed on a command line: '' and '|' quoted


@pytest.fixture
def committed_output(tmp_path):
    """An --output_uri where an earlier run committed its output."""
    with staged_output(str(tmp_path / "out")) as folder:
        (folder / "earlier.txt").write_text("the earlier run's output")
    return tmp_path / "out"


def preprocess_into(output, sample_source, *extra: str):
    return run_module("components.preprocess", "--input_uri", str(sample_source), "--output_uri", str(output), *extra)


def test_a_committed_output_is_refused_before_any_work(committed_output, sample_source):
    result = preprocess_into(committed_output, sample_source)
    assert result.returncode == 2, result.stdout + result.stderr
    line = f"error: --output_uri {committed_output}: already holds a committed output (MANIFEST.json); pass --overwrite to replace it, or choose another folder"
    assert result.stderr.strip().splitlines() == [line]
    assert set(read_manifest(str(committed_output))["files"]) == {"earlier.txt"}  # untouched


@pytest.mark.parametrize("how", ["--overwrite", "--executor_input"])
def test_overwrite_or_a_pipeline_task_replaces_a_committed_output(how, committed_output, sample_source, tmp_path):
    """A Kubeflow task's output path is its own; a retried kfp.local task may find its earlier output."""
    executor_input = json.dumps({"outputs": {"outputFile": str(tmp_path / "executor_output.json")}})
    extra = ["--overwrite"] if how == "--overwrite" else ["--executor_input", executor_input]
    result = preprocess_into(committed_output, sample_source, *extra)
    assert result.returncode == 0, result.stderr
    assert "earlier.txt" not in read_manifest(str(committed_output))["files"]
    assert not (committed_output / "earlier.txt").exists()


def test_a_credential_in_a_flag_is_refused_before_any_work(sample_source, tmp_path):
    """Flag values go into manifests, model cards, logs and tracking: a password in one never gets there."""
    result = run_module("components.tokenize", "--data_uri", str(sample_source), "--output_uri", str(tmp_path / "tokens"),
                        "--base_model", "https://someone:s3cret-pass@models.example.com/bert")  # fmt: skip
    assert result.returncode == 2 and not (tmp_path / "tokens").exists()
    assert result.stderr.strip().splitlines() == [
        "error: --base_model: holds a URL with a password in it, which would be written to manifests, model cards, logs and"
        " tracking; give the service its credentials through its own environment variables or a Secret"
    ]
    assert "s3cret-pass" not in result.stdout + result.stderr


def test_fires_own_flags_after_a_double_dash_are_not_checked_but_the_required_ones_still_are():
    from components.lib.cli import check_flags
    from components.lib.errors import UserError
    from components.tokenize import tokenize

    check_flags(["--data_uri", "d", "--output_uri", "o", "--", "--trace"], tokenize, "components.tokenize")
    with pytest.raises(UserError, match="components.tokenize needs --data_uri, --output_uri"):
        check_flags(["--", "--trace"], tokenize, "components.tokenize")
