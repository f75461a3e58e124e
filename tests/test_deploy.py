"""deploy: a KServe InferenceService for a registry version, applied through a Kubernetes API.

The API is a small server on loopback that answers the InferenceService endpoints the way the API
server does (404 for a missing object, 409 for a stale resourceVersion, `dryRun=All` stores
nothing) and plays the KServe controller: an object it stores is Ready after two reads. The real
`kubernetes` client talks HTTP to it, configured by a kubeconfig file, as on a laptop.
"""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from components.deploy import deploy
from components.lib.data.contract import CAUSAL_LM, DEPLOYMENT_FILE, INFERENCE_SERVICE_FILE, TASK_KEY
from components.lib.errors import UserError
from components.lib.serving.inference_service import REGISTRY_VERSION_ANNOTATION, STABLE_VERSION_ANNOTATION
from components.lib.storage.artifacts import staged_output
from components.lib.storage.registry import Registry
from tests.conftest import FAKE_ACCESS_KEY, FAKE_SECRET_KEY
from tests.json_http import JsonHandler, point_kubernetes_client_at

MODEL = "drug-review-sentiment"
IMAGE = "ghcr.io/textclf/textclf-cpu:0.1.0"
PREFIX = "/apis/serving.kserve.io/v1beta1/namespaces/"
READY_AFTER_READS = 2
MAX_REQUESTS = 200  # the server stops by itself after this many


class FakeKubernetes(ThreadingHTTPServer):
    def __init__(self, refuse_with: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.objects: dict[tuple[str, str], dict] = {}
        self.reads: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.refuse_with = refuse_with
        self.ready_after_reads = READY_AFTER_READS
        self.failure = ""  # when set, the controller sees the spec but the service never gets Ready
        self.lock = threading.Lock()

    def writes(self) -> list[tuple[str, str, dict]]:
        return [request for request in self.requests if request[0] != "GET"]


class Handler(JsonHandler):
    server: FakeKubernetes

    def route(self) -> tuple[str, str | None, dict]:
        url = urlparse(self.path)
        namespace, _, rest = url.path.removeprefix(PREFIX).partition("/inferenceservices")
        return namespace, rest.strip("/") or None, parse_qs(url.query)

    def do_GET(self) -> None:
        namespace, name, _ = self.route()
        with self.server.lock:
            self.server.requests.append(("GET", self.path, {}))
            if self.server.refuse_with:
                return self.reply(self.server.refuse_with, {"kind": "Status", "message": "refused by the test"})
            stored = self.server.objects.get((namespace, name))
            if stored is None:
                return self.reply(404, {"kind": "Status", "reason": "NotFound", "message": f"{name} not found"})
            self.server.reads[(namespace, name)] = self.server.reads.get((namespace, name), 0) + 1
            if self.server.failure:
                stored["status"] = {"observedGeneration": stored["metadata"]["generation"],
                                    "conditions": [{"type": "Ready", "status": "False", "message": self.server.failure}]}  # fmt: skip
            elif self.server.reads[(namespace, name)] >= self.server.ready_after_reads:  # the controller caught up
                stored["status"] = {"observedGeneration": stored["metadata"]["generation"], "url": f"http://{name}.{namespace}.example.com",
                                    "conditions": [{"type": "Ready", "status": "True"}]}  # fmt: skip
            self.reply(200, stored)

    def write(self, method: str) -> None:
        namespace, name, query = self.route()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append((method, self.path, body))
            if self.server.refuse_with:
                return self.reply(self.server.refuse_with, {"kind": "Status", "message": "refused by the test"})
            key = (namespace, body["metadata"]["name"])
            stored = self.server.objects.get(key)
            if method == "PUT" and (stored is None or body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]):
                return self.reply(409, {"kind": "Status", "reason": "Conflict", "message": "the object has been modified"})
            generation = stored["metadata"]["generation"] + 1 if stored else 1
            body["metadata"].update(generation=generation, resourceVersion=str(100 + len(self.server.requests)), namespace=namespace)
            # What the controller last reported: a replaced object keeps the old generation's Ready status until it catches up.
            body["status"] = stored["status"] if stored else {"conditions": [{"type": "Ready", "status": "Unknown"}]}
            if query.get("dryRun") != ["All"]:
                self.server.objects[key] = body
                self.server.reads[key] = 0
            self.reply(200 if method == "PUT" else 201, body)

    def do_POST(self) -> None:
        self.write("POST")

    def do_PUT(self) -> None:
        self.write("PUT")


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A fake API server on loopback and a kubeconfig pointing at it, namespace team-a."""
    server = FakeKubernetes()
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(MAX_REQUESTS)], daemon=True)
    thread.start()
    point_kubernetes_client_at(server, tmp_path, monkeypatch)
    monkeypatch.setattr("components.deploy.POLL_SECONDS", 0.01)
    yield server
    server.server_close()


def add_versions(root: str) -> str:
    for version in (1, 2):
        with staged_output(Registry(root, MODEL).version_uri(version)) as out:
            (out / "model.onnx").write_bytes(b"onnx")
    Registry(root, MODEL).move_alias("latest", 2)
    return root


@pytest.fixture
def registry(s3) -> str:
    """On S3 (the loopback server), where a predictor pod can read it; s3 plants fake keys in the environment."""
    return add_versions("s3://bucket/registry")


def deploy_version(registry: str, version: str, out: Path, **flags) -> dict:
    deploy(registry_uri=registry, model_name=MODEL, version=version, image=IMAGE, output_uri=str(out), **flags)
    return json.loads((out / DEPLOYMENT_FILE).read_text())


def container_of(manifest: dict) -> dict:
    return manifest["spec"]["predictor"]["containers"][0]


def test_a_first_deploy_creates_the_service_with_all_traffic_and_waits_until_ready(cluster, registry, tmp_path):
    outcome = deploy_version(registry, "1", tmp_path / "first")
    (method, path, body), = cluster.writes()  # fmt: skip
    assert method == "POST" and path == PREFIX + "team-a/inferenceservices"
    assert body["metadata"]["name"] == MODEL and body["metadata"]["annotations"][REGISTRY_VERSION_ANNOTATION] == "1"
    assert "canaryTrafficPercent" not in body["spec"]["predictor"]
    container = container_of(body)
    assert container["image"] == IMAGE and container["command"] == ["python3", "-m", "components.serve"]
    assert container["args"][container["args"].index("--version") + 1] == "1"
    assert outcome["action"] == "created; Ready" and outcome["url"] == f"http://{MODEL}.team-a.example.com"
    assert yaml.safe_load((tmp_path / "first" / INFERENCE_SERVICE_FILE).read_text())["spec"] == body["spec"]


def test_a_new_version_is_a_canary_beside_the_serving_one_and_100_promotes_it(cluster, registry, tmp_path):
    deploy_version(registry, "1", tmp_path / "one")
    outcome = deploy_version(registry, "latest", tmp_path / "two", canary_traffic_percent=20)
    method, path, body = cluster.writes()[-1]
    assert method == "PUT" and body["metadata"]["resourceVersion"]  # a replace of what the reader saw
    reads_after = cluster.requests[cluster.requests.index(cluster.writes()[-1]) + 1 :]
    assert len(reads_after) == READY_AFTER_READS  # still Ready from the last generation: it waited for this one
    assert body["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert outcome["version"] == 2 and outcome["previous_version"] == 1 and outcome["canary_traffic_percent"] == 20
    promoted = deploy_version(registry, "2", tmp_path / "promote", canary_traffic_percent=100)
    assert "canaryTrafficPercent" not in cluster.writes()[-1][2]["spec"]["predictor"]
    assert promoted["action"] == "updated; Ready"


def test_a_retried_deploy_keeps_the_canary_and_waits_for_it(cluster, registry, tmp_path):
    """Attempt 1 applies the canary and gives up waiting; attempt 2 (a KFP retry) must not promote it to 100%."""
    deploy_version(registry, "1", tmp_path / "one")
    cluster.failure = "RevisionMissing"
    with pytest.raises(UserError, match="was not Ready"):
        deploy_version(registry, "2", tmp_path / "attempt-1", canary_traffic_percent=20, ready_timeout_s=1)
    cluster.failure, cluster.reads[("team-a", MODEL)] = "", 0  # the revision comes up during attempt 2
    outcome = deploy_version(registry, "2", tmp_path / "attempt-2", canary_traffic_percent=20)
    stored = cluster.objects[("team-a", MODEL)]
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert outcome["previous_version"] == 1 and outcome["canary_traffic_percent"] == 20
    assert outcome["action"] == "unchanged (applied before); Ready" and outcome["url"]
    promoted = deploy_version(registry, "2", tmp_path / "promote", canary_traffic_percent=100)
    assert "canaryTrafficPercent" not in cluster.objects[("team-a", MODEL)]["spec"]["predictor"]
    assert promoted["previous_version"] == 1 and promoted["canary_traffic_percent"] is None


def add_version(registry: str, version: int) -> None:
    with staged_output(Registry(registry, MODEL).version_uri(version)) as out:
        (out / "model.onnx").write_bytes(b"onnx")


def test_during_a_canary_the_rest_of_the_traffic_stays_on_the_version_rolled_out_last(cluster, registry, tmp_path):
    """KServe splits a canary with the last revision rolled out to 100%, not with the canary before it."""
    add_version(registry, 3)
    deploy_version(registry, "1", tmp_path / "one")
    deploy_version(registry, "2", tmp_path / "two")
    third = deploy_version(registry, "3", tmp_path / "three")
    stored = cluster.objects[("team-a", MODEL)]
    assert third["previous_version"] == 1 and stored["metadata"]["annotations"][STABLE_VERSION_ANNOTATION] == "1"
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    rollback = deploy_version(registry, "1", tmp_path / "back")  # the stable version again: all traffic to it
    stored = cluster.objects[("team-a", MODEL)]
    assert rollback["canary_traffic_percent"] is None and "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert STABLE_VERSION_ANNOTATION not in stored["metadata"]["annotations"]


def test_deploying_what_already_runs_changes_nothing(cluster, registry, tmp_path):
    deploy_version(registry, "1", tmp_path / "one")
    writes = len(cluster.writes())
    outcome = deploy_version(registry, "1", tmp_path / "again")
    assert len(cluster.writes()) == writes and outcome["action"].startswith("unchanged")


def test_a_dry_run_is_validated_by_the_server_and_stores_nothing(cluster, registry, tmp_path):
    outcome = deploy_version(registry, "1", tmp_path / "dry", dry_run=True)
    (method, path, _), = cluster.writes()  # fmt: skip
    assert method == "POST" and path.endswith("?dryRun=All") and not cluster.objects
    assert "dry run" in outcome["action"]


def test_without_a_cluster_the_manifest_is_written_and_nothing_applied(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    outcome = deploy_version(registry, "2", tmp_path / "out", namespace="serving")
    assert outcome["action"].startswith("rendered (no cluster configured")
    manifest = yaml.safe_load((tmp_path / "out" / INFERENCE_SERVICE_FILE).read_text())
    assert manifest["kind"] == "InferenceService" and manifest["metadata"]["namespace"] == "serving"


def test_the_manifest_takes_s3_keys_from_the_secret_and_holds_none(registry, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == FAKE_SECRET_KEY  # planted by the s3 fixture
    deploy_version(registry, "1", tmp_path / "out", s3_secret_name="team-s3")
    text = (tmp_path / "out" / INFERENCE_SERVICE_FILE).read_text() + (tmp_path / "out" / DEPLOYMENT_FILE).read_text()
    logged = "".join(capfd.readouterr())
    for secret in (FAKE_ACCESS_KEY, FAKE_SECRET_KEY):
        assert secret not in text and secret not in logged
    env = {entry["name"]: entry for entry in container_of(yaml.safe_load((tmp_path / "out" / INFERENCE_SERVICE_FILE).read_text()))["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "team-s3", "key": key}
    # Temporary credentials: the session token too, where the Secret holds one.
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "team-s3", "key": "AWS_SESSION_TOKEN", "optional": True}
    assert env["AWS_ENDPOINT_URL"]["value"] == os.environ["AWS_ENDPOINT_URL"] and env["AWS_REGION"]["value"] == "us-east-1"


def test_a_local_registry_is_refused_for_a_cluster_and_warned_about_without_one(cluster, tmp_path, monkeypatch, caplog):
    local = add_versions(str(tmp_path / "registry"))
    with pytest.raises(UserError, match="a local folder; the predictor's pod cannot read it"):
        deploy_version(local, "1", tmp_path / "out")
    assert cluster.requests == []
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    deploy_version(local, "1", tmp_path / "out")
    assert "is a local folder" in caplog.text and (tmp_path / "out" / INFERENCE_SERVICE_FILE).is_file()


def test_a_language_model_without_its_weights_is_refused_before_touching_the_cluster(cluster, tmp_path, monkeypatch):
    """The model server generates with a language model's PyTorch weights: a version registered without them (the
    ONNX graph alone, as export wrote before generation) is refused in one line, not rolled out to fail; with them
    it is rendered like a classifier."""
    root = str(tmp_path / "registry")
    with staged_output(Registry(root, MODEL).version_uri(1), extra={"lineage": {TASK_KEY: CAUSAL_LM}}) as out:
        (out / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(UserError, match=f"{MODEL} version 1 is a causal language model registered without model.safetensors"):
        deploy_version(root, "1", tmp_path / "out")
    assert cluster.requests == []
    with staged_output(Registry(root, MODEL).version_uri(2), extra={"lineage": {TASK_KEY: CAUSAL_LM}}) as out:
        (out / "model.onnx").write_bytes(b"onnx")
        (out / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    deploy_version(root, "2", tmp_path / "rendered")
    assert (tmp_path / "rendered" / INFERENCE_SERVICE_FILE).is_file()


def test_the_predictor_is_a_valid_kubernetes_pod_spec(registry, tmp_path, monkeypatch):
    """KServe's PredictorSpec inlines a PodSpec; its pod fields validate strictly against Kubernetes' schema."""
    import kubernetes_validate

    from pipelines.manifests_check import KUBERNETES_VERSION

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    deploy_version(registry, "1", tmp_path / "out")
    predictor = yaml.safe_load((tmp_path / "out" / INFERENCE_SERVICE_FILE).read_text())["spec"]["predictor"]
    pod_fields = {key: predictor[key] for key in ("containers", "volumes")}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": pod_fields}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_the_predictor_runs_as_the_images_user_on_a_read_only_root(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    deploy_version(registry, "1", tmp_path / "out")
    manifest = yaml.safe_load((tmp_path / "out" / INFERENCE_SERVICE_FILE).read_text())
    predictor = manifest["spec"]["predictor"]
    # Knative refuses a pod-level securityContext by default (kubernetes.podspec-securitycontext: Disabled).
    assert "securityContext" not in predictor
    container = container_of(manifest)
    assert container["securityContext"] == {
        "runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert container["volumeMounts"] == [{"mountPath": "/tmp", "name": "tmp"}]
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{MODEL}"


def test_a_private_registrys_pull_secrets_reach_the_predictor(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    deploy_version(registry, "1", tmp_path / "out", image_pull_secrets="regcred, other-registry")
    predictor = yaml.safe_load((tmp_path / "out" / INFERENCE_SERVICE_FILE).read_text())["spec"]["predictor"]
    assert predictor["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other-registry"}]


@pytest.mark.parametrize("cpu", ["500m", "1", "4"])
def test_the_predictor_has_a_cpu_limit_at_least_its_request(registry, tmp_path, monkeypatch, cpu):
    """KServe fills a missing CPU limit with its default, 1: a request of 4 would then be over its limit and refused."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    deploy_version(registry, "1", tmp_path / "out", cpu=cpu, memory="3Gi")
    resources = container_of(yaml.safe_load((tmp_path / "out" / INFERENCE_SERVICE_FILE).read_text()))["resources"]
    assert resources == {"requests": {"cpu": cpu, "memory": "3Gi"}, "limits": {"cpu": cpu, "memory": "3Gi"}}


@pytest.mark.parametrize(
    "status, complaint",
    [(403, "may not read InferenceServices here; apply manifests/base"), (500, "refused to read it (500): refused by the test")],
)
def test_a_refusing_cluster_is_one_line(cluster, registry, tmp_path, status, complaint):
    cluster.refuse_with = status
    with pytest.raises(UserError, match=re.escape(complaint)):
        deploy_version(registry, "1", tmp_path / "out")


def test_a_service_that_never_gets_ready_is_a_clear_failure(cluster, registry, tmp_path):
    cluster.failure = "Back-off pulling image"
    with pytest.raises(UserError, match=f"InferenceService {MODEL} was not Ready after 1 s \\(Ready=False Back-off pulling image\\)"):
        deploy_version(registry, "1", tmp_path / "out", ready_timeout_s=1)


@pytest.mark.parametrize(
    "flags, complaint",
    [
        ({"version": "7"}, "no committed version 7"),
        ({"canary_traffic_percent": 0}, "--canary_traffic_percent: 0 is not in 1..100"),
        ({"service_name": "Not_A_Label"}, "is not a DNS label"),
        ({"min_replicas": 2, "max_replicas": 1}, "need 0 <= min <= max"),
        ({"image_pull_secrets": "regcred,Reg_Cred"}, "--image_pull_secrets: 'Reg_Cred' is not a Secret name"),
    ],
)
def test_bad_flags_are_refused_before_touching_the_cluster(cluster, registry, tmp_path, flags, complaint):
    arguments = {"version": "1", **flags}
    with pytest.raises(UserError, match=complaint):
        deploy_version(registry, arguments.pop("version"), tmp_path / "out", **arguments)
    assert cluster.requests == []
