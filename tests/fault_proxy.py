"""An HTTP proxy on loopback that fails, delays, cuts or corrupts a share of S3 requests.

Between boto3 and the S3 server (moto): each request draws one fate from a seeded RNG:
- `error`: answer 503 SlowDown without forwarding (S3's throttling answer);
- `reset`: close the connection before forwarding (a dropped connection);
- `lost_response`: forward, let the server act, then close without answering (the client cannot
  tell whether its write landed);
- `truncate`: forward, then send only half the response body (a cut download);
- `corrupt`: forward, then flip one byte of an object's body (silent corruption in transit);
- `delay`: wait, then forward;
- `pass`: forward untouched.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, rates: dict[str, float], seed: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rates = rates
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.fates: Counter[str] = Counter()
        self.enabled = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def draw(self, method: str, path: str) -> str:
        with self.lock:
            fate = "pass"
            if self.enabled:
                roll = self.rng.random()
                for name, rate in self.rates.items():
                    if roll < rate:
                        fate = name
                        break
                    roll -= rate
            if fate == "corrupt" and not (method == "GET" and "?" not in path):
                fate = "pass"  # only object bodies are corrupted; a broken listing fails loudly anyway
            self.fates[fate] += 1
            return fate

    @property
    def faulted(self) -> int:
        return sum(count for fate, count in self.fates.items() if fate != "pass")

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        """Quiet."""

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the client gave up on a connection this proxy broke
            super().handle()

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        headers = {key: value for key, value in self.headers.items() if key.lower() not in ("transfer-encoding", "connection")}
        headers["Content-Length"] = str(len(body))
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return (
            response.status,
            [(key, value) for key, value in response.getheaders() if key.lower() not in ("transfer-encoding", "connection")],
            payload,
        )

    def answer(self, status: int, headers: list[tuple[str, str]], payload: bytes, declared_length: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() != "content-length" or self.command == "HEAD":  # HEAD keeps the object's length
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload) if declared_length is None else declared_length))
        self.end_headers()
        self.wfile.write(payload)

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def handle_any(self) -> None:
        body = self.read_body()
        fate = self.server.draw(self.command, self.path)
        if fate == "reset":
            return self.drop()
        if fate == "error":
            return self.answer(503, [("Content-Type", "application/xml")], SLOW_DOWN)
        if fate == "delay":
            time.sleep(0.2)
        status, headers, payload = self.forward(body)
        if fate == "lost_response":
            return self.drop()
        if fate == "truncate" and len(payload) > 1:
            self.answer(status, headers, payload[: len(payload) // 2], declared_length=len(payload))
            return self.drop()
        if fate == "corrupt" and payload and status == 200:
            index = len(payload) // 2
            payload = payload[:index] + bytes([payload[index] ^ 0x55]) + payload[index + 1 :]
        self.answer(status, headers, payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any
