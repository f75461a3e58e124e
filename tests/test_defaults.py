"""One set of defaults: the README's stage-by-stage commands train the model `make run` trains.

`make run` takes configs/default.yaml and, for any parameter not there, the pipeline's default
(the stage flag's own, pipelines/parameters.py); a command typed by hand takes its flags and the
stage defaults. Every parameter that changes the model must come out the same both ways.
"""

import inspect
import re
import shlex
from pathlib import Path

import yaml

from pipelines.config import load_config
from pipelines.parameters import exposed_flags, pipeline_parameters
from pipelines.stages import STAGES, stage_function

REPO = Path(__file__).resolve().parent.parent
# Where things are written, how often checkpoints are taken, how many workers pad batches: none of
# them changes the trained model.
NOT_RESULT_AFFECTING = {
    "registry_uri", "checkpoint_root", "checkpoint_every_steps", "num_workers", "model_name", "source_fingerprint",
    "gpu_count", "gpu_node_selector", "gpu_toleration", "s3_secret_name",
}  # fmt: skip


def readme_stage_commands() -> dict[str, dict[str, str]]:
    """{stage: {flag: value}} from the README's `python -m components.<stage> ...` lines."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "README.md").read_text())
    commands = {}
    for line in text.splitlines():
        match = re.match(r"\s*python -m components\.(\w+)\s+(--.*)", line)
        if match and match.group(1) in STAGES:
            words = shlex.split(match.group(2).split("#")[0])
            commands[match.group(1)] = {flag.removeprefix("--"): value for flag, value in zip(words[::2], words[1::2])}
    return commands


def by_hand() -> dict[str, object]:
    """The value of each pipeline parameter in the README's stage-by-stage run."""
    commands = readme_stage_commands()
    assert set(commands) == set(STAGES), f"the README shows commands for {sorted(commands)}, not all six stages"
    values = {}
    for stage in STAGES:
        signature = inspect.signature(stage_function(stage))
        for flag, name in exposed_flags(stage).items():
            given = commands[stage].get(flag)
            values.setdefault(name, signature.parameters[flag].default if given is None else yaml.safe_load(given))
    return values


def by_make_run() -> dict[str, object]:
    config = load_config(str(REPO / "configs" / "default.yaml"))
    defaults = {parameter.name: parameter.default for parameter in pipeline_parameters()[0]}
    return {**defaults, **config.parameters}


def test_the_readme_stage_commands_reproduce_make_run():
    hand, run = by_hand(), by_make_run()
    differing = {name: (hand[name], run[name]) for name in hand if name not in NOT_RESULT_AFFECTING and hand[name] != run[name]}
    assert not differing, f"stage-by-stage value vs make run value: {differing}"
