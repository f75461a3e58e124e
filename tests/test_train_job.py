"""train_job: training on several nodes through a Kubeflow Trainer TrainJob.

The TrainJob it renders is read by Kubeflow Trainer's own Python models (kubeflow-trainer-api 2.3.0).
The cluster is a small Kubernetes API on loopback that answers the TrainJob, pod and pod-log endpoints
and plays Kubeflow Trainer's part the way its source says it does (plugins/torch/torch.go,
EnforceMLPolicy; plugins/jobset/jobset.go, Status): for each of numNodes it starts the trainer's command
with the trainer's env (secretKeyRef values resolved from its Secrets, as the kubelet does) plus the
PET_* variables, on loopback; the job is Complete when every node exits 0, else Failed with JobSet's
message. The data, checkpoints and model are on the loopback S3 server, as on a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from components.lib.errors import UserError
from components.lib.training.train_job import JOBSET_LABEL, RANK_LABEL, NodeEnv, NodeSecrets, NodeShape, job_name, render, validated
from components.train_job import node_env, train_job
from tests.conftest import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, REPO, upload_folder
from tests.json_http import JsonHandler, point_kubernetes_client_at
from tests.test_distributed import free_port
from tests.test_tracking import mlflow_server  # noqa: F401  (a fixture: the MLflow server on loopback)

JOBS = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs"
PODS = "/api/v1/namespaces/team-a/pods"
MAX_REQUESTS = 3000  # the server stops by itself after this many
TRACKING_TOKEN = "planted-node-tracking-token-93be"
HUB_TOKEN = "hf_plantedNodeHubToken0123456789abcdefghij"
SECRETS = {
    "s3-credentials": {"AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY},
    "tracking-credentials": {"MLFLOW_TRACKING_TOKEN": TRACKING_TOKEN},
    "hub-token": {"HF_TOKEN": HUB_TOKEN},
}
SHAPE = NodeShape("0", "1", "2", "1Gi", "2Gi", {"nvidia.com/gpu.present": "true"}, {"key": "nvidia.com/gpu", "operator": "Exists"})


class FakeTrainer(ThreadingHTTPServer):
    def __init__(self, scratch: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.scratch = scratch
        self.jobs: dict[str, dict] = {}
        self.nodes: dict[str, list[subprocess.Popen]] = {}
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.lock = threading.Lock()

    def start_nodes(self, job: dict) -> None:
        """What the Trainer's torch plugin and the kubelet give each node container: its env, and PET_*."""
        name, trainer = job["metadata"]["name"], job["spec"]["trainer"]
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(self.scratch), "OMP_NUM_THREADS": "1"}
        for entry in trainer["env"]:
            reference = entry.get("valueFrom", {}).get("secretKeyRef")
            value = SECRETS.get(reference["name"], {}).get(reference["key"]) if reference else entry["value"]
            if value is not None:
                env[entry["name"]] = value
        pet = {"PET_NNODES": str(trainer["numNodes"]), "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
               "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port())}  # fmt: skip
        self.nodes[name] = [
            subprocess.Popen(
                [sys.executable, *trainer["command"][1:], *trainer["args"]],
                cwd=REPO,
                env={**env, **pet, "PET_NODE_RANK": str(rank)},
                stdout=subprocess.DEVNULL,
                stderr=(self.scratch / f"{name}-{rank}.log").open("w"),
            )  # fmt: skip
            for rank in range(trainer["numNodes"])
        ]

    def status(self, name: str) -> dict:
        codes = [node.poll() for node in self.nodes.get(name, [])]
        if not codes or None in codes:
            return {
                "jobsStatus": [{"name": "node", "active": sum(code is None for code in codes), "failed": sum(bool(c) for c in codes if c)}]
            }
        if any(codes):
            message = f"jobset failed due to one or more job failures (first failed job: {name}-node-0)"
            return {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs", "message": message}]}
        return {
            "conditions": [{"type": "Complete", "status": "True", "reason": "AllJobsCompleted", "message": "jobset completed successfully"}]
        }

    def pods(self, name: str) -> list[dict]:
        pods = []
        for rank, node in enumerate(self.nodes.get(name, [])):
            code = node.poll()
            state = {"running": {}} if code is None else {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed"}}
            pods.append({"metadata": {"name": f"{name}-node-0-{rank}-x", "labels": {JOBSET_LABEL: name, RANK_LABEL: str(rank)}},
                         "status": {"containerStatuses": [{"name": "node", "image": "i", "imageID": "", "ready": code is None,
                                                           "restartCount": 0, "state": state}]}})  # fmt: skip
        return pods

    def stop(self, name: str) -> None:
        for node in self.nodes.pop(name, []):
            if node.poll() is None:
                node.kill()
            node.wait()


class Handler(JsonHandler):
    server: FakeTrainer

    def do_GET(self) -> None:
        url = urlparse(self.path)
        with self.server.lock:
            if url.path.startswith(JOBS + "/"):
                name = url.path.removeprefix(JOBS + "/")
                if name not in self.server.jobs:
                    return self.reply(404, {"kind": "Status", "reason": "NotFound", "message": f"{name} not found"})
                job = self.server.jobs[name]
                job["status"] = job["status"] if job["status"].get("conditions") else self.server.status(name)
                return self.reply(200, job)
            if url.path == PODS:
                name = parse_qs(url.query)["labelSelector"][0].removeprefix(f"{JOBSET_LABEL}=")
                return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.server.pods(name)})
            match = re.fullmatch(rf"{PODS}/(.+)-node-0-(\d+)-x/log", url.path)
            if match:
                text = (self.server.scratch / f"{match.group(1)}-{match.group(2)}.log").read_text()
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            return self.reply(404, {"kind": "Status", "message": "no such endpoint here"})

    def do_POST(self) -> None:
        job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            assert parse_qs(urlparse(self.path).query).get("fieldValidation") == ["Strict"]
            name = job["metadata"]["name"]
            if name in self.server.jobs:
                return self.reply(409, {"kind": "Status", "reason": "AlreadyExists", "message": f"{name} already exists"})
            self.server.created.append(json.loads(json.dumps(job)))
            job["status"] = {}
            self.server.jobs[name] = job
            self.server.start_nodes(job)
            return self.reply(201, job)

    def do_DELETE(self) -> None:
        name = urlparse(self.path).path.removeprefix(JOBS + "/")
        with self.server.lock:
            self.server.deleted.append(name)
            self.server.stop(name)
            job = self.server.jobs.pop(name, None)
            return self.reply(200 if job else 404, {"kind": "Status", "status": "Success" if job else "Failure"})


@pytest.fixture
def trainer_cluster(tmp_path, monkeypatch):
    server = FakeTrainer(tmp_path)
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(MAX_REQUESTS)], daemon=True)
    thread.start()
    point_kubernetes_client_at(server, tmp_path, monkeypatch)
    yield server
    for name in list(server.nodes):
        server.stop(name)


def step_flags(s3, prepared_data, tiny_model, **overrides) -> dict:
    data = upload_folder(s3, prepared_data[1], "bucket", "tokenized")
    flags = {"data_uri": data, "output_uri": "s3://bucket/run/train-job/model", "image": "ghcr.io/textclf/textclf-cuda:0.1.0",
             "node_selector": SHAPE.node_selector, "toleration": SHAPE.toleration, "base_model": str(tiny_model),
             "checkpoint_uri": "s3://bucket/checkpoints", "run_id": "run-1", "nodes": 2, "gpus_per_node": "0", "cpu_request": "1",
             "s3_secret_name": "s3-credentials", "poll_seconds": 0.5, "report_to": "none", "epochs": 2, "batch_size": 4,
             "learning_rate": 3e-3, "logging_steps": 1}  # fmt: skip
    return {**flags, **overrides}


def test_two_nodes_train_through_a_trainjob_and_the_model_lands_where_the_step_says(trainer_cluster, s3, prepared_data, tiny_model,
                                                                                      caplog):  # fmt: skip
    """A retried step: the job its last attempt started has failed, so it is deleted and started again."""
    caplog.set_level(logging.INFO, logger="components.train_job")
    name = job_name("run-1", "")
    trainer_cluster.jobs[name] = {"metadata": {"name": name}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    result = train_job(**step_flags(s3, prepared_data, tiny_model))
    assert trainer_cluster.deleted == [name] and [job["metadata"]["name"] for job in trainer_cluster.created] == [name]
    [job] = trainer_cluster.created
    assert validated(job) == job  # what the step sent is what Kubeflow Trainer's models read
    assert {entry["name"] for entry in job["spec"]["trainer"]["env"] if "valueFrom" in entry} >= {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert FAKE_SECRET_KEY not in json.dumps(job) and not [e for e in job["spec"]["trainer"]["env"] if e["name"].startswith("PET_")]
    args = job["spec"]["trainer"]["args"]
    assert args[args.index("--processes") + 1] == "0"  # train then starts as many as the Trainer's PET_NPROC_PER_NODE
    assert result.parameters["model_uri"] == "s3://bucket/run/train-job/model"
    summary = json.loads(s3.get_object(Bucket="bucket", Key="run/train-job/model/train_summary.json")["Body"].read())
    assert summary["world_size"] == 2 and result.summary["world_size"] == 2  # one job of two ranks, not two copies
    assert "Complete (AllJobsCompleted)" in caplog.text and "node jobs: active 2" in caplog.text


def test_a_nodes_user_error_ends_the_job_with_that_nodes_own_line(trainer_cluster, s3, prepared_data, tiny_model):
    flags = step_flags(s3, prepared_data, tiny_model, base_model="s3://bucket/no-such-model")
    with pytest.raises(UserError, match=r"TrainJob team-a/textclf-train-\w+: node \d: s3://bucket/no-such-model.* \(the job is deleted\)"):
        train_job(**flags)
    assert trainer_cluster.deleted == [job_name("run-1", "")] and not trainer_cluster.nodes
    assert "Contents" not in s3.list_objects_v2(Bucket="bucket", Prefix="run/")


def test_the_nodes_report_to_the_tracking_server_the_step_was_given(trainer_cluster, s3, prepared_data, tiny_model, mlflow_server,  # noqa: F811
                                                                     monkeypatch):  # fmt: skip
    """kubeflow.tracking_env and the tracking Secret reach every task, and through train_job every node: its address as a
    value, its credential by reference. Rank 0 logs the run on the server, where evaluate and register continue it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["url"])
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "textclf-nodes")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TRACKING_TOKEN)  # the step's own, from the Secret: never copied
    flags = step_flags(s3, prepared_data, tiny_model, report_to="mlflow", tracking_env_names="MLFLOW_EXPERIMENT_NAME,MLFLOW_TRACKING_URI",
                       tracking_secret_name="tracking-credentials", tracking_secret_keys="MLFLOW_TRACKING_TOKEN",
                       hub_token_secret_name="hub-token")  # fmt: skip
    train_job(**flags)
    [job] = trainer_cluster.created
    env = {entry["name"]: entry for entry in job["spec"]["trainer"]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": mlflow_server["url"]}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tracking-credentials", "key": "MLFLOW_TRACKING_TOKEN"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub-token", "key": "HF_TOKEN"}  # a private base model
    assert TRACKING_TOKEN not in json.dumps(job) and HUB_TOKEN not in json.dumps(job) and validated(job) == job
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    summary = json.loads(s3.get_object(Bucket="bucket", Key="run/train-job/model/train_summary.json")["Body"].read())
    run = client.get_run(summary["tracking"]["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "textclf-nodes"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 2


@pytest.mark.parametrize(
    "environment, flags, complaint",
    [
        ({"MLFLOW_TRACKING_TOKEN": TRACKING_TOKEN}, {"tracking_env_names": "MLFLOW_TRACKING_TOKEN"},
         r"--tracking_env_names: MLFLOW_TRACKING_TOKEN holds a credential's name, and would be copied into the TrainJob"),
        ({"MLFLOW_TRACKING_URI": "https://user:pa55word@mlflow.example.com"}, {"tracking_env_names": "MLFLOW_TRACKING_URI"},
         r"--tracking_env_names: MLFLOW_TRACKING_URI holds a URL with a password in it"),
        ({"PET_NNODES": "4"}, {"tracking_env_names": "PET_NNODES"}, r"--tracking_env_names: PET_NNODES: torchrun takes PET_\* variables as its options"),
        ({}, {"tracking_secret_name": "tracking-credentials"}, r"--tracking_secret_name and --tracking_secret_keys go together"),
    ],
)  # fmt: skip
def test_tracking_settings_that_would_leak_or_break_the_job_are_refused_before_it_is_sent(trainer_cluster, s3, prepared_data, tiny_model,
                                                                                          monkeypatch, environment, flags, complaint):  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=complaint):
        train_job(**step_flags(s3, prepared_data, tiny_model, **flags))
    assert trainer_cluster.created == [] and "Contents" not in s3.list_objects_v2(Bucket="bucket", Prefix="run/")


def test_a_tracking_variable_not_set_in_the_step_is_said_and_not_handed_on(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlflow:5000")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    env = node_env(("MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_URI"), NodeSecrets("s3-credentials"))
    assert env.plain["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow:5000" and "MLFLOW_EXPERIMENT_NAME" not in env.plain
    assert "MLFLOW_EXPERIMENT_NAME: not set in this step's environment, so not handed on to the nodes" in caplog.text


def test_a_trainjob_of_the_wrong_shape_is_refused_before_it_is_sent():
    job = render("textclf-train-x", "image", "torch-distributed", 2, SHAPE, ["--epochs", "2"], NodeEnv(NodeSecrets("s3-credentials"), {}))
    assert validated(job) == job
    wrong_type = json.loads(json.dumps(job))
    wrong_type["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(UserError, match=r"TrainJob textclf-train-x: numNodes: Input should be a valid integer"):
        validated(wrong_type)
    removed_in_v22 = {**job, "spec": {**job["spec"], "podTemplateOverrides": [{"targetJobs": [{"name": "node"}]}]}}
    with pytest.raises(UserError, match=r"fields Kubeflow Trainer v2.3 does not know: \{\"podTemplateOverrides\""):
        validated(removed_in_v22)


def test_local_paths_and_a_single_node_are_refused_in_one_line(tmp_path):
    common = {"image": "i", "node_selector": {}, "toleration": {}, "checkpoint_uri": "s3://b/c", "output_uri": "s3://b/m"}
    with pytest.raises(UserError, match=r"--data_uri '/data': the TrainJob's nodes share no disk with this step; give an s3:// URI"):
        train_job(data_uri="/data", **common)
    with pytest.raises(UserError, match=r"--nodes: a TrainJob of 1 node\(s\)"):
        train_job(data_uri="s3://b/d", nodes=1, **common)
