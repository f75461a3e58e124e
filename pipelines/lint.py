"""`make lint`: structural checks of compiled pipeline YAML, beyond what the compiler checks.

    python -m pipelines.lint build/pipeline.yaml [build/sweep.yaml]

- the six stages are there, wired preprocess -> tokenize -> train -> evaluate -> export -> register,
  with register behind the quality gate;
- only train asks for a GPU, a GPU node selector, a toleration and /dev/shm;
- every task gets the S3 credentials from a Kubernetes Secret, and no credential is written down;
- image tags are pinned, never `latest`;
- preprocess and tokenize are cached, train and register are not, and every task retries;
- the backend's own rules (pipelines/backend_rules.py, docs/kubeflow-contract.md): bindings the
  driver can resolve, importers it can run, a retry window that outlasts a long train, a writable
  /tmp, the store in every cache key, no whole-Dataset downloads, a non-root user.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from components.lib.credentials import credentials_in
from pipelines import backend_rules
from pipelines.backend_rules import stage_of
from pipelines.pipeline import KFOLD_PIPELINE_NAME
from pipelines.stages import ALL_STAGES, OPTIONAL_STAGES, STAGES

STAND_INS = {"train-job": "train"}  # a component standing in for a stage of the DAG (pipelines/pipeline.py, train_job_task)

SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


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


def check_pipeline(path: Path) -> list[str]:
    spec, platform = load(path)
    groups: dict = {}
    found = {name: (task, upstream, gated) for name, task, upstream, gated in all_tasks(spec["root"]["dag"], spec, groups=groups)}
    closure = runs_after(found, groups)
    found = {name: (task, closure[name], gated) for name, (task, _, gated) in found.items()}
    stages = expected_stages(spec)
    stage_tasks = {name: entry for name, entry in found.items() if slot_of(entry[0]) in ALL_STAGES}
    missing = [stage for stage in stages if stage not in {slot_of(task) for task, _, _ in stage_tasks.values()}]
    if missing:
        return [f"{path}: stages missing: {', '.join(missing)}"]
    problems = check_edges(path, stage_tasks, stages)
    for name, (task, _, _) in stage_tasks.items():
        problems += check_task(path, name, task, spec, platform)
    return (
        problems
        + backend_rules.check_runtime_bindings(path, spec, platform)
        + backend_rules.check_importers(path, spec)
        + backend_rules.check_loop_items(path, spec)
        + check_text(path)
    )


def slot_of(task: dict) -> str:
    """The DAG stage a task fills: its own, or train for train_job (train on several nodes, as a TrainJob)."""
    return STAND_INS.get(stage_of(task), stage_of(task))


def expected_stages(spec: dict) -> tuple[str, ...]:
    """A K-fold run ends at evaluate: it compares configurations and releases nothing (pipeline.py, wire_kfold)."""
    return STAGES[: STAGES.index("evaluate") + 1] if spec["pipelineInfo"]["name"] == KFOLD_PIPELINE_NAME else STAGES


def check_edges(path: Path, stage_tasks: dict, stages: tuple[str, ...]) -> list[str]:
    """Each stage runs (transitively) after the one before it, and register only behind a condition."""
    by_stage = {slot_of(task): (name, upstream, gated) for name, (task, upstream, gated) in stage_tasks.items()}
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


def check_task(path: Path, name: str, task: dict, spec: dict, platform: dict) -> list[str]:
    stage = stage_of(task)
    executor_name = task["componentRef"]["name"].replace("comp-", "exec-", 1)
    container = spec["deploymentSpec"]["executors"][executor_name]["container"]
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
    if not task.get("retryPolicy", {}).get("maxRetryCount"):
        problems.append(f"{path}: {name} has no retry policy")
    component = spec["components"][task["componentRef"]["name"]]
    return problems + backend_rules.check_container_task(f"{path}: {name}", stage, task, component, kubernetes)


def check_image(path: Path, name: str, image: str) -> list[str]:
    if "@sha256:" in image:
        return []
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag or tag == "latest":
        return [f"{path}: {name} image {image!r} is not pinned to a tag (never latest)"]
    return []


def check_text(path: Path) -> list[str]:
    return [f"{path}: looks like a literal credential ({kind}): {start}..." for kind, start in credentials_in(path.read_text())]


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
