"""The rules of the real Kubeflow Pipelines backend that the compiled YAML must keep, each checked here;
docs/kubeflow-contract.md lists them with the backend source they come from and the versions read.
kfp.local is more lenient than the backend on all of them: a pipeline that runs under `make run` can
still fail on a cluster, after hours of training, where one of these is broken.

`make lint` (pipelines/lint.py) runs every check on every compiled pipeline, for every kind of task
(container, importer, sub-DAG).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.pipeline import PULL_POLICIES
from pipelines.stages import CACHE_SCOPE, SURVIVORS_OUTPUT

# Stages that read some splits of the tokenized data: the launcher downloads every input artifact
# whole before the container starts (backend/src/v2/component/launcher_v2.go, downloadArtifacts).
PARTIAL_READERS = ("train", "evaluate", "export")
TRAIN_RETRY_WINDOW_FLOOR_S = 86400  # Argo kills a retried attempt at first start + backoffMaxDuration
# Task outputs a loop may iterate over: (stage, output) -> the stage's input that keeps at least that many
# items (select_survivors refuses --keep below 1), which must be a constant of at least 1 (check_loop_items).
NON_EMPTY_LISTS = {("select_survivors", SURVIVORS_OUTPUT): "keep"}
PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
# Container fields the KFP driver fills from runtime parameters with GetStringValue()
# (backend/src/v2/driver/driver.go, initPodSpecPatch -> resolve.go, resolvePodSpecInputRuntimeParameter):
# a parameter of any other kind reads as "" and the field is dropped without an error.
POD_SPEC_FIELDS = (
    ("image",),
    ("resources", "accelerator", "resourceType"),
    ("resources", "accelerator", "resourceCount"),
    ("resources", "resourceCpuLimit"),
    ("resources", "resourceCpuRequest"),
    ("resources", "resourceMemoryLimit"),
    ("resources", "resourceMemoryRequest"),
)
# kfp-kubernetes fields bound to a parameter, and the kinds the driver accepts (backend/src/v2/driver/k8s.go,
# extendPodSpecPatch): a node selector through resolve.go resolveK8sJsonParameter (GetStructValue), a
# toleration through resolveInputParameter (struct or list); every name (Secret, ConfigMap, PVC, image pull
# Secret) through resolveInputParameterStr, which also refuses an empty string and fails the task.
NAME_KINDS = {"STRING"}
PLATFORM_BINDINGS = {
    "node selector": (lambda config: [config.get("nodeSelector", {}).get("nodeSelectorJson")], {"STRUCT"}),
    "toleration": (lambda config: [item.get("tolerationJson") for item in config.get("tolerations", [])], {"STRUCT", "LIST"}),
    "Secret name": (lambda config: names(config, ("secretAsEnv", "secretAsVolume"), "secretNameParameter"), NAME_KINDS),
    "ConfigMap name": (lambda config: names(config, ("configMapAsEnv", "configMapAsVolume"), "configMapNameParameter"), NAME_KINDS),
    "PVC name": (lambda config: names(config, ("pvcMount",), "pvcNameParameter"), NAME_KINDS),
    "image pull Secret": (lambda config: names(config, ("imagePullSecret",), "secretNameParameter"), NAME_KINDS),
}


def names(config: dict, lists: tuple[str, ...], field: str) -> list:
    return [item.get(field) for key in lists for item in config.get(key, [])]


def stage_of(task: dict) -> str:
    """comp-train -> train; comp-train-2 (a second use of the component) -> train."""
    return re.sub(r"-\d+$", "", task["componentRef"]["name"].removeprefix("comp-"))


def dag_components(spec: dict):
    """(key, component) for the root and every sub-DAG (conditions, loops)."""
    yield "root", spec["root"]
    for key, component in spec["components"].items():
        if "dag" in component:
            yield key, component


def check_container_task(where: str, stage: str, task: dict, component: dict, kubernetes: dict) -> list[str]:
    """The backend's rules for one container task; `kubernetes` is its kfp-kubernetes executor config."""
    return (
        check_partial_reads(where, stage, component)
        + check_cache_scope(where, task)
        + check_retry_window(where, stage, task)
        + check_writable_tmp(where, kubernetes)
        + check_security_context(where, kubernetes)
    )


def check_partial_reads(where: str, stage: str, component: dict) -> list[str]:
    """A stage that reads some splits takes the tokenized data by URI: the launcher downloads every
    input artifact whole before the container starts (backend/src/v2/component/launcher_v2.go, downloadArtifacts)."""
    if stage not in PARTIAL_READERS:
        return []
    declared = component.get("inputDefinitions", {}).get("artifacts", {})
    return [
        f"{where} takes the Dataset {name!r} as an artifact; the launcher downloads all of it first:"
        " pass tokenized_uri and let the stage fetch the splits it reads"
        for name, definition in declared.items()
        if definition.get("artifactType", {}).get("schemaTitle") == "system.Dataset"
    ]


def check_cache_scope(where: str, task: dict) -> list[str]:
    """The backend's cache key leaves out the pipeline root, endpoint and Secrets (backend/src/v2/cacheutils/
    cache.go, GenerateCacheKey): every task takes the store's digest as an input, which the key holds."""
    if CACHE_SCOPE in task.get("inputs", {}).get("parameters", {}):
        return []
    return [f"{where} has no {CACHE_SCOPE} input; a cached result could point into another store"]


def check_retry_window(where: str, stage: str, task: dict) -> list[str]:
    """Argo stops retrying, and kills a retried attempt, once backoffMaxDuration has passed since the first
    attempt started (the backend compiles it from set_retry: argocompiler/container.go, getTaskRetryStrategyFromInput)."""
    window = task.get("retryPolicy", {}).get("backoffMaxDuration", "0s")
    if stage != "train" or int(window.rstrip("s")) >= TRAIN_RETRY_WINDOW_FLOOR_S:
        return []
    return [
        f"{where} retries only within {window} of its first attempt; a preempted long run would not resume"
        f" (kubeflow.train_retry_window, at least {TRAIN_RETRY_WINDOW_FLOOR_S}s)"
    ]


def check_writable_tmp(where: str, kubernetes: dict) -> list[str]:
    """The backend mounts nothing at /tmp (argocompiler/container.go, addContainerExecutorTemplate), yet its
    launcher writes output parameters under /tmp/kfp/outputs (launcher_v2.go, prepareOutputFolders)."""
    if "/tmp" in {mount["mountPath"] for mount in kubernetes.get("emptyDirMounts", [])}:
        return []
    return [f"{where} has no emptyDir at /tmp, where the launcher writes output parameters"]


def check_security_context(where: str, kubernetes: dict) -> list[str]:
    """Every task runs as a non-root user, through the platform spec's securityContext (parsed by the
    driver from backend 2.16.0: backend/src/v2/driver/k8s.go, extendPodSpecPatch)."""
    context = kubernetes.get("securityContext", {})
    if context.get("runAsNonRoot") is True and context.get("runAsUser"):
        return []
    return [f"{where} has no securityContext running it as a non-root user"]


def check_runtime_bindings(path: Path, spec: dict, platform: dict) -> list[str]:
    """Each runtime parameter bound into a pod spec must be of a kind the KFP driver can read there."""
    executors = spec["deploymentSpec"]["executors"]
    invokers = {
        task["componentRef"]["name"]: (key, task) for key, parent in dag_components(spec) for task in parent["dag"]["tasks"].values()
    }
    problems = []
    for key, parent in dag_components(spec):
        for name, task in parent["dag"].get("tasks", {}).items():
            executor_name = task["componentRef"]["name"].replace("comp-", "exec-", 1)
            if "container" not in executors.get(executor_name, {}):  # a sub-DAG, or an importer
                continue
            inputs = task.get("inputs", {}).get("parameters", {})
            container = executors[executor_name]["container"]
            for field_path in POD_SPEC_FIELDS:
                value = container
                for part in field_path:
                    value = value.get(part, {}) if isinstance(value, dict) else {}
                for parameter in PLACEHOLDER.findall(value if isinstance(value, str) else ""):
                    kind, _ = resolved(spec, invokers, key, inputs.get(parameter, {}))
                    if kind not in ("STRING", "constant"):
                        problems.append(
                            f"{path}: {name}: {'.'.join(field_path)} is bound to {parameter!r} of kind {kind}; the KFP driver reads"
                            " it with GetStringValue() and drops the field: declare the parameter as a string"
                        )
            for what, (bindings, accepted) in PLATFORM_BINDINGS.items():
                for binding in filter(None, bindings(platform.get(executor_name, {}))):
                    kind, value = resolved(spec, invokers, key, binding)
                    if kind not in accepted | {"constant"}:
                        wanted = "/".join(sorted(accepted))
                        problems.append(f"{path}: {name}: the {what} is bound to a {kind} parameter; the KFP driver needs {wanted}")
                    elif accepted == NAME_KINDS and value == "":
                        problems.append(f"{path}: {name}: the {what} is empty; the KFP driver refuses an empty name and fails the task")
            policy = platform.get(executor_name, {}).get("imagePullPolicy")
            if policy is not None and policy not in PULL_POLICIES:
                problems.append(f"{path}: {name}: image pull policy {policy!r}; the KFP driver accepts only {', '.join(PULL_POLICIES)}")
    return problems


def check_importers(path: Path, spec: dict) -> list[str]:
    """An importer's URI must be a constant or an input of the DAG it sits in. Importers run without a
    driver (backend/src/v2/compiler/argocompiler/importer.go, importerTask), and the importer launcher
    resolves a runtime URI only through the parent DAG's input parameters (component/importer_launcher.go,
    ImportSpecToMLMDArtifact -> GetComponentInputParameter): a task output there fails the run with
    "parent DAG does not have input parameter", after everything before it has run."""
    executors = spec["deploymentSpec"]["executors"]
    problems = []
    for _, parent in dag_components(spec):
        for name, task in parent["dag"].get("tasks", {}).items():
            importer = executors.get(task["componentRef"]["name"].replace("comp-", "exec-", 1), {}).get("importer")
            runtime = (importer or {}).get("artifactUri", {}).get("runtimeParameter")
            binding = task.get("inputs", {}).get("parameters", {}).get(runtime, {}) if runtime else {}
            if "taskOutputParameter" in binding:
                producer = binding["taskOutputParameter"].get("producerTask")
                problems.append(
                    f"{path}: importer {name} takes its URI from the output of {producer}; the KFP importer launcher resolves"
                    " only its parent DAG's inputs and fails the run there: pass the artifact itself, not its URI"
                )
    return problems


def check_loop_items(path: Path, spec: dict) -> list[str]:
    """A ParallelFor over a task's output (a halving round's survivors) needs a LIST output, never empty. The
    iterator's driver counts the items with getItems (backend/src/v2/driver/dag.go, DAG -> driver/util.go,
    getItems: a list, or text holding one); with none the loop runs nothing, and the Collected fan-in after it
    looks for an iteration that does not exist (driver/resolve.go, resolveUpstreamParameters: only
    `iterations > 0` collects) and fails the run. So each such producer must be one that keeps at least one
    item by a constant input of at least 1 (NON_EMPTY_LISTS)."""
    problems = []
    for _, parent in dag_components(spec):
        tasks = parent["dag"].get("tasks", {})
        for name, task in tasks.items():
            items = task.get("parameterIterator", {}).get("items", {}).get("inputParameter")
            source = task.get("inputs", {}).get("parameters", {}).get(items, {}).get("taskOutputParameter") if items else None
            if source:
                problems += loop_source_problems(f"{path}: loop {name}", spec, tasks.get(source["producerTask"], {}), source)
    return problems


def loop_source_problems(where: str, spec: dict, producer: dict, source: dict) -> list[str]:
    output = source["outputParameterKey"]
    component = spec["components"].get(producer.get("componentRef", {}).get("name"), {})
    kind = component.get("outputDefinitions", {}).get("parameters", {}).get(output, {}).get("parameterType")
    if kind != "LIST":
        return [f"{where} iterates over {source['producerTask']}.{output}, a {kind}: the KFP driver counts a loop's items only in a LIST"]
    keeps = NON_EMPTY_LISTS.get((stage_of(producer).replace("-", "_"), output))
    kept = producer.get("inputs", {}).get("parameters", {}).get(keeps, {}).get("runtimeValue", {}).get("constant") if keeps else None
    if isinstance(kept, (int, float)) and kept >= 1:
        return []
    return [f"{where} iterates over {source['producerTask']}.{output}, which may be empty: the backend then fails the Collected"
            " fan-in after the loop; loop over an output that keeps at least one item by a constant"]  # fmt: skip


def resolved(spec: dict, invokers: dict, component_key: str, binding: dict) -> tuple[str, object]:
    """The parameterType of the value behind a binding, traced up through sub-DAGs to the pipeline's
    own parameters (a sub-DAG need not declare what it passes through), or `constant`; and its value
    as compiled (the constant, or the pipeline parameter's default; None when there is none)."""
    if "taskOutputParameter" in binding:
        return "task output", None
    if "componentInputParameter" not in binding:
        return "constant", binding.get("runtimeValue", {}).get("constant")
    name = binding["componentInputParameter"]
    component = spec["root"] if component_key == "root" else spec["components"][component_key]
    if component_key in invokers:
        parent_key, task = invokers[component_key]
        upstream = task.get("inputs", {}).get("parameters", {}).get(name)
        if upstream is not None:
            return resolved(spec, invokers, parent_key, upstream)
    declared = component.get("inputDefinitions", {}).get("parameters", {}).get(name, {})
    return declared.get("parameterType", "undeclared"), declared.get("defaultValue")
