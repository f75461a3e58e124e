"""The training pipeline: preprocess -> tokenize -> train (GPU) -> evaluate -> export -> register.

`build_pipeline(settings, variant)` returns the KFP pipeline (`training` or `sweep`) for one set of
compile-time settings (images, pipeline root, S3 endpoint, resources). Its runtime parameters are
the stages' own flags (pipelines/parameters.py); configs/default.yaml gives them values.

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
- register runs only if evaluate's test score passes the task's quality gate (`min_macro_f1`, or
  `max_perplexity` for causal_lm; each task declares its gate in components/lib/tasks/);
- deploy runs after it only with `deploy=true` and a registered version: a KServe InferenceService.
"""

import contextvars
import inspect
import logging
import re

from kfp import dsl, kubernetes

from components.lib.cli import set_signature
from components.lib.credentials import CREDENTIAL_NAME, credential_in
from components.lib.errors import UserError
from components.lib.quality_gate import PASSES_OUTPUT
from components.lib.runtime import HUB_TOKEN_VARIABLE, IMAGE_USER_ID, S3_CREDENTIAL_KEYS, S3_OPTIONAL_CREDENTIAL_KEYS, S3_SECRET_NAME
from components.lib.training.settings import PAUSE_FLAG, SWEEPABLE
from pipelines.config import KubeflowSettings
from pipelines.parameters import arguments_for, docstring, pipeline_parameters, store_scope
from pipelines.stages import (
    CACHE_SCOPE,
    DATASET_ARTIFACT,
    EVALUATION_URI_OUTPUT,
    MODEL_ARTIFACT,
    MODEL_URI_OUTPUT,
    ONNX_ARTIFACT,
    REGISTERED_OUTPUT,
    SURVIVORS_OUTPUT,
    TOKENIZED_URI_OUTPUT,
    VERSION_OUTPUT,
    make_components,
)

PIPELINE_NAME = "textclf-training"
SWEEP_PIPELINE_NAME = "textclf-sweep"
KFOLD_PIPELINE_NAME = "textclf-kfold"
ACTIVE_BUILD: contextvars.ContextVar = contextvars.ContextVar("active_build")
log = logging.getLogger("pipelines.pipeline")
IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
# What the KFP driver accepts for a pull policy (backend/src/v2/driver/k8s.go, extendPodSpecPatch).
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
KUBERNETES_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")


def wire_data(build: "PipelineBuild", given: dict):
    preprocess = build.components["preprocess"](**arguments_for("preprocess", given))
    tokenize = build.components["tokenize"](data=preprocess.outputs[DATASET_ARTIFACT], **arguments_for("tokenize", given))
    build.give_hub_token(preprocess)
    build.give_hub_token(tokenize)
    return preprocess, tokenize


def train_task(build: "PipelineBuild", given: dict, tokenize, trial="", varied: dict | None = None, cache: bool | None = None):
    """The train task; it checkpoints under <checkpoint_root>/<run id>[/<trial>], which a retry of it
    reuses and a new run (a clone included) does not. It starts one process per GPU it is given."""
    flags = {**arguments_for("train", given), **(varied or {})}
    if build.settings.train_nodes > 1:
        return train_job_task(build, given, tokenize, trial, flags)
    task = build.components["train"](
        data_uri=tokenize.outputs[TOKENIZED_URI_OUTPUT], checkpoint_uri=given["checkpoint_root"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        trial=trial, processes=0, expected_gpus=given["gpu_count"], **flags,
    )  # fmt: skip
    build.place_on_gpu(task, given)
    build.give_hub_token(task)
    return task.set_caching_options(enable_caching=build.settings.cache_train if cache is None else cache)


def train_job_task(build: "PipelineBuild", given: dict, tokenize, trial, flags: dict):
    """train on kubeflow.train_nodes nodes: a CPU task that creates a Kubeflow Trainer TrainJob running train
    on the CUDA image, with the train task's GPUs, resources and placement per node, and follows it."""
    resources = build.settings.train_resources
    task = build.components["train_job"](
        data_uri=tokenize.outputs[TOKENIZED_URI_OUTPUT], checkpoint_uri=given["checkpoint_root"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        trial=trial, image=build.settings.cuda_image, nodes=build.settings.train_nodes, gpus_per_node=given["gpu_count"],
        cpu_request=resources.cpu_request, cpu_limit=resources.cpu_limit, memory_request=resources.memory_request,
        memory_limit=resources.memory_limit, node_selector=given["gpu_node_selector"], toleration=given["gpu_toleration"],
        s3_secret_name=given["s3_secret_name"], image_pull_secrets=",".join(build.settings.image_pull_secrets),
        tracking_env_names=",".join(sorted(build.settings.tracking_env)), tracking_secret_name=build.settings.tracking_secret_name,
        tracking_secret_keys=",".join(build.settings.tracking_secret_keys), hub_token_secret_name=build.settings.hub_token_secret_name,
        runtime=build.settings.train_runtime, **flags,
    )  # fmt: skip
    # It waits as long as the training does: the train task's retry window, on a CPU node.
    build.common(task, given["s3_secret_name"], build.settings.cpu_resources, build.settings.train_retry_window)
    return task.set_caching_options(enable_caching=False)


def wire_release(build: "PipelineBuild", given: dict, model, model_uri, tokenize) -> list:
    """evaluate -> export -> (quality gate) -> register, for the chosen model (an artifact, and its URI)."""
    ops = build.components
    data_uri = tokenize.outputs[TOKENIZED_URI_OUTPUT]
    evaluate = ops["evaluate"](model=model, data_uri=data_uri, batch_size=given["eval_batch_size"], **arguments_for("evaluate", given))
    export = ops["export"](model=model, data_uri=data_uri, **arguments_for("export", given))
    export.after(evaluate)
    with dsl.If(evaluate.outputs[PASSES_OUTPUT] == True, name="quality-gate"):  # noqa: E712 (KFP conditions)
        register = ops["register"](
            onnx=export.outputs[ONNX_ARTIFACT], evaluation_uri=evaluate.outputs[EVALUATION_URI_OUTPUT], model_uri=model_uri,
            data_uri=data_uri, **arguments_for("register", given),
        )  # fmt: skip
        register.set_caching_options(enable_caching=build.settings.cache_register)
        deploy = wire_deploy(build, given, register)
    return [evaluate, export, register, deploy]


def wire_deploy(build: "PipelineBuild", given: dict, register):
    """deploy, when the pipeline parameter says so and register made a version; never cached (it changes the cluster)."""
    with dsl.If(register.outputs[REGISTERED_OUTPUT] == True, name="registered"), dsl.If(given["deploy"] == True, name="deploy-enabled"):  # noqa: E712 (KFP conditions)
        deploy = build.components["deploy"](
            version=register.outputs[VERSION_OUTPUT], image=build.settings.cpu_image, s3_secret_name=given["s3_secret_name"],
            image_pull_secrets=",".join(build.settings.image_pull_secrets),
            **arguments_for("deploy", given),
        )  # fmt: skip
    return deploy.set_caching_options(enable_caching=False)


def wire_training(build: "PipelineBuild", given: dict) -> None:
    preprocess, tokenize = wire_data(build, given)
    train = train_task(build, given, tokenize)
    released = wire_release(build, given, train.outputs[MODEL_ARTIFACT], train.outputs[MODEL_URI_OUTPUT], tokenize)
    build.place_on_cpu([preprocess, tokenize, *released], given)


def wire_sweep(build: "PipelineBuild", given: dict) -> None:
    """Train every trial config in parallel (in rounds of successive halving, when the config asks for
    them), keep the best by validation score, release only that one."""
    if build.settings.cache_train:
        log.warning("kubeflow.cache_train: not for the sweep's trials; a cached trial lives in an earlier run's folder,"
                    " where select_best cannot point the released Model (components/lib/cli.py, pointed_uri)")  # fmt: skip
    preprocess, tokenize = wire_data(build, given)
    train, selections = train_rounds(build, given, tokenize) if build.rounds else (train_trials(build, given, tokenize), [])
    select = build.components["select_best"](model_uris=dsl.Collected(train.outputs[MODEL_URI_OUTPUT]))
    # select_best's Model is the best trial's own folder (pipelines/stages.py, FLAGLESS_OUTPUTS). Not an
    # importer: the backend resolves an importer's URI only from its parent DAG's inputs, never from a
    # task's output (docs/kubeflow-contract.md, row importer-uri).
    released = wire_release(build, given, select.outputs[MODEL_ARTIFACT], select.outputs[MODEL_URI_OUTPUT], tokenize)
    build.place_on_cpu([preprocess, tokenize, *selections, select, *released], given)


def train_trials(build: "PipelineBuild", given: dict, tokenize, items=None, name: str = "trials", pausing: bool = False):
    """One train task per trial item (the sweep's configs, or a round's survivors), in parallel; the loop's train task."""
    varied = (*SWEEPABLE, PAUSE_FLAG) if pausing else SWEEPABLE
    items = given["sweep_configs"] if items is None else items
    with dsl.ParallelFor(items, parallelism=build.settings.sweep_parallelism, name=name) as trial:
        # KFP substitutes its run-id placeholder only as a whole value, so the trial goes in a flag of its own.
        return train_task(build, given, tokenize, trial.trial_id, {flag: getattr(trial, flag) for flag in varied}, cache=False)


def train_rounds(build: "PipelineBuild", given: dict, tokenize):
    """Successive halving (pipelines/sweep.py): a loop per round over the trials still in, each trial resuming
    from its own checkpoint; between rounds select_survivors keeps the best and says where they pause next.
    Each round's items come from the task before it (a ParallelFor over a task's List output: the driver
    resolves it in driver/dag.go, DAG -> resolveInputs, and runs one iteration per item)."""
    items, selections = given["sweep_configs"], []
    for index, next_round in enumerate(build.rounds[1:]):
        train = train_trials(build, given, tokenize, items, f"round-{index}", pausing=True)
        select = build.components["select_survivors"](
            trials=items, model_uris=dsl.Collected(train.outputs[MODEL_URI_OUTPUT]), keep=next_round.trials,
            stop_after_epochs=next_round.stop_after_epochs, round=index, checkpoint_uri=given["checkpoint_root"],
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )  # fmt: skip
        items = select.outputs[SURVIVORS_OUTPUT]
        selections.append(select)
    return train_trials(build, given, tokenize, items, f"round-{len(build.rounds) - 1}", pausing=True), selections


def wire_kfold(build: "PipelineBuild", given: dict) -> None:
    """Every (configuration, fold) item tokenized, trained and evaluated in parallel; one report of them all."""
    ops = build.components
    preprocess = ops["preprocess"](**arguments_for("preprocess", given))
    build.give_hub_token(preprocess)
    with dsl.ParallelFor(given["kfold_configs"], parallelism=build.settings.sweep_parallelism, name="folds") as item:
        tokenize = ops["tokenize"](data=preprocess.outputs[DATASET_ARTIFACT], num_folds=item.num_folds, fold=item.fold,
                                   fold_seed=item.fold_seed, **arguments_for("tokenize", given))  # fmt: skip
        build.give_hub_token(tokenize)
        train = train_task(build, given, tokenize, item.trial_id, {name: getattr(item, name) for name in SWEEPABLE})
        evaluate = ops["evaluate"](
            model=train.outputs[MODEL_ARTIFACT], data_uri=tokenize.outputs[TOKENIZED_URI_OUTPUT], batch_size=given["eval_batch_size"]
        )
    report = ops["kfold_report"](evaluation_uris=dsl.Collected(evaluate.outputs[EVALUATION_URI_OUTPUT]))
    build.place_on_cpu([preprocess, tokenize, evaluate, report], given)


class PipelineBuild:
    """The compile-time half: components for these images, and the Kubernetes placement of tasks."""

    def __init__(self, settings: KubeflowSettings, rounds: tuple = ()) -> None:
        check_tracking_settings(settings)
        check_image_settings(settings)
        self.settings = settings
        self.rounds = rounds  # a halving sweep's rounds (pipelines/sweep.py, Round); () trains every trial to the end
        self.given: dict = {}  # the pipeline's parameters, while the pipeline function runs
        self.components = {
            stage: self.scoped(component) for stage, component in make_components(settings.cpu_image, settings.cuda_image).items()
        }

    def scoped(self, component):
        """The component, given the run's cache scope on every use, so that every task's cache key holds it."""

        def task(**arguments):
            return component(**arguments, **{CACHE_SCOPE: self.given[CACHE_SCOPE]})

        return task

    def common(self, task, secret_name, resources, retry_window: str) -> None:
        kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env={key: key for key in S3_CREDENTIAL_KEYS})
        optional_keys = {key: key for key in S3_OPTIONAL_CREDENTIAL_KEYS}
        kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=optional_keys, optional=True)
        if self.settings.image_pull_policy:
            kubernetes.set_image_pull_policy(task, self.settings.image_pull_policy)
        if self.settings.image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, list(self.settings.image_pull_secrets))
        if self.settings.s3_endpoint:
            task.set_env_variable("AWS_ENDPOINT_URL", self.settings.s3_endpoint)
        task.set_env_variable("AWS_REGION", self.settings.s3_region)
        task.set_env_variable("PYTHONUNBUFFERED", "1")
        for name, value in sorted(self.settings.tracking_env.items()):
            task.set_env_variable(name, str(value))
        if self.settings.tracking_secret_name:
            keys = {key: key for key in self.settings.tracking_secret_keys}
            kubernetes.use_secret_as_env(task, secret_name=self.settings.tracking_secret_name, secret_key_to_env=keys)
        task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
        task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
        # The images' own user; the KFP compiler adds no privilege escalation and no capabilities.
        kubernetes.set_security_context(task, run_as_user=IMAGE_USER_ID, run_as_group=IMAGE_USER_ID, run_as_non_root=True)
        # The backend mounts nothing at /tmp (argocompiler/container.go, addContainerExecutorTemplate),
        # yet its launcher writes output parameters under /tmp/kfp/outputs (launcher_v2.go,
        # prepareOutputFolders) and the images keep HOME and caches there: /tmp is an emptyDir.
        kubernetes.empty_dir_mount(task, volume_name="tmp", mount_path="/tmp")
        # On Kubeflow every failed attempt is retried, a user error (exit status 2) included: KFP's
        # retry policy has only a count and a backoff, and the backend compiles it into an Argo
        # retryStrategy with only `limit` and `backoff` (backend/src/v2/compiler/argocompiler/
        # container.go, getTaskRetryStrategyFromInput): no retryPolicy, no `expression` on the exit
        # code. A retried attempt knows its index (KFP_RETRY_INDEX) but not why the last one failed,
        # and stages find a user's mistake before their heavy work, so a retry costs the backoff
        # and a pod start, not a second run of the work. `make run` does not retry one
        # (pipelines/local_run.py, no_retry_of_user_errors); kubeflow.retries=0 turns retries off.
        task.set_retry(
            num_retries=self.settings.retries,
            backoff_duration=self.settings.retry_backoff,
            backoff_factor=2.0,
            backoff_max_duration=retry_window,
        )

    def give_hub_token(self, task) -> None:
        """preprocess reads hf:// datasets, tokenize and train the base model: private or gated ones need the token, no other task."""
        if self.settings.hub_token_secret_name:
            variable = {HUB_TOKEN_VARIABLE: HUB_TOKEN_VARIABLE}
            kubernetes.use_secret_as_env(task, secret_name=self.settings.hub_token_secret_name, secret_key_to_env=variable)

    def place_on_cpu(self, tasks, given: dict) -> None:
        for task in tasks:
            self.common(task, given["s3_secret_name"], self.settings.cpu_resources, self.settings.retry_window)

    def place_on_gpu(self, task, given: dict) -> None:
        self.common(task, given["s3_secret_name"], self.settings.train_resources, self.settings.train_retry_window)
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(given["gpu_count"])
        kubernetes.add_node_selector_json(task, given["gpu_node_selector"])
        kubernetes.add_toleration_json(task, given["gpu_toleration"])
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=self.settings.shm_size)
        kubernetes.add_pod_label(task, "textclf.io/workload", "gpu-training")


def check_tracking_settings(settings: KubeflowSettings) -> None:
    """tracking_env is written into the compiled YAML: a credential there is refused, and keys need their Secret."""
    for name, value in settings.tracking_env.items():
        kind = "a credential's name" if CREDENTIAL_NAME.search(name) else credential_in(value)
        if kind:
            raise UserError(
                f"kubeflow.tracking_env.{name}: holds {kind}, and this goes into the compiled YAML;"
                " put it in a Secret (kubeflow.tracking_secret_name) and name it in kubeflow.tracking_secret_keys"
            )
    if bool(settings.tracking_secret_name) != bool(settings.tracking_secret_keys):
        raise UserError("kubeflow.tracking_secret_name and kubeflow.tracking_secret_keys go together: set both or neither")


def check_image_settings(settings: KubeflowSettings) -> None:
    for name in ("cpu_image_digest", "cuda_image_digest"):
        value = getattr(settings, name)
        if value and not IMAGE_DIGEST.match(value):
            raise UserError(f"kubeflow.{name}: {value!r} is not a digest (sha256: and 64 hex digits, as make images prints it)")
    if settings.image_pull_policy and settings.image_pull_policy not in PULL_POLICIES:
        raise UserError(f"kubeflow.image_pull_policy: {settings.image_pull_policy!r} is not one of {', '.join(PULL_POLICIES)}")
    for name in settings.image_pull_secrets:
        if not isinstance(name, str) or not KUBERNETES_NAME.match(name):
            raise UserError(f"kubeflow.image_pull_secrets: {name!r} is not a Secret name (lowercase letters, digits, '-' and '.')")


def pipeline_function(variant: str):
    """The pipeline function KFP compiles: the derived parameters (pipelines/parameters.py), then wiring."""
    parameters, help_texts = pipeline_parameters()
    if variant in ITEM_PARAMETERS:
        name, text = ITEM_PARAMETERS[variant]
        parameters.insert(0, inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list))
        help_texts = {name: text, **help_texts}
    names = [parameter.name for parameter in parameters]
    name, summary, wire = PIPELINES[variant]

    build = ACTIVE_BUILD.get()
    parameters = [
        parameter.replace(default=store_scope(build.settings.pipeline_root, build.settings.s3_endpoint, S3_SECRET_NAME))
        if parameter.name == CACHE_SCOPE
        else parameter
        for parameter in parameters
    ]

    def pipeline(*values) -> None:
        build.given = dict(zip(names, values))
        wire(build, build.given)

    pipeline.__name__ = pipeline.__qualname__ = name.replace("-", "_")
    set_signature(pipeline, inspect.Signature(parameters))
    pipeline.__doc__ = docstring(summary, help_texts)
    return pipeline


PIPELINES = {
    "training": (PIPELINE_NAME, "Fine-tune, evaluate, export and register a transformer text classifier.", wire_training),
    "sweep": (SWEEP_PIPELINE_NAME, "Sweep training configurations in parallel; evaluate, export and register only the best.", wire_sweep),
    "kfold": (KFOLD_PIPELINE_NAME, "K-fold cross-validation of named configurations, with significance tests between them.", wire_kfold),
}
# The list parameter of a variant that fans out: its name and help (the items come from the config's section of that name).
ITEM_PARAMETERS = {
    "sweep": ("sweep_configs", "Trial configurations, expanded from the config's sweep section (pipelines/sweep.py)."),
    "kfold": ("kfold_configs", "One item per configuration and fold, expanded from the config's kfold section (pipelines/kfold.py)."),
}


def build_pipeline(settings: KubeflowSettings, variant: str = "training", rounds: tuple = ()):
    """The compiled-to-be pipeline (`training`, `sweep` or `kfold`) for these compile-time settings (and a halving sweep's rounds)."""
    token = ACTIVE_BUILD.set(PipelineBuild(settings, rounds))
    try:
        return dsl.pipeline(name=PIPELINES[variant][0], pipeline_root=settings.pipeline_root)(pipeline_function(variant))
    finally:
        ACTIVE_BUILD.reset(token)
