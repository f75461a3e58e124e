"""The JSON-answering half of the small HTTP servers the tests start on loopback (KFP's API, Kubernetes')."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, HTTPServer

import yaml


class JsonHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Quiet: the tests read what the server recorded instead."""

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def point_kubernetes_client_at(server: HTTPServer, tmp_path, monkeypatch, namespace: str = "team-a") -> None:
    """A kubeconfig naming `server` (a fake API on loopback) as the cluster, `namespace` its context's, in KUBECONFIG;
    no in-cluster service account. The real `kubernetes` client then talks HTTP to it, as on a laptop."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "someone", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "someone", "namespace": namespace}}],
    }))  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
