"""serve: a registered version behind KServe's V1 and V2 protocols, as a real HTTP server on a free
loopback port; and the micro-batcher on its own."""

import asyncio
import json
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from components.export import export
from components.lib.data.contract import CALIBRATION_FILE, ONNX_FP32_FILE, ONNX_INT8_FILE
from components.lib.data.labels import read_labels
from components.lib.modelling.onnx_runtime import onnx_text_classifier
from components.lib.serving.batching import MicroBatcher
from components.lib.storage.artifacts import read_manifest
from tests.conftest import REPO, run_module
from tests.test_register import register_release, tweet_release  # noqa: F401 (a fixture)

MODEL = "tweets"
TEXTS = ["awful nausea, never again", "fine, nothing special", "great relief, thank you @alice"]
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def registry(tweet_release, tmp_path_factory) -> Path:  # noqa: F811 (the imported fixture)
    """A registry whose version 1 has the INT8 model beside fp32 (tweet_release exports without INT8)."""
    root = tmp_path_factory.mktemp("serve")
    export(model_uri=tweet_release["model_uri"], data_uri=tweet_release["data_uri"], output_uri=str(root / "onnx"), latency_runs=1)
    register_release({**tweet_release, "export_uri": str(root / "onnx")}, root, require_beat_baseline=False)
    return root / "registry"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(registry: Path, port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "components.serve", "--registry_uri", str(registry), "--model_name", MODEL, "--port", str(port), *flags]


def request(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
    call = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


class Server:
    def __init__(self, registry: Path, *flags: str, command=serve_command):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(command(registry, self.port, *flags), cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.wait_until_ready()

    def wait_until_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()[1][-3000:]
            try:
                if request(f"{self.url}/v2/health/ready")[1] == {"ready": True}:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not become ready in time")

    def post(self, path: str, payload, headers=JSON_HEADERS) -> tuple[int, dict | str]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return request(f"{self.url}{path}", body, headers)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, stderr[-3000:]
        return stderr


@pytest.fixture(scope="module")
def server(registry):
    running = Server(registry)
    yield running
    if running.process.poll() is None:
        running.stop()


def expected_probabilities(registry: Path, model_file: str) -> np.ndarray:
    folder = registry / MODEL / "1"
    return onnx_text_classifier(folder, read_manifest(str(folder)), MODEL, model_file).probabilities(TEXTS, batch_size=8)


def test_v1_answers_labels_and_the_calibrated_probabilities_of_the_int8_model(server, registry):
    status, answer = server.post(f"/v1/models/{MODEL}:predict", {"instances": TEXTS})
    assert status == 200, answer
    expected = expected_probabilities(registry, ONNX_INT8_FILE)
    labels = read_labels(registry / MODEL / "1")
    served = np.array([[prediction["probabilities"][label] for label in labels] for prediction in answer["predictions"]])
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert [prediction["label"] for prediction in answer["predictions"]] == [labels[index] for index in expected.argmax(axis=1)]
    temperature = json.loads((registry / MODEL / "1" / CALIBRATION_FILE).read_text())["temperature"]
    assert abs(temperature - 1) > 1e-3  # so that serving without the temperature would not pass


def test_v2_answers_the_same_with_the_label_order_and_version(server, registry):
    request_body = {"id": "r-1", "inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}]}
    status, answer = server.post(f"/v2/models/{MODEL}/infer", request_body)
    assert status == 200, answer
    assert answer["model_name"] == MODEL and answer["model_version"] == "1" and answer["id"] == "r-1"
    outputs = {output["name"]: output for output in answer["outputs"]}
    labels = answer["parameters"]["labels"].split(",")
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    np.testing.assert_allclose(probabilities, expected_probabilities(registry, ONNX_INT8_FILE), atol=1e-6)
    assert outputs["label"]["data"] == [labels[index] for index in probabilities.argmax(axis=1)]
    del request_body["id"]  # then the server names the response itself
    status, answer = server.post(f"/v2/models/{MODEL}/infer", request_body)
    assert status == 200 and len(answer["id"]) == 36, answer


def test_a_body_sent_without_a_json_content_type_is_still_read(server):
    status, answer = server.post(f"/v1/models/{MODEL}:predict", {"instances": TEXTS[:1]}, headers={})
    assert status == 200 and len(answer["predictions"]) == 1


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        ("v1", b'{"instances": ["unfinished"', "Unrecognized request format"),
        ("v1", {"texts": ["a"]}, 'expected a JSON object {"instances": ["text", ...]}'),
        ("v1", {"instances": []}, "instances: expected a non-empty list of texts"),
        ("v1", {"instances": ["fine", "  "]}, "instances[1]: empty text"),
        ("v1", {"instances": ["fine", 7]}, "instances[1]: expected a text (a JSON string), got int"),
        ("v1", {"instances": ["x"] * 65}, "instances: 65 texts in one request, over the limit of 64"),
        ("v1", {"instances": ["y" * 10_001]}, "instances[0]: 10,001 characters, over the limit of 10,000"),
        ("v2", {"inputs": [{"name": "words", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, 'expected an input named "text"'),
        ("v2", {"inputs": [{"name": "text", "shape": [1], "datatype": "INT32", "data": [1]}]}, "datatype must be BYTES, got INT32"),
        # Issue 27: shapes are checked against the data, and what FastAPI cannot parse is a 400 naming the field.
        ("v2", {"inputs": [{"name": "text", "shape": [5], "datatype": "BYTES", "data": ["a"]}]}, "shape [5] does not fit its 1 text(s)"),
        ("v2", {"inputs": [{"name": "text", "shape": [10**12], "datatype": "BYTES", "data": ["a"]}]}, "does not fit its 1 text(s)"),
        ("v2", {"inputs": [{"name": "text", "shape": [-1], "datatype": "BYTES", "data": ["a"]}]}, "shape [-1] does not fit"),
        (
            "v2",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": None}]},
            "inputs.0.data: Input should be a valid list",
        ),
        ("v2", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": "great"}]}, "inputs.0.data"),
        ("v2", {"inputs": "x"}, "inputs"),
        ("v2", {"id": "no-inputs"}, "inputs"),
    ],
)
def test_a_bad_request_gets_400_and_one_line(server, path, payload, message):
    url = f"/v1/models/{MODEL}:predict" if path == "v1" else f"/v2/models/{MODEL}/infer"
    status, answer = server.post(url, payload)
    assert status == 400, answer
    assert message in answer["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"]
    assert "great" not in answer["error"] and "no-inputs" not in answer["error"]  # the input is not echoed back


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}]}\x01\x00\x00\x00a',
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}]}\xff\xff\xff\x7f',
    ],
)
def test_the_binary_tensor_extension_is_refused_in_one_line(server, body):
    """Issue 27: KServe's decoding of it answered 500s with tracebacks."""
    header = str(body.index(b"}]}") + 3)
    status, answer = server.post(
        f"/v2/models/{MODEL}/infer", body, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": header}
    )
    assert status == 400 and answer["error"].startswith("the binary tensor extension (Inference-Header-Content-Length) is not supported")


def test_a_body_over_the_size_limit_is_refused_before_it_is_read(server):
    """The declared length is over the limit: answered 413 at once (a client that waits for the answer
    before it sends the rest, as curl does, sends none of it)."""
    status, body, sent = send_until_answered(server.url, f"/v1/models/{MODEL}:predict", b"z" * 65536, 4_200_000, chunked=False)
    assert status == 413 and json.loads(body) == {"error": "request body of 4,200,000 bytes is over the limit of 4,194,304"}
    assert sent < 4_200_000


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def send_until_answered(url: str, path: str, chunk: bytes, most: int, chunked: bool = True) -> tuple[int, bytes, int]:
    """POST a body of `most` bytes a chunk at a time, stopping as soon as the server answers: (status,
    answer, bytes sent). Chunked, the request has no Content-Length for a server to check first."""
    host, port = url.removeprefix("http://").split(":")
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {most}"
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{length}\r\n\r\n".encode())
        sent = 0
        select.select([connection], [], [], 0.5)  # time for an answer to the headers alone, as curl waits for one
        try:
            while sent < most and not select.select([connection], [], [], 0.001)[0]:
                piece = chunk[: most - sent]
                connection.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
            if sent >= most and chunked:
                connection.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while a chunk was on its way; its answer is read below
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
            received = connection.recv(65536)
            if not received:
                break
            answer += received
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, sent


def content_length(answer: bytes) -> int:
    head = answer.split(b"\r\n\r\n", 1)[0].decode(errors="replace").lower()
    return next((int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length:")), 0)


def test_a_chunked_body_is_cut_at_the_limit_and_memory_stays_flat(server):
    """Issue 27: a 200 MB chunked body was read whole and answered 200; the server grew by 585 MB."""
    before = peak_rss_kb(server.process.pid)
    status, body, sent = send_until_answered(server.url, f"/v1/models/{MODEL}:predict", b"z" * 65536, 200 * 2**20)
    assert status == 413 and json.loads(body) == {"error": "request body over the limit of 4,194,304 bytes (stopped reading there)"}
    assert sent < 200 * 2**20  # it answered long before the end
    assert peak_rss_kb(server.process.pid) - before < 64 * 1024  # KB: no copy of the body beyond the 4 MiB limit
    assert server.post(f"/v1/models/{MODEL}:predict", {"instances": ["still serving"]})[0] == 200


def test_an_unknown_model_gets_404(server):
    status, answer = server.post("/v1/models/nobody:predict", {"instances": ["a"]})
    assert status == 404 and "nobody" in answer["error"]


def test_readiness_liveness_metadata_and_metrics(server, registry):
    assert request(f"{server.url}/v1/models/{MODEL}") == (200, {"name": MODEL, "ready": True})
    assert request(f"{server.url}/")[1] == {"status": "alive"}
    assert request(f"{server.url}/v2/health/live")[1] == {"live": True}
    metadata = request(f"{server.url}/v2/models/{MODEL}")[1]
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    server.post(f"/v1/models/{MODEL}:predict", {"instances": TEXTS})
    server.post(f"/v1/models/{MODEL}:predict", {"instances": [""]})
    metrics = request(f"{server.url}/metrics")[1]
    labels = read_labels(registry / MODEL / "1")
    predicted = sum(float(value) for value in re.findall(r'textclf_predictions_total\{[^}]*model_name="tweets"[^}]*\} (\S+)', metrics))
    assert predicted >= len(TEXTS) and any(f'label="{label}"' in metrics for label in labels)
    assert float(re.search(r'textclf_refused_requests_total\{model_name="tweets"\} (\S+)', metrics).group(1)) >= 1
    assert 'request_predict_seconds_count{model_name="tweets"}' in metrics


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_answer(registry):
    running = Server(registry, "--max_batch_size", "32", "--max_batch_wait_ms", "200", "--precision", "fp32")
    try:
        texts = [TEXTS[index % len(TEXTS)] for index in range(12)]
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda text: running.post(f"/v1/models/{MODEL}:predict", {"instances": [text]}), texts))
        expected = expected_probabilities(registry, ONNX_FP32_FILE)
        labels = read_labels(registry / MODEL / "1")
        for text, (status, answer) in zip(texts, answers):
            assert status == 200
            served = [answer["predictions"][0]["probabilities"][label] for label in labels]
            np.testing.assert_allclose(served, expected[TEXTS.index(text)], atol=1e-6)
        metrics = request(f"{running.url}/metrics")[1]
        calls = float(re.search(r'textclf_model_call_texts_count\{model_name="tweets"\} (\S+)', metrics).group(1))
        assert calls < len(texts)
    finally:
        stderr = running.stop()
    assert f"({ONNX_FP32_FILE})" in stderr and "Traceback" not in stderr


def test_the_server_log_has_one_line_per_refused_request_and_no_traceback(registry):
    running = Server(registry)
    running.post(f"/v1/models/{MODEL}:predict", {"instances": [""]})
    running.post(f"/v1/models/{MODEL}:predict", b"{")
    running.post("/v1/models/nobody:predict", {"instances": ["a"]})  # a correct 404, and no traceback in the log
    running.post(f"/v2/models/{MODEL}/infer", {"inputs": "x"})
    stderr = running.stop()
    assert stderr.count("refused a request:") == 4 and "Traceback" not in stderr
    assert f"({ONNX_INT8_FILE})" in stderr  # INT8 is the default when the version has it


def test_a_version_without_int8_is_served_in_fp32_with_a_warning(registry, tmp_path):
    copy = tmp_path / "registry"
    shutil.copytree(registry, copy)
    version = copy / MODEL / "1"
    (version / ONNX_INT8_FILE).unlink()
    manifest = json.loads((version / "MANIFEST.json").read_text())
    del manifest["files"][ONNX_INT8_FILE]
    (version / "MANIFEST.json").write_text(json.dumps(manifest))
    stderr = Server(copy).stop()
    assert f"has no {ONNX_INT8_FILE} (export ran without INT8): serving {ONNX_FP32_FILE}" in stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model_name", "nobody"], "nobody"),
        (["--precision", "int4"], "--precision: 'int4' is not one of int8, fp32"),
        (["--max_instances", "0"], "--max_instances, --max_text_chars, --max_request_bytes and --max_new_tokens must be at least 1"),
    ],
)
def test_bad_flags_are_refused_with_one_line(registry, flags, message):
    result = run_module("components.serve", *serve_command(registry, free_port(), *flags)[3:])
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr


def test_a_port_in_use_is_refused_before_the_model_loads(registry):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_module("components.serve", *serve_command(registry, port)[3:])
    assert result.returncode == 2
    assert f"--port {port}: cannot listen there" in result.stderr.strip().splitlines()[-1]


def make_serve_command(registry: Path, port: int) -> list[str]:
    """What `make serve PORT=...` runs, with the config's registry and model name pointed at the test's."""
    return [sys.executable, "-m", "pipelines.serve_local", "--port", str(port), f"registry_uri={registry}", f"model_name={MODEL}"]


def test_make_serve_answers_the_readmes_curl(registry):
    readme = (REPO / "README.md").read_text()
    curl = re.search(r"curl -s localhost:8080/v1/models/[\w-]+:predict -H '(.+?)' \\\n\s+-d '(.+?)'", readme)
    header, body = curl.group(1).split(": "), curl.group(2)
    running = Server(registry, command=make_serve_command)
    try:
        status, answer = running.post(f"/v1/models/{MODEL}:predict", body.encode(), headers=dict([header]))
    finally:
        running.stop()
    assert status == 200 and len(answer["predictions"]) == len(json.loads(body)["instances"])


def test_the_micro_batcher_joins_waiting_requests_and_keeps_each_answer_apart():
    calls = []

    def infer(texts):
        calls.append(list(texts))
        return np.array([[float(len(text))] for text in texts])

    async def scenario():
        batcher = MicroBatcher(infer, max_texts=4, max_wait_ms=100)
        requests = asyncio.gather(batcher.submit(["a"]), batcher.submit(["bb", "ccc"]), batcher.submit(["dddd", "eeeee"]))
        return await asyncio.wait_for(requests, timeout=10)  # a request the batcher lost would wait for ever

    first, second, third = asyncio.run(scenario())
    assert calls == [["a", "bb", "ccc"], ["dddd", "eeeee"]]  # the third did not fit under 4 texts: it opens the next call
    assert first.tolist() == [[1.0]] and second.tolist() == [[2.0], [3.0]] and third.tolist() == [[4.0], [5.0]]


def test_the_micro_batcher_hands_a_model_error_to_every_request_of_the_call():
    def infer(texts):
        raise RuntimeError("model failed")

    async def scenario():
        batcher = MicroBatcher(infer, max_texts=8, max_wait_ms=50)
        return await asyncio.wait_for(asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True), timeout=10)

    assert [str(error) for error in asyncio.run(scenario())] == ["model failed", "model failed"]


def write_run(run_root: Path, name: str, decision: dict) -> None:
    from pipelines.serve_local import REGISTRATION

    (run_root / name / REGISTRATION).parent.mkdir(parents=True)
    (run_root / name / REGISTRATION).write_text(json.dumps(decision))


def test_make_serve_serves_the_model_the_newest_run_registered_unless_told_otherwise(tmp_path):
    """Finding 1 of issue 28: after `make run ARGS="model_name=rt-sentiment"`, make serve served the config's model."""
    from pipelines.config import load_config
    from pipelines.serve_local import chosen_model

    runs = tmp_path / "runs"
    write_run(runs, "20261207-090000", {"registered": True, "model_name": "older", "version": 4, "uri": f"{tmp_path}/reg-a/older/4"})
    write_run(
        runs, "20261207-100000", {"registered": True, "model_name": "rt-sentiment", "version": 1, "uri": f"{tmp_path}/reg-b/rt-sentiment/1"}
    )
    write_run(
        runs,
        "20261207-110000",
        {"registered": False, "refused": "below", "model_name": "refused-one", "uri": f"{tmp_path}/reg-c/refused-one/2"},
    )
    (runs / "registry").mkdir()  # not a run folder
    overrides = [f"local.run_root={runs}"]

    def choose(model: str = "", extra: tuple = ()):
        return chosen_model(load_config("configs/default.yaml", [*overrides, *extra]), model, [*overrides, *extra], "configs/default.yaml")

    newest = choose()
    assert (newest.model_name, newest.registry_uri) == ("rt-sentiment", f"{tmp_path}/reg-b")  # the newest that registered
    assert choose(model="older").model_name == "older"  # MODEL=
    assert choose(extra=("model_name=named",)).model_name == "named"  # an override of model_name
    empty = tmp_path / "no-runs"
    config = load_config("configs/default.yaml", [f"local.run_root={empty}"])
    assert chosen_model(config, "", [], "configs/default.yaml").model_name == config.parameters["model_name"]  # no run yet


def test_one_default_version_everywhere():
    """make serve's VERSION, make help, the README and components.serve's --version say the same."""
    import inspect

    from components.serve import serve
    from pipelines.serve_local import DEFAULT_VERSION

    makefile = (REPO / "Makefile").read_text()
    assert f"VERSION ?= {DEFAULT_VERSION}\n" in makefile
    serve_help = next(line for line in makefile.splitlines() if line.startswith("serve:"))
    assert f"VERSION={DEFAULT_VERSION}" in serve_help and "VERSION=production" not in serve_help
    assert inspect.signature(serve).parameters["version"].default == DEFAULT_VERSION
    readme_serve = [line for line in (REPO / "README.md").read_text().splitlines() if "make serve" in line and "VERSION=" in line]
    assert readme_serve and all(f"VERSION={DEFAULT_VERSION}" in line for line in readme_serve)
