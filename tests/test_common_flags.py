"""The flags several commands take are declared once (components/lib/common_flags.py): every command that
takes one shows the table's help in --help and in the pipeline's parameters, and none restates it."""

import importlib
import inspect

import docstring_parser
import pytest

from components.lib.common_flags import COMMON_FLAGS, GATE_MIN, NO_DEFAULT, takes_common_flags
from pipelines.parameters import pipeline_parameters

COMMANDS = {
    "preprocess": ["preprocess"], "tokenize": ["tokenize"], "train": ["train"], "evaluate": ["evaluate"], "export": ["export"],
    "register": ["register"], "deploy": ["deploy"], "predict": ["predict"], "generate": ["generate"], "serve": ["serve"], "kfold_report": ["kfold_report"],
    "select_best": ["select_best"], "registry": ["list_versions", "models", "show", "fetch", "promote"],
}  # fmt: skip


def commands():
    for module, names in COMMANDS.items():
        for name in names:
            yield f"{module}.{name}", getattr(importlib.import_module(f"components.{module}"), name)


@pytest.mark.parametrize("name, command", list(commands()), ids=[name for name, _ in commands()])
def test_every_command_shows_the_tables_help_and_default_for_the_common_flags_it_takes(name, command):
    described = {item.arg_name: " ".join((item.description or "").split()) for item in docstring_parser.parse(command.__doc__).params}
    parameters = inspect.signature(command).parameters
    taken = [flag for flag in COMMON_FLAGS.values() if flag.name in parameters]
    assert taken, f"{name} takes no common flag (every command takes executor_input or the registry's)"
    for flag in taken:
        assert described.get(flag.name) == flag.help, f"{name} --{flag.name}"
        if flag.default is not NO_DEFAULT and parameters[flag.name].default is not inspect.Parameter.empty:
            assert parameters[flag.name].default == flag.default, f"{name} --{flag.name}"


def test_the_pipeline_parameters_carry_the_tables_help():
    _, help_texts = pipeline_parameters()
    for name in ("base_model", "trust_remote_code", "gate_metric", "max_perplexity", "registry_uri", "model_name", "text_column"):
        assert help_texts[name] == COMMON_FLAGS[name].help, name
    assert help_texts["min_macro_f1"] == GATE_MIN.help  # gate_min, renamed in the pipeline


def test_a_command_that_restates_a_common_flags_help_is_refused_when_declared():
    def restating(*, gate_min: float = 0.0):
        """Do something.

        Args:
          gate_min: my own words.
        """

    with pytest.raises(TypeError, match="documents --gate_min"):
        takes_common_flags(restating)


def test_a_command_that_gives_a_common_flag_another_default_is_refused_when_declared():
    def other_default(*, base_model: str = "bert-base-uncased"):
        """Do something."""

    with pytest.raises(TypeError, match="--base_model defaults to 'bert-base-uncased'"):
        takes_common_flags(other_default)


def test_a_command_with_no_args_section_gets_one():
    def bare(*, registry_uri: str):
        """List things."""

    assert docstring_parser.parse(takes_common_flags(bare).__doc__).params[0].description == COMMON_FLAGS["registry_uri"].help
