"""A small stub of the Kubeflow Pipelines v2beta1 REST API on loopback, for the submit tests.

It answers the calls `kfp.Client.create_run_from_pipeline_package` makes (experiment lookup and
creation, run creation) and records every request, so a test can check what was sent.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"


class Handler(BaseHTTPRequestHandler):
    server: KfpStub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        """Quiet: the tests read `server.requests` instead."""

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = {
            "method": self.command,
            "path": parts.path,
            "query": {key: values[0] for key, values in parse_qs(parts.query).items()},
            "authorization": self.headers.get("Authorization"),
            "json": json.loads(raw) if raw and "json" in self.headers.get("Content-Type", "") else None,
        }
        self.server.requests.append(request)
        if self.server.expected_token and request["authorization"] != f"Bearer {self.server.expected_token}":
            return self.reply(401, {"code": 16, "message": "Unauthenticated"})
        route = (self.command, parts.path)
        if route == ("GET", f"{API}/healthz"):
            return self.reply(200, {"multi_user": True})
        if route == ("GET", f"{API}/experiments"):
            return self.reply(200, {"experiments": list(self.server.experiments.values())} if self.server.experiments else {})
        if route == ("POST", f"{API}/experiments"):
            experiment = {"experiment_id": str(uuid.uuid4()), **request["json"]}
            self.server.experiments[experiment["experiment_id"]] = experiment
            return self.reply(200, experiment)
        if route == ("POST", f"{API}/runs"):
            run = {"run_id": str(uuid.uuid4()), "state": "PENDING", **request["json"]}
            self.server.runs.append(run)
            return self.reply(200, run)
        return self.reply(404, {"code": 5, "message": f"stub: no route for {self.command} {parts.path}"})

    do_GET = do_POST = handle_any


class KfpStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, expected_token: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.expected_token = expected_token
        self.requests: list[dict] = []
        self.experiments: dict = {}
        self.runs: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
