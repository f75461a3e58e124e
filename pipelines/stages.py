"""One KFP container component per stage, built from the stage function itself.

A component's inputs are its stage's flags, read from the signature of `components.<stage>`:
names, types, defaults and help text. Its command is the stage's own command line,
`python3 -m components.<stage> --flag {{value}} ...`, so the flags come from one place and the
same command runs on a laptop, in `docker run` and as a Kubeflow task. The few flags that name
storage are replaced by typed artifacts (Dataset, Model, Metrics, ...), whose `.path` Kubeflow
fills in, and `--executor_input {{$}}` lets the stage report artifact metadata and output
parameters back.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

from kfp import dsl

from components.lib.cli import EXECUTOR_INPUT_FLAG, set_signature
from components.lib.quality_gate import PASSES_OUTPUT
from components.lib.stage_outputs import (
    BEST_TRIAL_OUTPUT,
    BEST_VALIDATION_VALUE_OUTPUT,
    BEST_VALUE_OUTPUT,
    CONFUSION_MATRIX_ARTIFACT,
    DATA_ARTIFACT,
    DATASET_ARTIFACT,
    DEPLOYMENT_ARTIFACT,
    EVALUATION_ARTIFACT,
    EVALUATION_URI_OUTPUT,
    KFOLD_ARTIFACT,
    METRICS_ARTIFACT,
    MODEL_ARTIFACT,
    MODEL_URI_OUTPUT,
    ONNX_ARTIFACT,
    REGISTERED_OUTPUT,
    REGISTRATION_ARTIFACT,
    REPORT_ARTIFACT,
    ROUND_ARTIFACT,
    SURVIVORS_OUTPUT,
    TOKENIZED_ARTIFACT,
    TOKENIZED_URI_OUTPUT,
    TUNING_ARTIFACT,
    URL_OUTPUT,
    VERSION_OUTPUT,
)

CACHE_SCOPE = "cache_scope"  # every component's input that only the cache key reads (pipelines/parameters.py)

STAGES = ("preprocess", "tokenize", "train", "evaluate", "export", "register")  # the DAG's six, in order
# After register, and only when the pipeline parameter of the same name is true (off by default).
OPTIONAL_STAGES = ("deploy",)
ALL_STAGES = STAGES + OPTIONAL_STAGES

# Each output's name (task.outputs[...] in the DAG, and its folder in a kfp.local run folder) is declared
# once, in components/lib/stage_outputs.py, where the components read it too; pipelines/ imports it from here.


@dataclass(frozen=True)
class ArtifactFlag:
    """A stage flag that Kubeflow fills with an artifact's local path."""

    flag: str
    name: str
    kind: type
    is_output: bool


@dataclass(frozen=True)
class StageInterface:
    artifacts: tuple[ArtifactFlag, ...]
    output_parameters: dict[str, type] = field(default_factory=dict)


def reads(flag: str, name: str, kind: type) -> ArtifactFlag:
    return ArtifactFlag(flag, name, kind, is_output=False)


def writes(flag: str, name: str, kind: type) -> ArtifactFlag:
    return ArtifactFlag(flag, name, kind, is_output=True)


INTERFACES = {
    "preprocess": StageInterface((writes("output_uri", DATASET_ARTIFACT, dsl.Dataset),)),
    "tokenize": StageInterface(
        (reads("data_uri", DATA_ARTIFACT, dsl.Dataset), writes("output_uri", TOKENIZED_ARTIFACT, dsl.Dataset)), {TOKENIZED_URI_OUTPUT: str}
    ),
    # train, evaluate and export take the tokenized data by URI (tokenize's output parameter
    # tokenized_uri) and fetch only the splits they read: the launcher would download the whole
    # Dataset artifact first (backend/src/v2/component/launcher_v2.go, downloadArtifacts), the
    # train split for export and the test split for train.
    "train": StageInterface(
        (writes("output_uri", MODEL_ARTIFACT, dsl.Model),), {BEST_VALIDATION_VALUE_OUTPUT: float, MODEL_URI_OUTPUT: str}
    ),
    # train on several nodes: a TrainJob that writes its model straight to this Model's S3 URI.
    "train_job": StageInterface(
        (writes("output_uri", MODEL_ARTIFACT, dsl.Model),), {BEST_VALIDATION_VALUE_OUTPUT: float, MODEL_URI_OUTPUT: str}
    ),
    "evaluate": StageInterface(
        (
            reads("model_uri", MODEL_ARTIFACT, dsl.Model),
            writes("output_uri", EVALUATION_ARTIFACT, dsl.Artifact),
            writes("report_path", REPORT_ARTIFACT, dsl.HTML),
        ),
        {PASSES_OUTPUT: bool, EVALUATION_URI_OUTPUT: str},
    ),
    "export": StageInterface((reads("model_uri", MODEL_ARTIFACT, dsl.Model), writes("output_uri", ONNX_ARTIFACT, dsl.Model))),
    "kfold_report": StageInterface((writes("report_uri", KFOLD_ARTIFACT, dsl.Artifact),)),
    "select_best": StageInterface(
        (writes("tuning_uri", TUNING_ARTIFACT, dsl.Artifact),), {BEST_VALUE_OUTPUT: float, BEST_TRIAL_OUTPUT: int, MODEL_URI_OUTPUT: str}
    ),
    "select_survivors": StageInterface((writes("round_uri", ROUND_ARTIFACT, dsl.Artifact),), {SURVIVORS_OUTPUT: list}),
    # register takes the model, evaluation and data as URIs (it reads a few small files of each),
    # the ONNX export as the artifact it publishes.
    "register": StageInterface(
        (reads("export_uri", ONNX_ARTIFACT, dsl.Model), writes("output_uri", REGISTRATION_ARTIFACT, dsl.Artifact)),
        {REGISTERED_OUTPUT: bool, VERSION_OUTPUT: str},
    ),
    "deploy": StageInterface((writes("output_uri", DEPLOYMENT_ARTIFACT, dsl.Artifact),), {URL_OUTPUT: str}),
}

# Outputs that no flag names; the stage fills them through the executor output: evaluate's exist
# only as metadata for the KFP UI, and select_best points its Model at the best trial's own folder
# (StageResult.artifact_uris), so the release reads that trial's model and nothing is copied.
FLAGLESS_OUTPUTS = {
    "evaluate": {METRICS_ARTIFACT: dsl.Metrics, CONFUSION_MATRIX_ARTIFACT: dsl.ClassificationMetrics},
    "select_best": {MODEL_ARTIFACT: dsl.Model},
}


def stage_function(stage: str):
    return getattr(importlib.import_module(f"components.{stage}"), stage)


def stage_command(stage: str) -> list[str]:
    # `python3`, not `python`: kfp.local swaps the word python3 for the running interpreter.
    return ["python3", "-m", f"components.{stage}"]


def make_component(stage: str, image: str):
    """The container component for `stage`, running in `image`."""
    function = stage_function(stage)
    interface = INTERFACES[stage]
    signature = inspect.signature(function)
    annotations = inspect.get_annotations(function, eval_str=True)
    by_flag = {artifact.flag: artifact for artifact in interface.artifacts}
    flag_names = [name for name in signature.parameters if name != EXECUTOR_INPUT_FLAG and name not in by_flag]

    parameters = [
        inspect.Parameter(
            artifact.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=(dsl.Output if artifact.is_output else dsl.Input)[artifact.kind],
        )
        for artifact in interface.artifacts
    ]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Output[kind])
        for name, kind in FLAGLESS_OUTPUTS.get(stage, {}).items()
    ]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.OutputPath(kind))
        for name, kind in interface.output_parameters.items()
    ]
    required = [name for name in flag_names if signature.parameters[name].default is inspect.Parameter.empty]
    optional = [name for name in flag_names if name not in required]
    parameters += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotations[name]) for name in required]
    parameters += [
        inspect.Parameter(
            name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotations[name], default=signature.parameters[name].default
        )
        for name in optional
    ]
    # Not a flag: an input the command never reads, there only to enter the task's cache key.
    parameters.append(inspect.Parameter(CACHE_SCOPE, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str, default=""))
    order = [parameter.name for parameter in parameters]

    def container(*values: Any) -> dsl.ContainerSpec:
        given = dict(zip(order, values))
        args: list = []
        for artifact in interface.artifacts:
            args += [f"--{artifact.flag}", given[artifact.name].path]
        for name in flag_names:
            args += [f"--{name}", given[name]]
        args += [f"--{EXECUTOR_INPUT_FLAG}", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]
        return dsl.ContainerSpec(image=image, command=stage_command(stage), args=args)

    container.__name__ = stage
    container.__qualname__ = stage
    container.__doc__ = function.__doc__
    set_signature(container, inspect.Signature(parameters))
    container.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return dsl.container_component(container)


def make_components(cpu_image: str, cuda_image: str) -> dict:
    """Every stage's component; train runs in the CUDA image, the rest in the CPU image."""
    return {stage: make_component(stage, cuda_image if stage == "train" else cpu_image) for stage in INTERFACES}
