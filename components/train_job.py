"""train_job: the train stage on several nodes, as a Kubeflow Trainer TrainJob (kubeflow.train_nodes above 1).

    python -m components.train_job --data_uri s3://b/tokenized --output_uri s3://b/model --image IMAGE --nodes 2 \\
        --checkpoint_uri s3://b/checkpoints --run_id RUN [--gpus_per_node 1] [train's flags ...]

It creates a TrainJob (components/lib/training/train_job.py) whose node containers run
`python3 -m components.train` with train's flags and this step's S3 URIs: train joins the nodes under
torchrun from the PET_* variables the Trainer gives each node, rank 0 alone writes the model to
--output_uri, and checkpoints go to <checkpoint_uri>/<run_id>/<trial>. This step then follows the
job: its conditions, node jobs and progress (where the cluster reports it) as they change, and the
exit of every node container. A node that ends with a user's mistake (exit status 2) ends the job at
once with that node's own line; a job that fails otherwise fails this step with the node's exit and
last log line. On Kubeflow the model is written straight to this step's Model artifact (its S3 URI),
which evaluate and export read as they read train's. A retried step finds the job by its name (one
per run and trial): a running one is followed, a failed one started again, resuming from its checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import time

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import BASE_MODEL, TRUST_REMOTE_CODE, takes_common_flags
from components.lib.credentials import CREDENTIAL_NAME, credential_in
from components.lib.data.contract import TRAIN_SUMMARY_FILE, require_output_of
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from components.lib.runtime import S3_SECRET_NAME
from components.lib.serving.kubernetes_api import load_cluster
from components.lib.stage_outputs import BEST_VALIDATION_VALUE_OUTPUT, MODEL_ARTIFACT, MODEL_URI_OUTPUT
from components.lib.storage.artifacts import staged_input
from components.lib.training.settings import TrainConfig, takes_settings
from components.lib.training.train_job import (
    PLAIN_ENV,
    TRAINER_ENV_PREFIX,
    NodeEnv,
    NodeExit,
    NodeSecrets,
    NodeShape,
    TrainJobs,
    condition,
    job_name,
    progress_line,
    render,
    validated,
)

log = logging.getLogger("components.train_job")
DEFAULT_RUNTIME = "torch-distributed"  # the ClusterTrainingRuntime Kubeflow Trainer installs for PyTorch


@takes_common_flags
def train_job(
    *,
    data_uri: str,
    output_uri: str,
    image: str,
    node_selector: dict,
    toleration: dict,
    base_model: str = BASE_MODEL.default,
    checkpoint_uri: str = "",
    run_id: str = "",
    trial: str = "",
    keep_checkpoints_after_training: bool = False,
    report_to: str = "tensorboard",
    trust_remote_code: bool = TRUST_REMOTE_CODE.default,
    nodes: int = 2,
    gpus_per_node: str = "1",
    cpu_request: str = "4",
    cpu_limit: str = "8",
    memory_request: str = "16Gi",
    memory_limit: str = "32Gi",
    s3_secret_name: str = S3_SECRET_NAME,
    image_pull_secrets: str = "",
    tracking_env_names: str = "",
    tracking_secret_name: str = "",
    tracking_secret_keys: str = "",
    hub_token_secret_name: str = "",
    runtime: str = DEFAULT_RUNTIME,
    namespace: str = "",
    poll_seconds: float = 15.0,
    executor_input: str = "",
    **settings,
) -> StageResult:
    """Train on several nodes through a Kubeflow Trainer TrainJob; follow it to its end.

    Args:
      data_uri: Folder (s3://) written by tokenize: the nodes read it themselves.
      output_uri: Folder for the model; on Kubeflow the Model artifact's own S3 URI is used.
      image: The image the nodes run (the CUDA image).
      node_selector: Node selector of the node pods ({} for none).
      toleration: A toleration of the node pods (a Kubernetes toleration object; {} for none).
      checkpoint_uri: Run-stable folder (s3://) for checkpoints, which every node resumes from.
      run_id: Sub-folder of checkpoint_uri for this run, and with trial the TrainJob's name.
      trial: Sub-folder of run_id for one trial of a sweep; empty outside sweeps.
      keep_checkpoints_after_training: Keep the checkpoints once the model is committed.
      report_to: Comma-separated reporters: tensorboard, mlflow, wandb, or none.
      nodes: Nodes of the job (numNodes), at least 2.
      gpus_per_node: GPUs per node, as text (the pipeline's gpu_count); one training process each.
      cpu_request: CPU request of each node.
      cpu_limit: CPU limit of each node.
      memory_request: Memory request of each node.
      memory_limit: Memory limit of each node.
      s3_secret_name: Kubernetes Secret with the S3 keys, which the node containers take as env.
      image_pull_secrets: Comma-separated Secrets the node pods pull the image with; empty: none.
      tracking_env_names: Comma-separated plain variables of this step (kubeflow.tracking_env: MLFLOW_TRACKING_URI,
        ...) handed on to every node as values; a credential among them is refused.
      tracking_secret_name: Secret with the tracking credentials (kubeflow.tracking_secret_name), which the node
        containers take as env by reference.
      tracking_secret_keys: Comma-separated keys of tracking_secret_name, each the variable of that name.
      hub_token_secret_name: Secret whose key HF_TOKEN the nodes take as HF_TOKEN (a private or gated base model); empty: none.
      runtime: The ClusterTrainingRuntime the job runs on.
      namespace: Where the job goes; empty: this pod's namespace (or the kubeconfig's).
      poll_seconds: Seconds between two looks at the job and its pods.
    """
    config = TrainConfig(**settings)
    config.check()
    if nodes < 2:
        raise UserError(f"--nodes: a TrainJob of {nodes} node(s); one node trains in the train stage itself (kubeflow.train_nodes: 1)")
    if not gpus_per_node.isdigit():
        raise UserError(f"--gpus_per_node {gpus_per_node!r}: must be a whole number")
    model_uri = assigned_uri(executor_input, MODEL_ARTIFACT) or output_uri
    for flag, uri in (("--data_uri", data_uri), ("--output_uri", model_uri), ("--checkpoint_uri", checkpoint_uri)):
        if not storage.is_s3(uri):
            raise UserError(f"{flag} {uri!r}: the TrainJob's nodes share no disk with this step; give an s3:// URI")
    secrets = NodeSecrets(s3_secret_name, tracking_secret_name, names_in(tracking_secret_keys), hub_token_secret_name)
    env = node_env(names_in(tracking_env_names), secrets)
    require_output_of("tokenize", data_uri, "--data_uri")
    jobs = connect(namespace)
    name = job_name(run_id, trial)
    pull_secrets = names_in(image_pull_secrets)
    shape = NodeShape(gpus_per_node, cpu_request, cpu_limit, memory_request, memory_limit, node_selector, toleration, pull_secrets)
    args = train_args(data_uri, model_uri, base_model, checkpoint_uri, run_id, trial, keep_checkpoints_after_training, report_to,
                      trust_remote_code, gpus_per_node, settings)  # fmt: skip
    manifest = validated(render(name, image, runtime, nodes, shape, args, env))
    start_or_attach(jobs, manifest)
    follow(jobs, name, poll_seconds)
    return result(model_uri)


def assigned_uri(executor_input: str, output: str) -> str:
    """The URI Kubeflow assigned an output artifact (the TrainJob writes there; the launcher uploads nothing then)."""
    if not executor_input:
        return ""
    try:
        artifacts = json.loads(executor_input)["outputs"]["artifacts"][output]["artifacts"]
        return artifacts[0]["uri"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(f"--executor_input: has no URI for the output {output}; it is set by Kubeflow") from None


def train_args(data_uri, model_uri, base_model, checkpoint_uri, run_id, trial, keep, report_to, trust_remote_code, gpus,  # noqa: PLR0913
               settings) -> list[str]:  # fmt: skip
    """train's command line on every node: this step's flags, as KFP writes values (booleans as true/false)."""
    flags = {
        "data_uri": data_uri,
        "output_uri": model_uri,
        "base_model": base_model,
        "checkpoint_uri": checkpoint_uri,
        "run_id": run_id,
        "trial": trial,
        "keep_checkpoints_after_training": keep,
        "report_to": report_to,
        "trust_remote_code": trust_remote_code,
        "expected_gpus": gpus,
        "processes": 0,
        **settings,
    }  # fmt: skip  (processes 0: as many as PET_NPROC_PER_NODE)
    return [word for name, value in flags.items() for word in (f"--{name}", json.dumps(value) if isinstance(value, bool) else str(value))]


def names_in(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def node_env(tracking_names: tuple[str, ...], secrets: NodeSecrets) -> NodeEnv:
    """What the nodes need of this step's environment, so that train there reports where it does in one pod:
    the tracking server's address as values, its credentials by reference to their Secret."""
    tracking_keys = secrets.tracking_secret_keys
    if bool(secrets.tracking_secret_name) != bool(tracking_keys):
        raise UserError("--tracking_secret_name and --tracking_secret_keys go together: set both or neither")
    named = [("--tracking_env_names", name) for name in tracking_names] + [("--tracking_secret_keys", key) for key in tracking_keys]
    for flag, name in named:
        if name.startswith(TRAINER_ENV_PREFIX):
            raise UserError(
                f"{flag}: {name}: torchrun takes {TRAINER_ENV_PREFIX}* variables as its options, set by Kubeflow Trainer on each node"
            )
    for name in tracking_names:
        kind = "a credential's name" if CREDENTIAL_NAME.search(name) else credential_in(os.environ.get(name, ""))
        if kind:
            raise UserError(f"--tracking_env_names: {name} holds {kind}, and would be copied into the TrainJob; hand it on through"
                            " --tracking_secret_name and --tracking_secret_keys")  # fmt: skip
    missing = [name for name in tracking_names if not os.environ.get(name)]
    if missing:
        log.warning("%s: not set in this step's environment, so not handed on to the nodes", ", ".join(missing))
    plain = {name: os.environ[name] for name in (*PLAIN_ENV, *tracking_names) if os.environ.get(name)}
    return NodeEnv(secrets, plain)


def connect(namespace: str) -> TrainJobs:
    """The cluster this step runs in (its service account), else the kubeconfig's; refused in one line with neither."""
    from kubernetes import client

    found = load_cluster(namespace)
    if found is None:
        raise UserError("no Kubernetes cluster: a TrainJob needs one (in a pod, its service account; else KUBECONFIG)")
    return TrainJobs(client.CustomObjectsApi(), client.CoreV1Api(), found)


def start_or_attach(jobs: TrainJobs, manifest: dict) -> None:
    name = manifest["metadata"]["name"]
    existing = jobs.get(name)
    if existing is not None and condition(existing, "Failed"):
        log.warning("TrainJob %s/%s: its last attempt failed; starting it again, resuming from its checkpoints", jobs.namespace, name)
        jobs.delete(name)
        wait_until_gone(jobs, name)
        existing = None
    if existing is None:
        jobs.create(manifest)
        log.info("TrainJob %s/%s created: %d nodes of %s", jobs.namespace, name, manifest["spec"]["trainer"]["numNodes"],
                 manifest["spec"]["trainer"]["image"])  # fmt: skip
    else:
        log.info("TrainJob %s/%s exists (a retried step): following it", jobs.namespace, name)


def wait_until_gone(jobs: TrainJobs, name: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while jobs.get(name) is not None:
        if time.monotonic() > deadline:
            raise UserError(f"TrainJob {jobs.namespace}/{name}: still there {seconds:.0f} s after deleting it; delete it by hand")
        time.sleep(1)


def follow(jobs: TrainJobs, name: str, poll_seconds: float) -> None:
    """Until the job completes: each change of its status in a line; a node's user error ends it at once."""
    said, where = "", f"TrainJob {jobs.namespace}/{name}"
    while True:
        job = jobs.get(name)
        if job is None:
            raise UserError(f"{where}: deleted while training; run the step again (it resumes from the checkpoints)")
        line = progress_line(job)
        if line != said:
            log.info("%s: %s", where, line)
            said = line
        if condition(job, "Complete"):
            return
        exits = jobs.node_exits(name)
        mistake = next((exit for exit in exits if exit.exit_code == USER_ERROR_EXIT_CODE), None)
        if mistake:
            jobs.delete(name)
            raise UserError(f"{where}: node {mistake.rank}: {mistake.message.removeprefix('error: ')} (the job is deleted)")
        failed = condition(job, "Failed")
        if failed:
            raise SystemExit(failure_line(where, failed, exits))
        time.sleep(poll_seconds)


def failure_line(where: str, failed: dict, exits: list[NodeExit]) -> str:
    """The job's reason (JobSet's, naming no cause) and what the first failed node said."""
    cause = f"; node {exits[0].rank} exited {exits[0].exit_code}: {exits[0].message}" if exits else ""
    return f"{where} failed ({failed.get('reason', '')}: {failed.get('message', '')}){cause}"


def result(model_uri: str) -> StageResult:
    """train's outputs, read from the model the job's rank 0 committed."""
    with staged_input(model_uri, only=[TRAIN_SUMMARY_FILE]) as (folder, _):
        summary = json.loads((folder / TRAIN_SUMMARY_FILE).read_text())
    best = summary["best"]
    return StageResult(
        summary={
            "stage": "train_job",
            "output_uri": model_uri,
            "best": best,
            "steps": summary["global_steps"],
            "world_size": summary["world_size"],
            "samples_per_second": summary["training_samples_per_second"],
        },  # fmt: skip
        artifact_metadata={MODEL_ARTIFACT: {"best_validation": best, "world_size": summary["world_size"]}},
        parameters={BEST_VALIDATION_VALUE_OUTPUT: float(best["value"]), MODEL_URI_OUTPUT: model_uri},
    )


takes_settings(train_job)

if __name__ == "__main__":
    run_stage(train_job)
