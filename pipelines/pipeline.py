"""The training pipeline: preprocess -> tokenize -> train (GPU) -> evaluate -> export -> register.

`build_training_pipeline(settings)` returns the KFP pipeline for one set of compile-time
settings (images, pipeline root, S3 endpoint, resources). The runtime parameters are the
arguments of `training_pipeline` below; configs/default.yaml gives them values.

On the cluster:
- train runs in the CUDA image with `nvidia.com/gpu` x `gpu_count`, the GPU node selector and
  toleration (both parameters), CPU/memory requests and limits, and an in-memory /dev/shm;
  every other task runs in the CPU image on CPU nodes;
- S3 credentials come from the Kubernetes Secret named by `s3_secret_name`, as environment
  variables; no key is ever in the compiled YAML;
- preprocess and tokenize are cached, and the cache key holds the source's content fingerprint;
  train and register are not cached; every task retries with backoff;
- checkpoints go to `<checkpoint_root>/<run id>`, outside the artifact graph, so a retried
  train task resumes from them;
- register runs only if the test macro-F1 reaches `min_macro_f1`.
"""

import contextvars
import inspect

from kfp import dsl, kubernetes

from pipelines.config import KubeflowSettings
from pipelines.stages import make_components

PIPELINE_NAME = "textclf-training"
SWEEP_PIPELINE_NAME = "textclf-sweep"
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
ACTIVE_BUILD: contextvars.ContextVar = contextvars.ContextVar("active_build")


def training_pipeline(
    source_uri: str,
    model_name: str,
    registry_uri: str,
    checkpoint_root: str,
    source_fingerprint: str = "",
    text_column: str = "text",
    label_column: str = "label",
    label_names: str = "negative,neutral,positive",
    rating_buckets: str = "",
    delimiter: str = "",
    encoding: str = "utf-8",
    mask_urls: bool = False,
    mask_mentions: bool = False,
    max_chars: int = 20000,
    use_source_splits: bool = True,
    validation_ratio: float = 0.1,
    test_ratio: float = 0.1,
    split_seed: int = 42,
    base_model: str = "bundled://all-MiniLM-L6-v2",
    max_length: int = 128,
    trust_remote_code: bool = False,
    epochs: int = 3,
    batch_size: int = 16,
    eval_batch_size: int = 64,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    scheduler: str = "linear",
    warmup_steps: int = 0,
    warmup_ratio: float = 0.1,
    num_cycles: float = 0.0,
    max_grad_norm: float = 1.0,
    grad_accum_steps: int = 1,
    precision: str = "auto",
    seed: int = 42,
    eval_every_steps: int = 0,
    metric_for_best: str = "macro_f1",
    early_stopping_patience: int = 0,
    early_stopping_min_delta: float = 0.0,
    freeze_encoder_epochs: int = 0,
    layerwise_lr_decay: float = 1.0,
    class_weights: str = "none",
    label_smoothing: float = 0.0,
    compile: bool = False,
    compile_backend: str = "inductor",
    num_workers: int = 2,
    pin_memory: bool = True,
    group_by_length: bool = True,
    max_steps: int = 0,
    checkpoint_every_steps: int = 200,
    keep_checkpoints: int = 2,
    logging_steps: int = 10,
    report_to: str = "tensorboard",
    quantize_int8: bool = True,
    int8_max_f1_drop: float = 0.02,
    parity_atol: float = 1e-3,
    min_macro_f1: float = 0.0,
    compare_with_production: bool = True,
    max_regression: float = 0.01,
    gpu_count: int = 1,
    gpu_node_selector: dict = {"nvidia.com/gpu.present": "true"},  # noqa: B006 - KFP reads defaults from the signature
    gpu_toleration: dict = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},  # noqa: B006
    s3_secret_name: str = "textclf-s3",  # noqa: S107 - the name of a Secret, not a secret
) -> None:
    """Fine-tune, evaluate, export and register a transformer text classifier.

    Args:
      source_uri: Raw data: a file or folder (s3:// on a cluster) of CSV/TSV/JSON/JSONL/Parquet, or hf://name.
      model_name: Registry name of the model.
      registry_uri: Registry root (s3:// on a cluster).
      checkpoint_root: Prefix for training checkpoints; each run checkpoints under <checkpoint_root>/<run id>.
      source_fingerprint: Content fingerprint of source_uri; set by make run / make pipeline-submit, part of the cache key.
      min_macro_f1: Quality gate: register only if the test macro-F1 is at least this.
      gpu_count: GPUs for the train task (one process per GPU).
      gpu_node_selector: Node selector for the train task.
      gpu_toleration: Toleration for the train task (a Kubernetes toleration object).
      s3_secret_name: Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    """
    wire_training(ACTIVE_BUILD.get(), dict(locals()))


PREPROCESS_FLAGS = (
    "text_column", "label_column", "label_names", "rating_buckets", "delimiter", "encoding", "mask_urls",
    "mask_mentions", "max_chars", "use_source_splits", "validation_ratio", "test_ratio",
)  # fmt: skip
# The training flags a sweep may vary; every trial config carries all of them (see pipelines/sweep.py).
SWEEPABLE = (
    "learning_rate", "batch_size", "epochs", "weight_decay", "warmup_ratio", "scheduler", "seed", "label_smoothing",
    "layerwise_lr_decay", "class_weights", "grad_accum_steps", "freeze_encoder_epochs", "early_stopping_patience",
)  # fmt: skip


def wire_data(build: "PipelineBuild", given: dict):
    ops = build.components
    preprocess = ops["preprocess"](
        input_uri=given["source_uri"], expected_source_fingerprint=given["source_fingerprint"], seed=given["split_seed"],
        **pick(given, *PREPROCESS_FLAGS),
    )  # fmt: skip
    tokenize = ops["tokenize"](data=preprocess.outputs["dataset"], **pick(given, "base_model", "max_length", "trust_remote_code"))
    return preprocess, tokenize


def train_task(build: "PipelineBuild", given: dict, tokenize, run_id, varied: dict | None = None):
    """The train task; it checkpoints under <checkpoint_root>/<run_id>, which a retry of it reuses."""
    flags = {**pick(given, *build.train_flags), **(varied or {})}
    task = build.components["train"](
        tokenized=tokenize.outputs["tokenized"], checkpoint_uri=given["checkpoint_root"], run_id=run_id,
        processes=given["gpu_count"], **flags,
    )  # fmt: skip
    build.place_on_gpu(task, given)
    return task.set_caching_options(enable_caching=build.settings.cache_train)


def wire_release(build: "PipelineBuild", given: dict, model, tokenize, after: list) -> list:
    """evaluate -> export -> (quality gate) -> register, for the chosen model."""
    ops = build.components
    evaluate = ops["evaluate"](model=model, tokenized=tokenize.outputs["tokenized"], batch_size=given["eval_batch_size"])
    export = ops["export"](
        model=model, tokenized=tokenize.outputs["tokenized"], **pick(given, "quantize_int8", "int8_max_f1_drop", "parity_atol")
    )
    export.after(evaluate)
    with dsl.If(evaluate.outputs["macro_f1"] >= given["min_macro_f1"], name="quality-gate"):
        register = ops["register"](
            onnx=export.outputs["onnx"], evaluation=evaluate.outputs["evaluation"], model=model, tokenized=tokenize.outputs["tokenized"],
            gate_metric="macro_f1", gate_min=given["min_macro_f1"],
            **pick(given, "registry_uri", "model_name", "compare_with_production", "max_regression"),
        )  # fmt: skip
    register.set_caching_options(enable_caching=build.settings.cache_register)
    for task in after:
        evaluate.after(task)
    return [evaluate, export, register]


def wire_training(build: "PipelineBuild", given: dict) -> None:
    preprocess, tokenize = wire_data(build, given)
    train = train_task(build, given, tokenize, dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    released = wire_release(build, given, train.outputs["model"], tokenize, after=[])
    build.place_on_cpu([preprocess, tokenize, *released], given)


def wire_sweep(build: "PipelineBuild", given: dict) -> None:
    """Train every trial config in parallel, keep the best by validation score, release only that one."""
    preprocess, tokenize = wire_data(build, given)
    with dsl.ParallelFor(given["sweep_configs"], parallelism=build.settings.sweep_parallelism, name="trials") as trial:
        # KFP cannot join its run-id placeholder with a loop item, so each trial config carries an id
        # that is unique to the submission (pipelines/sweep.py) and stable across retries.
        train = train_task(build, given, tokenize, trial.trial_id, {name: getattr(trial, name) for name in SWEEPABLE})
    select = build.components["select_best"](model_uris=dsl.Collected(train.outputs["model_uri"]))
    released = wire_release(build, given, select.outputs["model"], tokenize, after=[select])
    build.place_on_cpu([preprocess, tokenize, select, *released], given)


def pick(given: dict, *names: str) -> dict:
    return {name: given[name] for name in names}


class PipelineBuild:
    """The compile-time half: components for these images, and the Kubernetes placement of tasks."""

    def __init__(self, settings: KubeflowSettings) -> None:
        self.settings = settings
        self.components = make_components(settings.cpu_image, settings.cuda_image)
        train_inputs = set(self.components["train"].component_spec.inputs)
        handled = {"tokenized", "checkpoint_uri", "run_id", "processes"}
        self.train_flags = [
            name for name in inspect.signature(training_pipeline).parameters if name in train_inputs and name not in handled
        ]

    def common(self, task, secret_name, resources) -> None:
        kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=S3_SECRET_KEYS)
        if self.settings.s3_endpoint:
            task.set_env_variable("AWS_ENDPOINT_URL", self.settings.s3_endpoint)
        task.set_env_variable("AWS_REGION", self.settings.s3_region)
        task.set_env_variable("PYTHONUNBUFFERED", "1")
        task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
        task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
        task.set_retry(
            num_retries=self.settings.retries,
            backoff_duration=self.settings.retry_backoff,
            backoff_factor=2.0,
            backoff_max_duration="3600s",
        )

    def place_on_cpu(self, tasks, given: dict) -> None:
        for task in tasks:
            self.common(task, given["s3_secret_name"], self.settings.cpu_resources)

    def place_on_gpu(self, task, given: dict) -> None:
        self.common(task, given["s3_secret_name"], self.settings.train_resources)
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(given["gpu_count"])
        kubernetes.add_node_selector_json(task, given["gpu_node_selector"])
        kubernetes.add_toleration_json(task, given["gpu_toleration"])
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=self.settings.shm_size)
        kubernetes.add_pod_label(task, "textclf.io/workload", "gpu-training")


def sweep_pipeline_function():
    """training_pipeline's parameters plus `sweep_configs`, wired as a sweep."""
    base = inspect.signature(training_pipeline)
    configs = inspect.Parameter("sweep_configs", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list)
    parameters = [*[p for p in base.parameters.values() if p.default is inspect.Parameter.empty], configs,
                  *[p for p in base.parameters.values() if p.default is not inspect.Parameter.empty]]  # fmt: skip

    def textclf_sweep(*values) -> None:
        wire_sweep(ACTIVE_BUILD.get(), dict(zip([parameter.name for parameter in parameters], values)))

    textclf_sweep.__signature__ = inspect.Signature(parameters)
    textclf_sweep.__doc__ = (
        (training_pipeline.__doc__ or "")
        .replace(
            "Fine-tune, evaluate, export and register a transformer text classifier.",
            "Sweep training configurations in parallel; evaluate, export and register only the best.",
        )
        .replace(
            "    Args:\n",
            "    Args:\n      sweep_configs: Trial configurations (pipelines/sweep.py expands the config's sweep section).\n",
            1,
        )
    )
    return textclf_sweep


PIPELINES = {"training": (PIPELINE_NAME, lambda: training_pipeline), "sweep": (SWEEP_PIPELINE_NAME, sweep_pipeline_function)}


def build_pipeline(settings: KubeflowSettings, variant: str = "training"):
    """The compiled-to-be pipeline (`training` or `sweep`) for these compile-time settings."""
    name, function = PIPELINES[variant]
    token = ACTIVE_BUILD.set(PipelineBuild(settings))
    try:
        return dsl.pipeline(name=name, pipeline_root=settings.pipeline_root)(function())
    finally:
        ACTIVE_BUILD.reset(token)


def pipeline_parameter_types(variant: str = "training") -> dict:
    function = PIPELINES[variant][1]()
    return {name: parameter.annotation for name, parameter in inspect.signature(function).parameters.items()}
