"""The run configuration: one YAML file (configs/default.yaml), overridable from the command line.

    parameters:  runtime parameters of the pipeline: the stages' flags (pipelines/parameters.py)
    kubeflow:    compile-time settings for the cluster: images, pipeline root, S3 endpoint, resources
    submit:      where `make pipeline-submit` sends the run
    local:       where `make run` writes

An override is `key=value` (a parameter) or `section.key=value`; values are parsed as YAML and
then checked against the declared type. An unknown key or a wrong type is a one-line error.
`describe_keys` lists every key with its default and help (`make run ARGS=--help`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import re
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.lib import storage
from components.lib.data.readers import HF_SCHEME, PACKAGE_SCHEME
from components.lib.errors import UserError
from pipelines.parameters import pipeline_parameters


@dataclass
class Resources:
    cpu_request: str = "1"
    cpu_limit: str = "4"
    memory_request: str = "2Gi"
    memory_limit: str = "8Gi"


@dataclass
class KubeflowSettings:
    """What is fixed when the pipeline is compiled (a change means a new compiled YAML)."""

    image_registry: str = "ghcr.io/textclf"
    image_tag: str = "0.1.0"
    pipeline_root: str = "s3://textclf-pipelines/pipeline-root"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    cpu_resources: Resources = field(default_factory=Resources)
    train_resources: Resources = field(default_factory=lambda: Resources("4", "8", "16Gi", "32Gi"))
    shm_size: str = "2Gi"
    # Above 1: train runs as a Kubeflow Trainer TrainJob of this many nodes (components/train_job.py).
    train_nodes: int = 1
    train_runtime: str = "torch-distributed"  # the ClusterTrainingRuntime of that TrainJob
    cache_train: bool = False
    cache_register: bool = False
    sweep_parallelism: int = 2
    retries: int = 3
    retry_backoff: str = "30s"
    # Argo stops retrying once this long has passed since the first attempt started, and kills a
    # retried attempt at that moment: the train window must outlast the longest training run.
    retry_window: str = "3600s"
    train_retry_window: str = "259200s"
    train_image: str = ""  # the train task's image; empty: <image_registry>/textclf-cuda:<image_tag>
    # Pin the images by content: the sha256 digests `make images` prints after pushing. A tag can be
    # pushed over; a digest cannot, and the KFP cache key holds the image string.
    cpu_image_digest: str = ""
    cuda_image_digest: str = ""
    image_pull_policy: str = ""  # Always, IfNotPresent or Never; empty: Kubernetes' default for the image
    image_pull_secrets: list[str] = field(default_factory=list)  # Secrets of a private registry, in the run's namespace
    # For report_to=mlflow or wandb on the cluster: plain variables for every task (MLFLOW_TRACKING_URI,
    # MLFLOW_EXPERIMENT_NAME, WANDB_PROJECT, ...), and a Secret whose keys, each the variable of that
    # name, hold the credentials (MLFLOW_TRACKING_TOKEN, WANDB_API_KEY, ...); never a credential in
    # tracking_env, which is written into the compiled YAML.
    tracking_env: dict[str, str] = field(default_factory=dict)
    tracking_secret_name: str = ""
    tracking_secret_keys: list[str] = field(default_factory=list)
    # A private or gated base model or hf:// dataset: a Secret whose key HF_TOKEN holds a Hub read token, which
    # the tasks that read the Hub (preprocess, tokenize, train, a TrainJob's nodes) take as HF_TOKEN. Empty: none.
    hub_token_secret_name: str = ""

    @property
    def cpu_image(self) -> str:
        return pinned(f"{self.image_registry}/textclf-cpu:{self.image_tag}", self.cpu_image_digest)

    @property
    def cuda_image(self) -> str:
        return pinned(self.train_image or f"{self.image_registry}/textclf-cuda:{self.image_tag}", self.cuda_image_digest)


def pinned(image: str, digest: str) -> str:
    """`repo:tag@sha256:...` when a digest is given: the runtime pulls by digest, the tag stays readable."""
    return f"{image}@{digest}" if digest else image


@dataclass
class SubmitSettings:
    """Where `make pipeline-submit` sends the run."""

    host: str = "http://localhost:8080"
    namespace: str = "kubeflow-user-example-com"
    experiment: str = "textclf"
    run_name: str = ""
    # The Kubernetes service account the run's pods use; multi-user Kubeflow gives each profile
    # namespace `default-editor`. Empty: the API server's default.
    service_account: str = "default-editor"


@dataclass
class LocalSettings:
    """`make run`: where it writes its run folders, and whether a model the gate refused still exits 0.
    These keys may be given without `local.` (`make run ARGS="allow_unregistered=true"`)."""

    run_root: str = "runs"
    allow_unregistered: bool = False


@dataclass
class SweepSettings:
    """A hyperparameter sweep (pipelines/sweep.py): every combination, or `trials` seeded draws; every trial
    trained to the end (strategy all), or in rounds of successive halving (halving: eta, min_epochs)."""

    method: str = "grid"
    trials: int = 4
    seed: int = 0
    space: dict = field(default_factory=dict)
    strategy: str = "all"
    eta: int = 3
    min_epochs: int = 1


@dataclass
class KfoldSettings:
    """K-fold cross-validation (pipelines/kfold.py): named configurations, each trained on every fold."""

    folds: int = 5
    seed: int = 0
    configurations: dict = field(default_factory=dict)


@dataclass
class RunConfig:
    parameters: dict[str, Any]
    kubeflow: KubeflowSettings
    submit: SubmitSettings
    local: LocalSettings
    sweep: SweepSettings
    kfold: KfoldSettings


# Parameters that name storage: a local path there is seen only by processes on this machine.
STORAGE_PARAMETERS = ("source_uri", "registry_uri", "checkpoint_root")
REMOTE_SCHEMES = (*storage.S3_SCHEMES, HF_SCHEME, PACKAGE_SCHEME)  # package data is in the image too


def require_remote_storage(parameters: dict, why: str) -> None:
    """Refuse, in one line, storage parameters (and a base model folder) that are local paths."""
    for name in STORAGE_PARAMETERS:
        value = parameters.get(name, "")
        if value and not value.startswith(REMOTE_SCHEMES):
            raise UserError(f"parameters.{name}: {value!r} is a local path, and {why}; use s3:// (see configs/cluster.yaml)")
    base_model = parameters.get("base_model", "")
    if base_model and Path(base_model).exists():
        raise UserError(f"parameters.base_model: {base_model!r} is a local folder, and {why}; upload it to s3:// or use a hub id")


class ConfigLoader(yaml.SafeLoader):
    """YAML as people write numbers: PyYAML follows YAML 1.1, where `3e-5` (no dot) is text, so
    `learning_rate=3e-5` and `[1e-5, 2e-5]` were refused as "expected float"; YAML 1.2 reads them as floats."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass


LOCAL_KEYS = {item.name for item in dataclasses.fields(LocalSettings)}
SECTIONS = {"kubeflow": KubeflowSettings, "submit": SubmitSettings, "local": LocalSettings, "sweep": SweepSettings, "kfold": KfoldSettings}


def pipeline_parameter_types() -> dict[str, Any]:
    return {parameter.name: parameter.annotation for parameter in pipeline_parameters()[0]}


def load_config(path: str, overrides: list[str] | None = None) -> RunConfig:
    try:
        raw = read_yaml(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the config must be a mapping with the sections parameters, {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - {"parameters", *SECTIONS})
    if unknown:
        raise UserError(f"{path}: unknown section {unknown[0]!r}; the sections are parameters, {', '.join(SECTIONS)}")
    for override in overrides or []:
        apply_override(raw, override)
    types = pipeline_parameter_types()
    parameters = {
        name: check_value(where_given(path, "parameters", name, value), value, types, name)
        for name, value in (raw.get("parameters") or {}).items()
    }
    sections = {name: build_section(path, name, cls(), raw.get(name) or {}) for name, cls in SECTIONS.items()}
    return RunConfig(parameters=parameters, **sections)


def where_given(path: str, section: str, name: str, value: Any) -> str:
    """Where a setting was written, for an error about it: the command line's key=value, else the config file."""
    if isinstance(value, OverrideText):
        return f"{name if section == 'parameters' else f'{section}.{name}'}={value}"
    return f"{path}: {section}.{name}"


class OverrideText(str):
    """A value typed on the command line: kept as text for a text setting, read as YAML otherwise."""

    def parsed(self) -> Any:
        try:
            return read_yaml(self) if self else ""
        except yaml.YAMLError:
            return str(self)


def apply_override(raw: dict, override: str) -> None:
    key, separator, text = override.partition("=")
    if not separator or not key:
        raise UserError(f"override {override!r}: write key=value, e.g. epochs=2 or kubeflow.image_tag=0.2.0")
    value = OverrideText(text)
    section, dot, name = key.partition(".")
    if not dot:
        section, name = ("local" if key in LOCAL_KEYS else "parameters"), key
    target = raw.setdefault(section, {}) or {}
    raw[section] = target
    for part in name.split(".")[:-1]:
        target = target.setdefault(part, {})
    target[name.split(".")[-1]] = value


def check_value(where: str, value: Any, types: dict[str, Any], name: str) -> Any:
    if name not in types:
        close = difflib.get_close_matches(name, list(types), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"{where}: unknown key{hint}")
    return coerce(where, value, types[name])


def coerce(where: str, value: Any, expected: Any) -> Any:
    if isinstance(value, OverrideText):
        value = str(value) if expected is str else value.parsed()
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if expected is str and value is None:
        return ""
    origin = typing.get_origin(expected) or expected
    if origin is dict and isinstance(value, dict):
        return value
    if origin is list and isinstance(value, list):
        return value
    if isinstance(origin, type) and isinstance(value, origin) and not (origin is int and isinstance(value, bool)):
        return value
    name = getattr(expected, "__name__", str(expected))
    raise UserError(f"{where}: expected {name}, got {type(value).__name__} {value!r}")


def build_section(path: str, section: str, defaults: Any, values: dict) -> Any:
    """`defaults` (a dataclass instance) with the given values checked and put in."""
    if not isinstance(values, dict):
        raise UserError(f"{path}: {section} must be a mapping")
    hints = typing.get_type_hints(type(defaults))
    known = {item.name for item in dataclasses.fields(defaults)}
    built = {}
    for name, value in values.items():
        if name not in known:
            raise UserError(f"{where_given(path, section, name, value)}: unknown key; known: {', '.join(sorted(known))}")
        if dataclasses.is_dataclass(hints[name]):
            built[name] = build_section(path, f"{section}.{name}", getattr(defaults, name), value)
        else:
            built[name] = coerce(where_given(path, section, name, value), value, hints[name])
    return dataclasses.replace(defaults, **built)


def require_parameters(parameters: dict) -> None:
    """Refuse, in one line, a config that leaves out a parameter with no default."""
    declared, help_texts = pipeline_parameters()
    for parameter in declared:
        if parameter.default is inspect.Parameter.empty and parameter.name not in parameters:
            raise UserError(
                f"parameters.{parameter.name}: required, and the config does not set it ({help_texts[parameter.name].rstrip('.')});"
                f" set it there or add {parameter.name}=..."
            )


def describe_keys(config_parameters: dict | None = None, config_path: str = "") -> str:
    """Every config key with its type, default and help text, as `--help` lists them; a value
    the config at `config_path` gives a parameter is shown beside the default."""
    declared, help_texts = pipeline_parameters()
    lines = ["parameters (key=value): the stages' flags, with their help from the stages' docstrings"]
    for parameter in declared:
        required = parameter.default is inspect.Parameter.empty
        shown = "required" if required else f"default {shown_value(parameter.default)}"
        if config_parameters and parameter.name in config_parameters:
            shown += f"; {config_path}: {shown_value(config_parameters[parameter.name])}"
        lines.append(f"  {parameter.name} ({getattr(parameter.annotation, '__name__', parameter.annotation)}, {shown})")
        lines += textwrap.wrap(help_texts[parameter.name], width=100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    for section, cls in SECTIONS.items():
        lines.append(f"{section} ({section}.key=value): {(cls.__doc__ or '').splitlines()[0]}")
        lines += [f"  {section}.{key}={shown_value(value)}" for key, value in flattened(dataclasses.asdict(cls()))]
    return "\n".join(lines)


def flattened(values: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """[("cpu_resources.cpu_request", "1"), ...]: nested settings as the dotted keys an override names."""
    pairs = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            pairs += flattened(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def shown_value(value: Any) -> str:
    """A value as it is typed after `key=`: JSON for a mapping or list, '' for empty text."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value) if value != "" else "''"
