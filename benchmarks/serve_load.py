"""Benchmark 8: the model server under load on loopback: p50/p99 latency and requests/s at
concurrency 1, 8 and 32, with and without the server's micro-batching, beside onnxruntime called
in-process (no HTTP, no JSON, one text per call), which is the limit.

    python -m benchmarks.serve_load [--requests 240] [--seconds 30] [--precision int8]

The model is MiniLM after a few training steps on the bundled reviews (the weights do not change the
cost), exported, registered and served by components.serve; each request carries one real test
review. Each setting sends `--requests` requests or runs `--seconds`, whichever ends first, from a
pool of client threads each with its own keep-alive connection. The clients run on the same 2 cores
as the server, so the figures are a floor for what a pod with its own cores would do.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import BASE_MODEL, REPO, SAMPLE, machine, markdown_table
from components.lib.data.contract import ONNX_FP32_FILE, ONNX_INT8_FILE

MODEL_NAME = "reviews"
CONCURRENCY = (1, 8, 32)
WARMUP = 5  # untimed requests first: onnxruntime's first runs allocate
# Micro-batching off; on, taking whatever queued while the model was busy; on, also waiting 5 ms for more.
BATCHING = {
    "off": ["--max_batch_size", "0"],
    "on, no wait": ["--max_batch_size", "32", "--max_batch_wait_ms", "0"],
    "on, 5 ms wait": ["--max_batch_size", "32", "--max_batch_wait_ms", "5"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240, help="most requests per setting")
    parser.add_argument("--seconds", type=float, default=30, help="most seconds per setting")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        registry, texts = registered_model(Path(scratch))
        rows = [in_process_row(registry, texts, arguments)]
        for batching, flags in BATCHING.items():
            with Server(registry, [*flags, "--precision", arguments.precision]) as server:
                rows += [load_row(server, texts, batching, concurrency, arguments) for concurrency in CONCURRENCY]
    print(json.dumps({"machine": machine(), "precision": arguments.precision, "max_length": 256, "rows": rows}))
    return 0


def registered_model(work: Path) -> tuple[Path, list[str]]:
    import pyarrow.parquet as pq

    from components.evaluate import evaluate
    from components.export import export
    from components.preprocess import preprocess
    from components.register import register
    from components.tokenize import tokenize
    from components.train import train

    data, tokens, model = str(work / "data"), str(work / "tokens"), str(work / "model")
    preprocess(input_uri=str(SAMPLE), output_uri=data, text_column="review", label_column="rating")
    tokenize(data_uri=data, output_uri=tokens, base_model=BASE_MODEL, max_length=256)
    train(data_uri=tokens, output_uri=model, base_model=BASE_MODEL, report_to="none", max_steps=4, eval_every_steps=4)
    export(model_uri=model, data_uri=tokens, output_uri=str(work / "onnx"), latency_runs=1, torchscript=False)
    evaluate(model_uri=model, data_uri=tokens, output_uri=str(work / "evaluation"))
    register(export_uri=str(work / "onnx"), evaluation_uri=str(work / "evaluation"), model_uri=model, data_uri=tokens,
             registry_uri=str(work / "registry"), model_name=MODEL_NAME, output_uri=str(work / "decision"),
             require_beat_baseline=False)  # fmt: skip
    texts = pq.read_table(Path(data) / "test.parquet", columns=["text"]).column("text").to_pylist()
    return work / "registry", texts


def in_process_row(registry: Path, texts: list[str], arguments: argparse.Namespace) -> dict:
    from components.lib.modelling.onnx_runtime import onnx_text_classifier
    from components.lib.storage.artifacts import read_manifest

    folder = registry / MODEL_NAME / "1"
    model_file = ONNX_INT8_FILE if arguments.precision == "int8" else ONNX_FP32_FILE
    classifier = onnx_text_classifier(folder, read_manifest(str(folder)), MODEL_NAME, model_file)
    for text in texts[:WARMUP]:
        classifier.probabilities([text], 1)
    latencies, started = [], time.perf_counter()
    for index in range(arguments.requests):
        begun = time.perf_counter()
        classifier.probabilities([texts[index % len(texts)]], 1)
        latencies.append(time.perf_counter() - begun)
        if time.perf_counter() - started > arguments.seconds:
            break
    return summary("onnxruntime in-process (the limit)", "-", 1, latencies, time.perf_counter() - started)


def summary(setting: str, batching: str, concurrency: int, latencies: list[float], seconds: float) -> dict:
    milliseconds = np.array(latencies) * 1000
    return {"setting": setting, "batching": batching, "concurrency": concurrency, "requests": len(latencies),
            "p50_ms": round(float(np.percentile(milliseconds, 50)), 2), "p99_ms": round(float(np.percentile(milliseconds, 99)), 2),
            "requests_per_s": round(len(latencies) / seconds, 1)}  # fmt: skip


class Server:
    def __init__(self, registry: Path, flags: list[str]):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [sys.executable, "-m", "components.serve", "--registry_uri", str(registry), "--model_name", MODEL_NAME,
                   "--port", str(self.port), *flags]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/v2/health/ready")
                if connection.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not become ready in 120 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def load_row(server: Server, texts: list[str], batching: str, concurrency: int, arguments: argparse.Namespace) -> dict:
    path = f"/v1/models/{MODEL_NAME}:predict"
    bodies = [json.dumps({"instances": [text]}).encode() for text in texts]
    warmup = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    for body in bodies[:WARMUP]:
        warmup.request("POST", path, body, {"Content-Type": "application/json"})
        warmup.getresponse().read()
    next_request, lock, latencies = iter(range(arguments.requests)), threading.Lock(), []
    started = time.perf_counter()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while time.perf_counter() - started < arguments.seconds:
            with lock:
                index = next(next_request, None)
            if index is None:
                return
            begun = time.perf_counter()
            connection.request("POST", path, bodies[index % len(bodies)], {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the server answered {response.status}")
            with lock:
                latencies.append(time.perf_counter() - begun)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    return summary("components.serve over HTTP (V1)", batching, concurrency, latencies, time.perf_counter() - started)


def markdown(result: dict) -> str:
    header = ["setting", "micro-batching", "concurrency", "requests", "p50 ms", "p99 ms", "requests/s"]
    rows = [[row["setting"], row["batching"], row["concurrency"], row["requests"], row["p50_ms"], row["p99_ms"], row["requests_per_s"]]
            for row in result["rows"]]  # fmt: skip
    return (
        f"Machine: {result['machine']}. MiniLM ({result['precision']} ONNX) at up to {result['max_length']} tokens, one bundled test"
        " review per request, clients on the same cores as the server.\n\n" + markdown_table(header, rows)
    )


if __name__ == "__main__":
    sys.exit(main())
