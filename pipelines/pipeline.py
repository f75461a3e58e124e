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
    build: PipelineBuild = ACTIVE_BUILD.get()
    given = dict(locals())
    ops = build.components
    preprocess = ops["preprocess"](
        input_uri=source_uri,
        expected_source_fingerprint=source_fingerprint,
        seed=split_seed,
        **pick(
            given,
            "text_column",
            "label_column",
            "label_names",
            "rating_buckets",
            "delimiter",
            "encoding",
            "mask_urls",
            "mask_mentions",
            "max_chars",
            "use_source_splits",
            "validation_ratio",
            "test_ratio",
        ),
    )
    tokenize = ops["tokenize"](data=preprocess.outputs["dataset"], **pick(given, "base_model", "max_length", "trust_remote_code"))
    train = ops["train"](
        tokenized=tokenize.outputs["tokenized"],
        checkpoint_uri=checkpoint_root,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        processes=gpu_count,
        **pick(given, *build.train_flags),
    )
    evaluate = ops["evaluate"](model=train.outputs["model"], tokenized=tokenize.outputs["tokenized"], batch_size=eval_batch_size)
    export = ops["export"](
        model=train.outputs["model"],
        tokenized=tokenize.outputs["tokenized"],
        **pick(given, "quantize_int8", "int8_max_f1_drop", "parity_atol"),
    ).after(evaluate)
    with dsl.If(evaluate.outputs["macro_f1"] >= min_macro_f1, name="quality-gate"):
        register = ops["register"](
            onnx=export.outputs["onnx"],
            evaluation=evaluate.outputs["evaluation"],
            model=train.outputs["model"],
            tokenized=tokenize.outputs["tokenized"],
            gate_metric="macro_f1",
            gate_min=min_macro_f1,
            **pick(given, "registry_uri", "model_name", "compare_with_production", "max_regression"),
        )
    build.place_on_cpu([preprocess, tokenize, evaluate, export, register], s3_secret_name)
    build.place_on_gpu(train, s3_secret_name, gpu_count, gpu_node_selector, gpu_toleration)
    build.set_caching(preprocess=preprocess, tokenize=tokenize, train=train, evaluate=evaluate, export=export, register=register)


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

    def place_on_cpu(self, tasks, secret_name) -> None:
        for task in tasks:
            self.common(task, secret_name, self.settings.cpu_resources)

    def place_on_gpu(self, task, secret_name, gpu_count, node_selector, toleration) -> None:
        self.common(task, secret_name, self.settings.train_resources)
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpu_count)
        kubernetes.add_node_selector_json(task, node_selector)
        kubernetes.add_toleration_json(task, toleration)
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=self.settings.shm_size)
        kubernetes.add_pod_label(task, "textclf.io/workload", "gpu-training")

    def set_caching(self, **tasks) -> None:
        uncached = {"train": not self.settings.cache_train, "register": not self.settings.cache_register}
        for name, task in tasks.items():
            task.set_caching_options(enable_caching=not uncached.get(name, False))


def build_training_pipeline(settings: KubeflowSettings):
    token = ACTIVE_BUILD.set(PipelineBuild(settings))
    try:
        return dsl.pipeline(name=PIPELINE_NAME, pipeline_root=settings.pipeline_root)(training_pipeline)
    finally:
        ACTIVE_BUILD.reset(token)


def training_pipeline_signature() -> inspect.Signature:
    return inspect.signature(training_pipeline)
