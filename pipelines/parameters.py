"""The pipelines' runtime parameters, derived from the stages' own flags.

Every flag of a stage is a pipeline parameter, with the flag's name, type, default and help text,
except the flags the DAG fills itself (artifact paths, the run id, GPU count). A few are renamed
where the pipeline reads better (`input_uri` is `source_uri`), a few defaults differ on a cluster
(DataLoader workers, checkpoints), and a few parameters belong to the DAG alone (GPU placement, the
S3 Secret, whether to deploy). So a new stage flag becomes a pipeline parameter, and a config key, with no other edit.
"""

import hashlib
import inspect
import json

import docstring_parser

from components.lib.cli import EXECUTOR_INPUT_FLAG
from components.lib.runtime import S3_SECRET_NAME
from components.lib.tasks import all_gates
from components.lib.training.settings import PAUSE_FLAG
from pipelines.stages import ALL_STAGES, CACHE_SCOPE, stage_function

FILLED_BY_THE_DAG = {
    "preprocess": {"output_uri"},
    "tokenize": {"data_uri", "output_uri", "batch_size", "num_folds", "fold", "fold_seed"},
    "train": {"data_uri", "output_uri", "checkpoint_uri", "run_id", "trial", "processes", "expected_gpus", PAUSE_FLAG},
    "evaluate": {"model_uri", "data_uri", "output_uri", "report_path", "batch_size"},
    "export": {"model_uri", "data_uri", "output_uri", "parity_rows", "min_argmax_agreement", "latency_runs", "batch_size"},
    "register": {"export_uri", "evaluation_uri", "model_uri", "data_uri", "output_uri"},
    "deploy": {"version", "image", "image_pull_secrets", "output_uri", "s3_secret_name"},
}
# Flags of a stage that are pipeline parameters under a prefix: deploy's --namespace or --cpu would
# read as the whole run's. Flags shared with another stage (the registry, the model name) keep theirs.
PREFIXED = {"deploy": "serving_"}
SHARED_FLAGS = {"registry_uri", "model_name"}
RENAMED = {
    ("preprocess", "input_uri"): "source_uri",
    ("preprocess", "expected_source_fingerprint"): "source_fingerprint",
    ("preprocess", "seed"): "split_seed",
    **{(stage, gate.flag): gate.parameter for gate in all_gates() for stage in ("evaluate", "register") if gate.flag != gate.parameter},
}
CLUSTER_DEFAULTS = {"num_workers": 2, "checkpoint_every_steps": 200}
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
DAG_PARAMETERS = [
    (
        "checkpoint_root",
        str,
        inspect.Parameter.empty,
        "Prefix for training checkpoints; a run checkpoints under <checkpoint_root>/<run id>.",
    ),
    # A STRING: the KFP driver reads pod-spec fields bound to runtime parameters with GetStringValue()
    # (backend/src/v2/driver/resolve.go, resolvePodSpecInputRuntimeParameter); a number reads as ""
    # and the GPU limit is silently dropped. pipelines/lint.py checks every such binding.
    ("gpu_count", str, "1", "GPUs for the train task (a whole number, as text); train starts one process per visible GPU."),
    ("gpu_node_selector", dict, GPU_NODE_SELECTOR, "Node selector of the train task."),
    ("gpu_toleration", dict, GPU_TOLERATION, "Toleration of the train task (a Kubernetes toleration object)."),
    (
        "deploy",
        bool,
        False,
        "After register, serve the new version on KServe (components/deploy.py): a canary beside the version that serves.",
    ),
    (
        "s3_secret_name",
        str,
        S3_SECRET_NAME,
        "Kubernetes Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, if any) for every task.",
    ),
]
# Every task's cache key holds this (pipelines/stages.py gives every component the input): the KFP
# cache key leaves out the pipeline root, the S3 endpoint and Secret (backend/src/v2/cacheutils/cache.go,
# GenerateCacheKey), so without it a run against another store could reuse outputs that live in the old one.
DAG_PARAMETERS.append(
    (CACHE_SCOPE, str, "", "The store the run's outputs live in, as a digest; set by make pipeline-submit (store_scope), not by hand.")
)


def store_scope(pipeline_root: str, s3_endpoint: str, s3_secret_name: str) -> str:
    """A short digest naming the store a run writes to: its pipeline root, S3 endpoint and credentials' Secret."""
    return hashlib.sha256(json.dumps([pipeline_root, s3_endpoint, s3_secret_name]).encode()).hexdigest()[:16]


# Parameters that name a Kubernetes object: the KFP driver refuses an empty one (resolve.go,
# resolveInputParameterStr) and fails the task, so submit refuses it first.
KUBERNETES_NAME_PARAMETERS = ("s3_secret_name",)


def exposed_flags(stage: str) -> dict[str, str]:
    """{flag: pipeline parameter name} for the flags of `stage` that are pipeline parameters."""
    hidden = FILLED_BY_THE_DAG.get(stage, set()) | {EXECUTOR_INPUT_FLAG}
    prefix = PREFIXED.get(stage, "")
    return {
        flag: RENAMED.get((stage, flag), flag if flag in SHARED_FLAGS else prefix + flag)
        for flag in inspect.signature(stage_function(stage)).parameters
        if flag not in hidden
    }


def arguments_for(stage: str, given: dict) -> dict:
    """The task arguments of `stage` taken from the pipeline's parameter values."""
    return {flag: given[name] for flag, name in exposed_flags(stage).items()}


def pipeline_parameters() -> tuple[list[inspect.Parameter], dict[str, str]]:
    """The parameters (required first) and their help texts, from the six stages and the DAG."""
    found: dict[str, inspect.Parameter] = {}
    help_texts: dict[str, str] = {}
    for stage in ALL_STAGES:
        function = stage_function(stage)
        signature = inspect.signature(function)
        annotations = inspect.get_annotations(function, eval_str=True)
        # A description wrapped over lines is one paragraph: a newline would end the generated docstring's Args entry.
        described = {
            item.arg_name: " ".join((item.description or "").split()) for item in docstring_parser.parse(function.__doc__ or "").params
        }
        for flag, name in exposed_flags(stage).items():
            default = CLUSTER_DEFAULTS.get(name, signature.parameters[flag].default)
            parameter = inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotations[flag], default=default)
            if name in found and found[name].default != parameter.default:
                raise AssertionError(f"{stage}: --{flag} defaults to {parameter.default!r}, another stage's to {found[name].default!r}")
            found.setdefault(name, parameter)
            help_texts.setdefault(name, described.get(flag, ""))
    for name, annotation, default, text in DAG_PARAMETERS:
        found[name] = inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation, default=default)
        help_texts[name] = text
    parameters = sorted(found.values(), key=lambda parameter: parameter.default is not inspect.Parameter.empty)
    return parameters, help_texts


def docstring(summary: str, help_texts: dict[str, str]) -> str:
    """A Google-style docstring, from which KFP takes each parameter's description for its UI."""
    lines = [summary, "", "Args:"] + [f"  {name}: {text}" for name, text in help_texts.items() if text]
    return "\n".join(lines)
