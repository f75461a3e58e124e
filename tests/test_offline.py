"""With no way to the Hugging Face Hub, a hub model or an hf:// dataset ends in one line at once, not after
minutes of retries; the Hub is asked once per process, and a Hub that answers, even with an error, is online.

HF_ENDPOINT points the hub clients at loopback: a closed port (connection refused), or a stand-in that records
each request and answers 404, or takes the connection and never answers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import REPO, run_module

# Well under one round of huggingface_hub's retries (1+2+4+8+8 = 23 s); importing torch and transformers
# on a busy machine takes most of it.
RETRY_BOUND_SECONDS = 20
PROBE = "HEAD / HTTP/1.1"

# Two hub loads in one process: an hf:// dataset, then a model's tokenizer; each error on a line of its own.
TWO_LOADS = """
from components.lib.data.readers import read_hf_dataset
from components.lib.errors import UserError
from components.lib.modelling.sources import load_tokenizer, local_model_source

def load_model():
    with local_model_source("distilbert-base-uncased") as source:
        load_tokenizer("distilbert-base-uncased", source)

for load in (lambda: list(read_hf_dataset("imdb", "text", "label")), load_model):
    try:
        load()
    except UserError as error:
        print(error)
"""


class Hub(ThreadingHTTPServer):
    """A Hub on loopback that records each request line and answers 404; `silent`: takes each connection, never answers."""

    daemon_threads = True

    def __init__(self, silent: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.silent = silent
        self.connections = 0
        self.requests: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    server: Hub

    def handle(self) -> None:
        self.server.connections += 1
        if self.server.silent:
            self.rfile.read()  # until the client gives up
            return
        super().handle()

    def do_HEAD(self) -> None:
        self.server.requests.append(self.requestline)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args) -> None:
        """Quiet: the tests read what the server recorded."""


@pytest.fixture
def hub():
    server = Hub()
    yield server
    server.shutdown()


@pytest.fixture
def silent_hub():
    server = Hub(silent=True)
    yield server
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def hub_env(tmp_path, endpoint: str) -> dict:
    """An empty Hugging Face cache, and the Hub at `endpoint`."""
    return {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "", "NO_PROXY": "", "no_proxy": ""}


def timed(run, *args, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = run(*args, **kwargs)
    return result, time.monotonic() - started


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def assert_one_line_at_once(result: subprocess.CompletedProcess, elapsed: float, start: str) -> None:
    assert result.returncode == 2 and elapsed < RETRY_BOUND_SECONDS, (elapsed, result.stderr[-2000:])
    assert "Retrying" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(start)


def test_a_hub_model_with_no_way_to_the_hub_is_one_line_at_once(prepared_data, tmp_path):
    result, elapsed = timed(run_module, "components.tokenize", "--data_uri", str(prepared_data[0]), "--output_uri", str(tmp_path / "out"),
                            "--base_model", "distilbert-base-uncased", env=hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}"))  # fmt: skip
    assert_one_line_at_once(result, elapsed, "error: distilbert-base-uncased: cannot load the tokenizer from the Hugging Face Hub (")
    assert not (tmp_path / "out").exists()


def test_an_hf_dataset_with_no_way_to_the_hub_is_one_line_at_once(tmp_path):
    result, elapsed = timed(run_module, "components.preprocess", "--input_uri", "hf://imdb", "--output_uri", str(tmp_path / "out"),
                            env=hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}"))  # fmt: skip
    assert_one_line_at_once(result, elapsed, "error: hf://imdb: cannot load it from the Hugging Face Hub (")


def test_a_hub_that_never_answers_is_offline_after_one_connection(silent_hub, tmp_path):
    result, elapsed = timed(run_python, TWO_LOADS, hub_env(tmp_path, silent_hub.url))
    assert result.returncode == 0 and elapsed < RETRY_BOUND_SECONDS, (elapsed, result.stderr[-2000:])
    assert silent_hub.connections == 1  # the probe; the two loads then read only the local cache
    dataset_error, model_error = result.stdout.strip().splitlines()
    assert dataset_error.startswith("hf://imdb: cannot load it from the Hugging Face Hub")
    assert model_error.startswith("distilbert-base-uncased: cannot load the tokenizer from the Hugging Face Hub")


def test_a_hub_that_answers_with_an_error_is_online_and_probed_once(hub, tmp_path):
    result = run_python(TWO_LOADS, hub_env(tmp_path, hub.url))
    assert result.returncode == 0, result.stderr[-2000:]
    assert hub.requests.count(PROBE) == 1
    assert any("/datasets/imdb/" in request for request in hub.requests)  # the libraries asked the Hub themselves
    assert any("/distilbert-base-uncased/" in request for request in hub.requests)


def test_the_hub_is_probed_through_the_proxy(hub, tmp_path):
    """hub.invalid resolves nowhere: only through HTTP_PROXY is it reached."""
    result = run_python(TWO_LOADS, {**hub_env(tmp_path, "http://hub.invalid"), "HTTP_PROXY": hub.url, "http_proxy": hub.url})
    assert result.returncode == 0, result.stderr[-2000:]
    assert hub.requests.count("HEAD http://hub.invalid/ HTTP/1.1") == 1
    assert any(request.startswith("HEAD http://hub.invalid/distilbert-base-uncased/") for request in hub.requests)


def test_hf_hub_offline_asks_nothing(hub, tmp_path):
    result, elapsed = timed(run_python, TWO_LOADS, {**hub_env(tmp_path, hub.url), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and elapsed < RETRY_BOUND_SECONDS, result.stderr[-2000:]
    assert hub.connections == 0 and len(result.stdout.strip().splitlines()) == 2


def test_a_model_in_the_local_cache_loads_with_no_way_to_the_hub(tiny_model, tmp_path):
    """The hub libraries go offline, not the stage: a model downloaded before still loads from the cache."""
    snapshot = tmp_path / "hf" / "hub" / "models--textclf--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    loads = "from components.lib.modelling.sources import load_tokenizer, local_model_source\n"
    loads += "with local_model_source('textclf/tiny') as source:\n    print(load_tokenizer('textclf/tiny', source).vocab_size)"
    result = run_python(loads, hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}"))
    assert result.returncode == 0 and int(result.stdout) > 0, result.stderr[-2000:]
