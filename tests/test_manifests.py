"""The Kubernetes manifests: they render, validate, and never overwrite the user's S3 keys."""

import shutil

import pytest

from pipelines import manifests_check
from tests.conftest import REPO

EMPTY_SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: textclf-s3
stringData:
  AWS_ACCESS_KEY_ID: ""
  AWS_SECRET_ACCESS_KEY: ""
"""


def test_every_kustomization_renders_and_validates():
    assert manifests_check.main([str(REPO / "manifests")]) == 0


def test_a_secret_in_the_base_is_refused_because_applying_it_would_wipe_the_keys(tmp_path):
    """The README creates the S3 Secret with kubectl, then applies the base: an empty Secret there
    (as the base once held) would overwrite the keys."""
    base = tmp_path / "base"
    shutil.copytree(REPO / "manifests" / "base", base)
    (base / "s3-credentials-secret.yaml").write_text(EMPTY_SECRET)
    kustomization = base / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("resources:\n", "resources:\n  - s3-credentials-secret.yaml\n"))
    problems = manifests_check.check_folder(base)
    assert any("Secret/textclf-s3: the base must hold no Secret" in problem for problem in problems), problems


def base_with(tmp_path, change) -> list[str]:
    """The base copied, `change(folder)` applied, then checked."""
    base = tmp_path / "base"
    shutil.copytree(REPO / "manifests" / "base", base)
    change(base)
    return manifests_check.check_folder(base)


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} has no {old!r}"
    path.write_text(text.replace(old, new))


WORKFLOW_TASK_RESULTS = """  - apiGroups: ["argoproj.io"]
    resources: ["workflowtaskresults"]
    verbs: ["create", "patch"]
"""
PODS = """  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch", "patch"]
"""
TRAIN_JOBS = """  - apiGroups: ["trainer.kubeflow.org"]
    resources: ["trainjobs"]
    verbs: ["get", "create", "delete"]
"""
SECRET_REF = """          fromEnv: false
          secretRef:
            secretName: {name}
            accessKeyKey: AWS_ACCESS_KEY_ID
            secretKeyKey: AWS_SECRET_ACCESS_KEY"""
PRIORITY_CLASS = """apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: textclf-gpu-training
value: 100000
"""


def add_resource(base, name: str, text: str) -> None:
    (base / name).write_text(text)
    edit(base / "kustomization.yaml", "resources:\n", f"resources:\n  - {name}\n")


@pytest.mark.parametrize(
    "change, complaint",
    [
        # Argo's executor reports every task's outputs (the driver's pod-spec patch too) as WorkflowTaskResults.
        (lambda base: edit(base / "role.yaml", WORKFLOW_TASK_RESULTS, ""), "lacks create, patch on argoproj.io workflowtaskresults"),
        (lambda base: edit(base / "role.yaml", WORKFLOW_TASK_RESULTS, WORKFLOW_TASK_RESULTS.replace(', "patch"', "")),
         "lacks patch on argoproj.io workflowtaskresults"),
        (lambda base: edit(base / "role.yaml", 'resourceNames: ["kfp-launcher"]', 'resourceNames: ["other"]'),
         "lacks get on core configmaps/kfp-launcher"),
        (lambda base: edit(base / "role.yaml", WORKFLOW_TASK_RESULTS, WORKFLOW_TASK_RESULTS + PODS),
         "grants get, patch, watch on core pods, which nothing in the pipeline uses"),  # list: train_job's
        (lambda base: edit(base / "role.yaml", TRAIN_JOBS, ""), "lacks create, delete, get on trainer.kubeflow.org trainjobs"),
        # A launcher that reads a Secret itself needs get on it, and it must be the tasks' Secret.
        (lambda base: edit(base / "kfp-launcher-configmap.yaml", "          fromEnv: true", SECRET_REF.format(name="textclf-s3")),
         "lacks get on core secrets/textclf-s3"),
        (lambda base: edit(base / "kfp-launcher-configmap.yaml", "          fromEnv: true", SECRET_REF.format(name="other-keys")),
         "reads Secret 'other-keys', the tasks' s3_secret_name is 'textclf-s3'"),
        (lambda base: edit(base / "kfp-launcher-configmap.yaml", "          fromEnv: true", "          fromEnv: false"),
         "fromEnv is false and no secretRef.secretName; the KFP driver fails on it"),
        (lambda base: add_resource(base, "priority.yaml", PRIORITY_CLASS), "PriorityClass/textclf-gpu-training: cluster-scoped"),
        (lambda base: edit(base / "kustomization.yaml", "  - role.yaml\n", ""), "no Role/textclf-pipeline-runner; a run in the namespace needs it"),
        (lambda base: edit(base / "kfp-launcher-configmap.yaml", "          fromEnv: true",
                           "          fromEnv: true\n      overrides:\n        - bucketName: b\n          maxRetries: 3\n          credentials: {fromEnv: true}"),
         "s3 override 0: maxRetries without one in the default; the KFP driver fails on it"),
        (lambda base: edit(base / "role.yaml", 'verbs: ["create", "patch"]', 'verbs: ["*"]'), "grants * on argoproj.io workflowtaskresults"),
    ],
)  # fmt: skip
def test_the_runner_role_and_launcher_config_hold_what_the_backend_needs_and_no_more(tmp_path, change, complaint):
    problems = base_with(tmp_path, change)
    assert any(complaint in problem for problem in problems), problems


def test_the_shipped_role_grants_exactly_what_is_needed():
    for folder in ("base", "overlays/minio-dev"):
        assert manifests_check.check_folder(REPO / "manifests" / folder) == [], folder
