"""`make lint`: structural checks of compiled pipeline YAML, beyond what the compiler checks.

    python -m pipelines.lint build/pipeline.yaml [build/sweep.yaml]

- the six stages are there, wired preprocess -> tokenize -> train -> evaluate -> export -> register,
  with register behind the quality gate;
- only train asks for a GPU, a GPU node selector, a toleration and /dev/shm;
- every task gets the S3 credentials from a Kubernetes Secret, and no credential is written down;
- image tags are pinned, never `latest`;
- preprocess and tokenize are cached, train and register are not, and every task retries; train's
  retry window outlasts a long run;
- every pod-spec field bound to a runtime parameter has a value kind the KFP driver can read
  (`check_runtime_bindings`), and every task has a writable /tmp.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from pipelines.pipeline import KFOLD_PIPELINE_NAME, PULL_POLICIES
from pipelines.stages import ALL_STAGES, CACHE_SCOPE, OPTIONAL_STAGES, STAGES

SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# Stages that read some splits of the tokenized data: the launcher downloads every input artifact
# whole before the container starts (backend/src/v2/component/launcher_v2.go, downloadArtifacts).
PARTIAL_READERS = ("train", "evaluate", "export")
TRAIN_RETRY_WINDOW_FLOOR_S = 86400  # Argo kills a retried attempt at first start + backoffMaxDuration
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


CREDENTIAL_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"(?i)(aws_secret_access_key|secret_key|password|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._-]{20,}"),
]


def load(path: Path) -> tuple[dict, dict]:
    documents = list(yaml.safe_load_all(path.read_text()))
    platform = (
        documents[1].get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {}) if len(documents) > 1 else {}
    )
    return documents[0], platform


def all_tasks(dag: dict, spec: dict, inherited: frozenset = frozenset(), gated: tuple = (), groups: dict | None = None):
    """Every leaf task, descending into sub-DAGs (conditions, loops), with the tasks it directly runs
    after and the conditions that guard it (empty: none). A task in a sub-DAG runs after whatever its sub-DAG
    runs after; `groups` collects, per sub-DAG task, the leaf tasks inside it."""
    groups = {} if groups is None else groups
    for name, task in dag.get("tasks", {}).items():
        component = spec["components"][task["componentRef"]["name"]]
        upstream = inherited | upstream_tasks(task)
        if "dag" in component:
            conditions = gated + ((task["triggerPolicy"].get("condition", ""),) if "triggerPolicy" in task else ())
            inner = list(all_tasks(component["dag"], spec, frozenset(upstream), conditions, groups))
            groups[name] = {leaf for leaf, *_ in inner}
            yield from inner
        else:
            yield name, task, upstream, gated


def runs_after(found: dict, groups: dict) -> dict[str, set[str]]:
    """Every leaf task's transitive upstream leaf tasks (sub-DAG names expanded to their leaves)."""
    direct = {name: {leaf for item in upstream for leaf in groups.get(item, {item})} for name, (_, upstream, _) in found.items()}
    closure = {}
    for name in direct:
        seen, stack = set(), list(direct[name])
        while stack:
            item = stack.pop()
            if item not in seen:
                seen.add(item)
                stack.extend(direct.get(item, ()))
        closure[name] = seen
    return closure


def upstream_tasks(task: dict) -> set[str]:
    found = set(task.get("dependentTasks", []))
    for artifact in task.get("inputs", {}).get("artifacts", {}).values():
        producer = artifact.get("taskOutputArtifact", {}).get("producerTask")
        if producer:
            found.add(producer)
    return found


def stage_of(task: dict) -> str:
    """comp-train -> train; comp-train-2 (a second use of the component) -> train."""
    return re.sub(r"-\d+$", "", task["componentRef"]["name"].removeprefix("comp-"))


def check_pipeline(path: Path) -> list[str]:
    spec, platform = load(path)
    groups: dict = {}
    found = {name: (task, upstream, gated) for name, task, upstream, gated in all_tasks(spec["root"]["dag"], spec, groups=groups)}
    closure = runs_after(found, groups)
    found = {name: (task, closure[name], gated) for name, (task, _, gated) in found.items()}
    executors = spec["deploymentSpec"]["executors"]
    stages = expected_stages(spec)
    stage_tasks = {name: entry for name, entry in found.items() if stage_of(entry[0]) in ALL_STAGES}
    missing = [stage for stage in stages if stage not in {stage_of(task) for task, _, _ in stage_tasks.values()}]
    if missing:
        return [f"{path}: stages missing: {', '.join(missing)}"]
    problems = check_edges(path, stage_tasks, stages)
    for name, (task, _, _) in stage_tasks.items():
        problems += check_task(path, name, task, executors, platform)
    return problems + check_runtime_bindings(path, spec, platform) + check_importers(path, spec) + check_text(path)


def expected_stages(spec: dict) -> tuple[str, ...]:
    """A K-fold run ends at evaluate: it compares configurations and releases nothing (pipeline.py, wire_kfold)."""
    return STAGES[: STAGES.index("evaluate") + 1] if spec["pipelineInfo"]["name"] == KFOLD_PIPELINE_NAME else STAGES


def check_edges(path: Path, stage_tasks: dict, stages: tuple[str, ...]) -> list[str]:
    """Each stage runs (transitively) after the one before it, and register only behind a condition."""
    by_stage = {stage_of(task): (name, upstream, gated) for name, (task, upstream, gated) in stage_tasks.items()}
    problems = []
    for upstream_stage, downstream_stage in zip(stages, stages[1:], strict=False):
        upstream_name = by_stage[upstream_stage][0]
        name, upstream, _ = by_stage[downstream_stage]
        if upstream_name not in upstream:
            problems.append(f"{path}: {name} does not run after {upstream_name}")
    if "register" in stages and not by_stage["register"][2]:
        problems.append(f"{path}: register is not behind the quality gate (dsl.If)")
    for stage in OPTIONAL_STAGES:  # each behind the pipeline parameter of its name (pipeline.py, wire_deploy)
        if stage in by_stage and "register" in by_stage:
            name, upstream, conditions = by_stage[stage]
            if by_stage["register"][0] not in upstream or not any(f"pipelinechannel--{stage}'" in text for text in conditions):
                problems.append(f"{path}: {name} does not run after register behind a condition on the parameter {stage}")
    return problems


def check_task(path: Path, name: str, task: dict, executors: dict, platform: dict) -> list[str]:
    stage = stage_of(task)
    executor_name = task["componentRef"]["name"].replace("comp-", "exec-", 1)
    container = executors[executor_name]["container"]
    kubernetes = platform.get(executor_name, {})
    problems = []
    is_train = stage == "train"
    has_gpu = "accelerator" in container.get("resources", {})
    gpu_placement = {key for key in ("nodeSelector", "tolerations") if key in kubernetes}
    if any(mount["mountPath"] == "/dev/shm" for mount in kubernetes.get("emptyDirMounts", [])):
        gpu_placement.add("/dev/shm")
    if is_train and not (has_gpu and len(gpu_placement) == 3):
        problems.append(f"{path}: train lacks its GPU request, node selector, toleration or /dev/shm")
    if not is_train and (has_gpu or gpu_placement):
        problems.append(f"{path}: {name} asks for GPU placement ({', '.join(sorted(gpu_placement)) or 'accelerator'}); only train may")
    from_secret = {entry["envVar"] for source in kubernetes.get("secretAsEnv", []) for entry in source.get("keyToEnv", [])}
    if not from_secret >= SECRET_ENV:
        problems.append(f"{path}: {name} does not take {', '.join(sorted(SECRET_ENV - from_secret))} from a Kubernetes Secret")
    literal_env = {entry["name"] for entry in container.get("env", [])}
    if literal_env & SECRET_ENV:
        problems.append(f"{path}: {name} sets {', '.join(sorted(literal_env & SECRET_ENV))} as a literal value")
    problems += check_image(path, name, container["image"])
    cached = task.get("cachingOptions", {}).get("enableCache", False)
    if stage in ("preprocess", "tokenize") and not cached:
        problems.append(f"{path}: {name} should be cached")
    if stage in ("train", "register", *OPTIONAL_STAGES) and cached:
        problems.append(f"{path}: {name} should not be cached by default")
    for artifact, source in task.get("inputs", {}).get("artifacts", {}).items():
        producer = source.get("taskOutputArtifact", {}).get("producerTask", "")
        if stage in PARTIAL_READERS and stage_of({"componentRef": {"name": f"comp-{producer}"}}) == "tokenize":
            problems.append(
                f"{path}: {name} takes tokenize's Dataset as the artifact {artifact!r}; the launcher downloads all of it first:"
                " pass tokenized_uri and let the stage fetch the splits it reads"
            )
    if CACHE_SCOPE not in task.get("inputs", {}).get("parameters", {}):
        problems.append(f"{path}: {name} has no {CACHE_SCOPE} input; a cached result could point into another store")
    if not task.get("retryPolicy", {}).get("maxRetryCount"):
        problems.append(f"{path}: {name} has no retry policy")
    window = task.get("retryPolicy", {}).get("backoffMaxDuration", "0s")
    if is_train and int(window.rstrip("s")) < TRAIN_RETRY_WINDOW_FLOOR_S:
        problems.append(
            f"{path}: {name} retries only within {window} of its first attempt; a preempted long run would not resume"
            f" (kubeflow.train_retry_window, at least {TRAIN_RETRY_WINDOW_FLOOR_S}s)"
        )
    if "/tmp" not in {mount["mountPath"] for mount in kubernetes.get("emptyDirMounts", [])}:
        problems.append(f"{path}: {name} has no emptyDir at /tmp, where the launcher writes output parameters")
    return problems


def dag_components(spec: dict):
    """(key, component) for the root and every sub-DAG (conditions, loops)."""
    yield "root", spec["root"]
    for key, component in spec["components"].items():
        if "dag" in component:
            yield key, component


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


def check_image(path: Path, name: str, image: str) -> list[str]:
    if "@sha256:" in image:
        return []
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag or tag == "latest":
        return [f"{path}: {name} image {image!r} is not pinned to a tag (never latest)"]
    return []


def check_text(path: Path) -> list[str]:
    text = path.read_text()
    return [
        f"{path}: looks like a literal credential: {match.group(0)[:12]}..."
        for pattern in CREDENTIAL_PATTERNS
        for match in pattern.finditer(text)
    ]


def main(argv: list[str] | None = None) -> int:
    paths = [Path(argument) for argument in (argv if argv is not None else sys.argv[1:])]
    problems: list[Any] = [problem for path in paths for problem in check_pipeline(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"pipeline lint: {len(paths)} file(s) ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
