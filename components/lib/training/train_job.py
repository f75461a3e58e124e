"""A Kubeflow Trainer TrainJob running this project's train stage on several nodes: its manifest, checked
with the Trainer's own Python models, and the Kubernetes calls that create, watch and delete it.

What the Trainer does with it (kubeflow/trainer v2.3.0, read, not run): the `torch-distributed`
ClusterTrainingRuntime has one replicated job, `node`, whose container `node` takes `trainer.image`,
`command` and `args` as given (pkg/runtime/framework/plugins/jobset/builder.go, Trainer); the torch
plugin (plugins/torch/torch.go, EnforceMLPolicy) adds PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
PET_MASTER_ADDR (<job>-node-0-0.<job>) and PET_MASTER_PORT (29500), and refuses them in `env`. train
reads those and relaunches itself under torchrun (components/train.py, relaunch_under_torchrun).
Pod settings go through `runtimePatches` (v2.2+: podTemplateOverrides is gone). The job's Failed
condition is JobSet's ("jobset failed due to one or more job failures ..."), never the training's
own error, so the pods' terminated states and logs are read while the job runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from components.lib.errors import UserError
from components.lib.runtime import HUB_TOKEN_VARIABLE, IMAGE_USER_ID, S3_CREDENTIAL_KEYS, S3_OPTIONAL_CREDENTIAL_KEYS
from components.lib.serving.kubernetes_api import api_message

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
NODE = "node"  # the runtime's replicated job and container (kubeflow/trainer pkg/constants, Node)
PATCH_MANAGER = "textclf.io/pipeline"  # a runtime patch's owner: a domain-prefixed path (plugins/jobset/jobset.go, Validate)
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"  # on every pod of the job; the JobSet is named after the TrainJob
RANK_LABEL = "batch.kubernetes.io/job-completion-index"  # a node pod's rank (PET_NODE_RANK comes from it)
GPU = "nvidia.com/gpu"
PLAIN_ENV = ("AWS_ENDPOINT_URL", "AWS_REGION", "PYTHONUNBUFFERED")  # this step's own, no secret: handed on as values
# torchrun reads every PET_<OPTION> as its --option (torch/distributed/argparse_util.py, env); the torch plugin sets five
# of them itself and refuses a job that names one in env (plugins/torch/torch.go, Validate: TorchRunReservedEnvNames).
TRAINER_ENV_PREFIX = "PET_"
NAME_PREFIX = "textclf-train-"


@dataclass(frozen=True)
class NodeSecrets:
    """The Secrets every pipeline task takes keys of, for the node containers too: by reference (the kubelet
    resolves them; no value is copied into the job)."""

    s3_secret_name: str
    tracking_secret_name: str = ""
    tracking_secret_keys: tuple[str, ...] = ()
    hub_token_secret_name: str = ""  # its key HF_TOKEN: a private or gated base model

    def entries(self) -> list[dict]:
        from_secrets = [
            (self.s3_secret_name, S3_CREDENTIAL_KEYS, False),
            (self.s3_secret_name, S3_OPTIONAL_CREDENTIAL_KEYS, True),
            (self.tracking_secret_name, self.tracking_secret_keys, False),
            (self.hub_token_secret_name, (HUB_TOKEN_VARIABLE,) if self.hub_token_secret_name else (), False),
        ]
        return [secret_reference(name, key, optional) for name, keys, optional in from_secrets for key in keys]


@dataclass(frozen=True)
class NodeEnv:
    """What every node container gets in env: the Secrets' keys by reference, and plain variables as values."""

    secrets: NodeSecrets
    plain: dict[str, str]

    def entries(self) -> list[dict]:
        return self.secrets.entries() + [{"name": key, "value": value} for key, value in sorted(self.plain.items())]


@dataclass(frozen=True)
class NodeShape:
    """What each node of the job gets: GPUs (text, as the pipeline's gpu_count), CPU and memory, placement."""

    gpus: str
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    node_selector: dict
    toleration: dict
    image_pull_secrets: tuple[str, ...] = ()
    shm_size: str = "2Gi"


def job_name(run_id: str, trial: str) -> str:
    """One name per run and trial, so a retried step finds the job it started: an RFC 1035 label (the Trainer's rule)."""
    return NAME_PREFIX + hashlib.sha256(f"{run_id}/{trial}".encode()).hexdigest()[:16]


def render(name: str, image: str, runtime: str, nodes: int, shape: NodeShape, args: list[str], env: NodeEnv) -> dict:
    gpus = int(shape.gpus)
    limits = {"cpu": shape.cpu_limit, "memory": shape.memory_limit, **({GPU: str(gpus)} if gpus else {})}
    trainer = {
        "image": image,
        "command": ["python3", "-m", "components.train"],
        "args": args,
        "numNodes": nodes,
        "numProcPerNode": max(gpus, 1),
        "resourcesPerNode": {"limits": limits, "requests": {"cpu": shape.cpu_request, "memory": shape.memory_request}},
        "env": env.entries(),
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "textclf"}},
        "spec": {"runtimeRef": {"name": runtime}, "trainer": trainer, "runtimePatches": [pod_patch(shape)]},
    }


def secret_reference(secret_name: str, key: str, optional: bool) -> dict:
    """The variable `key` from the Secret's key of that name, as every pipeline task gets its Secrets' keys."""
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key, **({"optional": True} if optional else {})}}}


def pod_patch(shape: NodeShape) -> dict:
    """The node pods' placement, user and scratch volumes: the train task's own (pipelines/pipeline.py, place_on_gpu)."""
    user = {"runAsUser": IMAGE_USER_ID, "runAsGroup": IMAGE_USER_ID, "runAsNonRoot": True}
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shape.shm_size}}, {"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    pod = {
        "nodeSelector": shape.node_selector,
        "tolerations": [shape.toleration] if shape.toleration else [],
        "securityContext": user,
        "volumes": volumes,
        "containers": [{"name": NODE, "volumeMounts": mounts}],
        **({"imagePullSecrets": [{"name": name} for name in shape.image_pull_secrets]} if shape.image_pull_secrets else {}),
    }
    replicated = {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}
    return {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}}}


def validated(manifest: dict) -> dict:
    """The manifest as Kubeflow Trainer's own models read it (kubeflow-trainer-api): a field of the wrong
    type or a missing one is refused in one line; a field they do not know (they drop it silently) too."""
    import pydantic
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    try:
        read = TrainerV1alpha1TrainJob.from_dict(manifest)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        raise UserError(f"TrainJob {manifest['metadata']['name']}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if read is None or read.to_dict() != manifest:
        raise UserError(f"TrainJob {manifest['metadata']['name']}: fields Kubeflow Trainer v2.3 does not know: {unknown(manifest, read)}")
    return manifest


def unknown(manifest: dict, read) -> str:
    kept = read.to_dict() if read is not None else {}
    return json.dumps({key: value for key, value in manifest.get("spec", {}).items() if key not in kept.get("spec", {})})


def progress_line(job: dict) -> str:
    """What the job's status says now: its conditions, its node jobs, and the Trainer's progress where the cluster fills it."""
    status = job.get("status", {})
    parts = [f"{condition['type']}" + (f" ({condition.get('reason')})" if condition.get("reason") else "")
             for condition in status.get("conditions", []) if condition.get("status") == "True"]  # fmt: skip
    for jobs in status.get("jobsStatus", []):
        counts = ", ".join(f"{key} {jobs[key]}" for key in ("active", "ready", "succeeded", "failed") if jobs.get(key))
        parts.append(f"{jobs.get('name')} jobs: {counts or 'none yet'}")
    trainer = status.get("trainerStatus") or {}
    if trainer.get("progressPercentage") is not None:
        left = trainer.get("estimatedRemainingSeconds")
        parts.append(f"progress {trainer['progressPercentage']}%" + (f", about {left} s left" if left is not None else ""))
    return "; ".join(parts) or "pending (no status yet)"


def condition(job: dict, kind: str) -> dict | None:
    return next((c for c in job.get("status", {}).get("conditions", []) if c.get("type") == kind and c.get("status") == "True"), None)


@dataclass(frozen=True)
class NodeExit:
    rank: str
    exit_code: int
    message: str


class TrainJobs:
    """create / get / delete of TrainJobs in one namespace, and the exits of their node containers."""

    def __init__(self, custom, core, namespace: str) -> None:
        self.custom, self.core, self.namespace = custom, core, namespace

    def get(self, name: str) -> dict | None:
        return self.call("read", name, lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name), True)

    def create(self, manifest: dict) -> dict:
        name = manifest["metadata"]["name"]
        return self.call("create", name, lambda: self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest, field_validation="Strict"))  # fmt: skip

    def delete(self, name: str) -> None:
        self.call("delete", name, lambda: self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name), True)

    def node_exits(self, name: str) -> list[NodeExit]:
        """Every non-zero exit of a node container so far (the kubelet restarts it in place: the last one is in lastState)."""
        selector = f"{JOBSET_LABEL}={name}"
        pods = self.call("list the pods of", name, lambda: self.core.list_namespaced_pod(self.namespace, label_selector=selector))
        exits = []
        for pod in pods.items:
            for status in pod.status.container_statuses or []:
                if status.name != NODE:
                    continue
                for state in (status.state, status.last_state):
                    ended = state.terminated if state else None
                    if ended and ended.exit_code:
                        rank = (pod.metadata.labels or {}).get(RANK_LABEL) or (pod.metadata.annotations or {}).get(RANK_LABEL, "?")
                        exits.append(NodeExit(rank, ended.exit_code, (ended.message or "").strip() or self.log_tail(pod.metadata.name)))
        return exits

    def log_tail(self, pod: str) -> str:
        lines = self.call("read the log of", pod,
                          lambda: self.core.read_namespaced_pod_log(pod, self.namespace, container=NODE, tail_lines=20))  # fmt: skip
        return next((line for line in reversed((lines or "").splitlines()) if line.strip()), "")

    def call(self, verb: str, name: str, request, missing_is_none: bool = False) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        where = f"TrainJob {self.namespace}/{name}"
        try:
            return request()
        except ApiException as error:
            if missing_is_none and error.status == 404:
                return None
            if error.status == 403:
                raise UserError(f"{where}: the service account may not {verb} it; apply manifests/base (role.yaml)") from None
            if error.status == 404:
                raise UserError(f"{where}: the cluster has no {GROUP}/{VERSION} {PLURAL}: is Kubeflow Trainer (v2.2+) installed?") from None
            raise UserError(f"{where}: the API server refused to {verb} it ({error.status}): {api_message(error)}") from None
        except HTTPError as error:
            host = self.custom.api_client.configuration.host
            raise UserError(f"{where}: cannot reach the Kubernetes API at {host} ({type(error).__name__})") from None
