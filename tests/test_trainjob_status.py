"""train posts its progress to a TrainJob's status where Kubeflow Trainer asks for it (the TrainJobStatus feature).

The status server is a small HTTPS server on loopback with a self-signed certificate, playing the Trainer's
(pkg/statusserver/server.go, handleTrainJobRuntimeStatus): it records each POST and its bearer token and
answers 200 with the payload, or the metav1.Status of a rejected one. The variables that point train at
it are the ones the trainjobstatus plugin sets on every node container. Each body is read back with
Kubeflow Trainer's own model of an UpdateTrainJobStatusRequest (kubeflow-trainer-api).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from components.lib.training import trainjob_status
from components.lib.training.trainjob_status import CA_CERT_VARIABLE, SERVER_URL_VARIABLE, TOKEN_VARIABLE, status_body
from components.train import train
from tests.conftest import train_flags
from tests.json_http import JsonHandler

STATUS_PATH = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs/job-1/status"
MAX_REQUESTS = 500  # the server stops by itself after this many
FIRST_TOKEN, ROTATED_TOKEN = "projected-token-one", "projected-token-two"
BROKEN = "answer with no HTTP at all"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trainer-status")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert, key_file = folder / "ca.crt", folder / "server.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert, key_file


class StatusServer(ThreadingHTTPServer):
    def __init__(self, token_file: Path, rejection: str) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.token_file = token_file
        self.rejection = rejection  # a message to refuse every post with (422), or "" to accept them
        self.posts: list[dict] = []


class Handler(JsonHandler):
    server: StatusServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.posts.append({"path": self.path, "authorization": self.headers["Authorization"], "body": body})
        self.server.token_file.write_text(ROTATED_TOKEN)  # the projected token rotates: later posts must read it again
        if self.server.rejection == BROKEN:
            self.wfile.write(b"not an HTTP answer\r\n\r\n")
            return None
        if self.server.rejection:
            return self.reply(422, {"kind": "Status", "status": "Failure", "message": self.server.rejection, "reason": "Invalid"})
        return self.reply(200, body)


@pytest.fixture
def status_server(tmp_path, monkeypatch, request):
    cert, key = self_signed_certificate(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(FIRST_TOKEN)
    server = StatusServer(token_file, getattr(request, "param", ""))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(MAX_REQUESTS)], daemon=True)
    thread.start()
    monkeypatch.setenv(SERVER_URL_VARIABLE, f"https://127.0.0.1:{server.server_address[1]}{STATUS_PATH}")
    monkeypatch.setenv(CA_CERT_VARIABLE, str(cert))
    monkeypatch.setenv(TOKEN_VARIABLE, str(token_file))
    monkeypatch.setattr(trainjob_status, "POST_INTERVAL_SECONDS", 0.05)  # the real 5 s would leave a tiny run one post
    yield server
    server.socket.close()


def train_tiny(prepared_data, tiny_model, output: Path) -> None:
    train(data_uri=str(prepared_data[1]), output_uri=str(output), base_model=str(tiny_model), **train_flags(epochs=3, batch_size=4))


def test_train_posts_its_progress_and_metrics_to_the_trainjob_status(status_server, prepared_data, tiny_model, tmp_path):
    from kubeflow_trainer_api.models import TrainerV1alpha1UpdateTrainJobStatusRequest

    train_tiny(prepared_data, tiny_model, tmp_path / "model")
    posts = status_server.posts
    assert len(posts) >= 3 and {post["path"] for post in posts} == {STATUS_PATH}
    assert posts[0]["authorization"] == f"Bearer {FIRST_TOKEN}" and posts[-1]["authorization"] == f"Bearer {ROTATED_TOKEN}"
    statuses = [post["body"]["trainerStatus"] for post in posts]
    for status in statuses:  # what the Trainer's own model reads is what was sent, the time as a time
        sent = {**status, "lastUpdatedTime": datetime.datetime.fromisoformat(status["lastUpdatedTime"].replace("Z", "+00:00"))}
        assert TrainerV1alpha1UpdateTrainJobStatusRequest.from_dict({"trainerStatus": status}).to_dict() == {"trainerStatus": sent}
    progress = [status["progressPercentage"] for status in statuses]
    assert progress == sorted(progress) and progress[-1] == 100 and all(value < 100 for value in progress[:-1])
    assert progress[0] < 50 and len(set(progress)) >= 3  # the share of the planned steps, as they are made
    assert statuses[-1]["estimatedRemainingSeconds"] == 0
    final = {metric["name"]: metric["value"] for metric in statuses[-1]["metrics"]}
    assert {"train/loss", "train/learning_rate", "validation/macro_f1"} <= set(final) and float(final["train/loss"]) > 0
    history = json.loads((tmp_path / "model" / "training_history.json").read_text())
    assert float(final["validation/macro_f1"]) == pytest.approx(history["evaluations"][-1]["validation"]["macro_f1"], abs=1e-5)


@pytest.mark.parametrize("status_server", ["trainerStatus.metrics: Too many: 300: must have at most 256 items"], indirect=True)
def test_a_rejected_post_is_said_once_and_training_goes_on(status_server, prepared_data, tiny_model, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="components.train")
    train_tiny(prepared_data, tiny_model, tmp_path / "model")
    assert (tmp_path / "model" / "train_summary.json").is_file()
    posts = len(status_server.posts)
    failures = [record.getMessage() for record in caplog.records if "TrainJob status" in record.getMessage()]
    assert failures == [
        f"TrainJob status: posting to {status_server_url(status_server)} failed (HTTP 422: trainerStatus.metrics: Too many: 300: must"
        " have at most 256 items); training goes on, later failures are counted",
        f"TrainJob status: {posts} of {posts} posts to {status_server_url(status_server)} failed",
    ]


@pytest.mark.parametrize("status_server", [BROKEN], indirect=True)
def test_a_broken_answer_is_a_failed_post_not_a_traceback(status_server, prepared_data, tiny_model, tmp_path, caplog, capfd):
    train_tiny(prepared_data, tiny_model, tmp_path / "model")
    assert status_server.posts and (tmp_path / "model" / "train_summary.json").is_file()
    assert "later failures are counted" in caplog.text and "Traceback" not in capfd.readouterr().err


def test_a_status_url_that_is_not_https_gets_no_post(status_server, prepared_data, tiny_model, tmp_path, monkeypatch, caplog):
    plain = status_server_url(status_server).replace("https://", "http://")
    monkeypatch.setenv(SERVER_URL_VARIABLE, plain)
    train_tiny(prepared_data, tiny_model, tmp_path / "model")
    assert status_server.posts == [] and f"{SERVER_URL_VARIABLE}={plain} is not https" in caplog.text


def test_the_time_left_counts_only_the_steps_this_run_made_and_metric_text_fits_the_trainers_limits():
    resumed = status_body(60, (50, 100), 20.0, {"x" * 80: 1 / 3}, finished=False)["trainerStatus"]
    assert resumed["progressPercentage"] == 60 and resumed["estimatedRemainingSeconds"] == 80  # 10 steps in 20 s, 40 to go
    assert resumed["metrics"] == [{"name": "x" * 64, "value": "0.333333"}]
    assert status_body(100, (0, 100), 5.0, {}, finished=False)["trainerStatus"]["progressPercentage"] == 99  # 100 only when done
    assert "estimatedRemainingSeconds" not in status_body(50, (50, 100), 1.0, {}, finished=False)["trainerStatus"]


def status_server_url(server: StatusServer) -> str:
    return f"https://127.0.0.1:{server.server_address[1]}{STATUS_PATH}"
