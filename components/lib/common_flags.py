"""The flags that more than one command takes, each declared once: its help and, where every command
gives it the same one, its default (train's own settings have their table in training/settings.py).

A command names such a flag in its signature with the default from here (`base_model: str =
BASE_MODEL.default`) and leaves it out of its docstring; `takes_common_flags` writes the help into
the docstring's `Args:` section, which is what `--help`, the pipeline's parameter descriptions and
the KFP UI read. It refuses, when the module is imported, a command that restates a common flag's help
or gives it another default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from components.lib.cli import EXECUTOR_INPUT_FLAG

Command = TypeVar("Command", bound=Callable[..., Any])
ARGS_HEADER = "Args:"
ARG_INDENT = "  "  # of an Args entry in a docstring after inspect.cleandoc
NO_DEFAULT = inspect.Parameter.empty  # the commands that take the flag do not share one default


@dataclass(frozen=True)
class CommonFlag:
    name: str
    help: str
    default: Any = NO_DEFAULT


BASE_MODEL = CommonFlag(
    "base_model",
    "Hugging Face Hub id, local or s3:// folder, or bundled://all-MiniLM-L6-v2 (shipped in a package; works offline);"
    " train takes the one tokenize was given.",
    "bundled://all-MiniLM-L6-v2",
)
TRUST_REMOTE_CODE = CommonFlag("trust_remote_code", "Allow code shipped with a hub model to run. Off unless you trust its author.", False)
GATE_METRIC = CommonFlag(
    "gate_metric",
    "Test metric the quality gate holds to --gate_min: macro_f1, accuracy, weighted_f1, micro_f1, ...; empty: the task's own"
    " (macro-F1 for classifiers; a language model's gate is --max_perplexity).",
    "",
)
GATE_MIN = CommonFlag("gate_min", "Refuse to register below this test value of gate_metric.", 0.0)
MAX_PERPLEXITY = CommonFlag("max_perplexity", "causal_lm: refuse to register above this test perplexity; 0: no limit.", 0.0)
REGISTRY_URI = CommonFlag(
    "registry_uri", "Registry root (local folder or s3:// prefix); a model's versions are <registry>/<model_name>/<version>/."
)
MODEL_NAME = CommonFlag("model_name", "Registered model name (letters, digits, '.', '_' and '-'); also its name in serving's URLs.")
VERSION = CommonFlag("version", "A version number or an alias (latest, production, ...).")
TEXT_COLUMN = CommonFlag("text_column", "Name of the column that holds the text.", "text")
DELIMITER = CommonFlag("delimiter", 'Field delimiter for delimited text; default "," for .csv and tab for .tsv.', "")
EXECUTOR_INPUT = CommonFlag(EXECUTOR_INPUT_FLAG, "Set by Kubeflow; leave empty when running by hand.", "")

COMMON_FLAGS = {
    flag.name: flag
    for flag in (BASE_MODEL, TRUST_REMOTE_CODE, GATE_METRIC, GATE_MIN, MAX_PERPLEXITY, REGISTRY_URI, MODEL_NAME, VERSION, TEXT_COLUMN,
                 DELIMITER, EXECUTOR_INPUT)
}  # fmt: skip


def takes_common_flags(command: Command) -> Command:
    """Write the help of the common flags `command` takes into its docstring's Args, after checking
    that it neither restates one nor gives it another default."""
    taken = [COMMON_FLAGS[name] for name in inspect.signature(command).parameters if name in COMMON_FLAGS]
    doc = inspect.cleandoc(command.__doc__ or "")
    for flag in taken:
        if f"\n{ARG_INDENT}{flag.name}:" in doc:
            raise TypeError(f"{command.__qualname__}: documents --{flag.name}, whose help components/lib/common_flags.py declares")
        default = inspect.signature(command).parameters[flag.name].default
        if flag.default is not NO_DEFAULT and default is not inspect.Parameter.empty and default != flag.default:
            raise TypeError(f"{command.__qualname__}: --{flag.name} defaults to {default!r}; common_flags.py declares {flag.default!r}")
    command.__doc__ = with_args(doc, {flag.name: flag.help for flag in taken})
    return command


def with_args(doc: str, help_by_flag: dict[str, str]) -> str:
    """`doc`, cleaned by inspect.cleandoc, with these entries added at the end of its Args section (which
    closes the docstring in every command here), or in a new one."""
    doc = inspect.cleandoc(doc)
    header = [] if f"\n{ARGS_HEADER}\n" in f"{doc}\n" else ["", ARGS_HEADER]
    return "\n".join([doc, *header, *(f"{ARG_INDENT}{name}: {text}" for name, text in help_by_flag.items())])
