"""serve: a registered model behind an HTTP endpoint, as a KServe predictor.

    python -m components.serve --registry_uri runs/registry --model_name drug-review-sentiment [--version production] [--port 8080]
    curl -s localhost:8080/v1/models/tweet-sentiment:predict -d '{"instances": ["What a great day!"]}'

Loads one registry version (local or s3://, every file checked against its sha256 manifest), with
the tokenizer, labels, text cleaning and calibration temperature it was registered with, on
onnxruntime: the INT8 model when the version has one, else fp32 (`--precision fp32` asks for fp32).
It answers KServe's V1 protocol (POST /v1/models/<name>:predict) and the Open Inference Protocol
(POST /v2/models/<name>/infer), with readiness (GET /v1/models/<name>, /v2/health/ready), liveness
(GET /, /v2/health/live) and Prometheus metrics (GET /metrics). A mistake in a request (wrong JSON,
an empty text, too many texts, a body over the limit) is answered 400 with one line; requests that
arrive together can share one model call (micro-batching, `--max_batch_size N`); it is off by default
because on CPU it lost at every concurrency measured (benchmarks/RESULTS.md, section 8): a batch pads
its texts to the longest, and onnxruntime already uses every core for one text.
A registered causal language model is served instead on POST /v2/models/<name>/generate
(components/lib/serving/generation.py), by PyTorch with the KV cache.
In a KServe InferenceService this is the custom predictor's command; it listens on 8080 as KServe expects.
"""

from __future__ import annotations

import logging
import socket
import warnings

from components.lib.cli import run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import CAUSAL_LM, ONNX_FP32_FILE, ONNX_INT8_FILE, task_of
from components.lib.errors import UserError
from components.lib.modelling.language_model import load_for_generation
from components.lib.modelling.onnx_runtime import onnx_text_classifier
from components.lib.serving.sdk import KSERVE_HTTP_PORT, import_kserve
from components.lib.storage.registry import Registry

log = logging.getLogger("components.serve")
PRECISIONS = {"int8": ONNX_INT8_FILE, "fp32": ONNX_FP32_FILE}


@takes_common_flags
def serve(
    *,
    registry_uri: str,
    model_name: str,
    version: str = "latest",
    precision: str = "int8",
    port: int = KSERVE_HTTP_PORT,
    max_batch_size: int = 0,
    max_batch_wait_ms: float = 0.0,
    max_instances: int = 64,
    max_text_chars: int = 10_000,
    max_request_bytes: int = 4_194_304,
    max_new_tokens: int = 256,
) -> None:
    """Serve a registered model over HTTP (KServe V1 and V2 protocols) until SIGTERM or Ctrl-C.

    Args:
      precision: int8 (the quantized model, when the version has one) or fp32.
      port: HTTP port (KServe's default, 8080).
      max_batch_size: Most texts the micro-batcher puts in one model call; 0 (the default, faster on CPU) turns it off.
      max_batch_wait_ms: How long the micro-batcher waits after a request for others to join it.
      max_instances: Most texts in one request.
      max_text_chars: Most characters in one text.
      max_request_bytes: Largest request body in bytes, chunked or not: reading stops there, with a 413.
      max_new_tokens: A language model: the most tokens one generate request may ask for, and what it gets if it does not say.
    """
    check_flags(precision, port, max_batch_size, max_batch_wait_ms, (max_instances, max_text_chars, max_request_bytes, max_new_tokens))
    check_port_free(port)
    registry = Registry(registry_uri, model_name)
    with registry.fetch(version) as (number, folder, manifest):
        where = f"{model_name} version {number} in {registry_uri}"
        if task_of(manifest) == CAUSAL_LM:
            serve_language_model(folder, where, model_name, str(number), port, (max_text_chars, max_new_tokens), max_request_bytes)
            return
        model_file = model_file_for(precision, folder, model_name, number)
        classifier = onnx_text_classifier(folder, manifest, where, model_file)
        log.info("serving %s (%s) on port %d; try:\n  curl -s localhost:%d/v1/models/%s:predict -H 'Content-Type: application/json' "
                 "-d '{\"instances\": [\"What a great day!\"]}'", where, model_file, port, port, model_name)  # fmt: skip
        import_kserve()  # before the modules that import kserve
        from components.lib.serving.protocol import RequestLimits
        from components.lib.serving.service import TextClassifierService

        limits = RequestLimits(max_instances, max_text_chars)
        batching = (max_batch_size, max_batch_wait_ms) if max_batch_size else None
        start_server(TextClassifierService(model_name, str(number), classifier, limits, batching), port, max_request_bytes)


def serve_language_model(
    folder, where: str, model_name: str, version: str, port: int, limits: tuple[int, int], max_request_bytes: int
) -> None:
    """A registered causal LM, generating with PyTorch and the KV cache on POST /v2/models/<name>/generate
    (limits: the most characters of a prompt, the most new tokens of a request)."""
    model, tokenizer = load_for_generation(folder, where)
    import_kserve()  # before the modules that import kserve
    from components.lib.serving.generation import GenerationLimits, LanguageModelService, add_generate_route, generate_path

    log.info("serving %s (PyTorch, KV cache; --precision is for classifiers) on port %d; try:\n  curl -s localhost:%d%s"
             " -H 'Content-Type: application/json' -d '{\"text_input\": \"...\", \"parameters\": {\"max_tokens\": 40}}'",
             where, port, port, generate_path(model_name))  # fmt: skip
    service = LanguageModelService(model_name, version, model, tokenizer, GenerationLimits(*limits))
    start_server(service, port, max_request_bytes, add_routes=lambda app: add_generate_route(app, service))


def start_server(service, port: int, max_request_bytes: int, add_routes=None) -> None:
    """Run KServe's model server with `service` (a kserve.Model) until SIGTERM: one-line refusals, the body-size
    guard before any handler reads a body, schema errors as 400s, and any routes of the service's own."""
    kserve = import_kserve()  # already imported by the caller, with the argv guard
    from fastapi.exceptions import RequestValidationError
    from kserve import model_server

    from components.lib.serving.request_guard import RequestGuard, schema_refusal
    from components.lib.serving.service import OneLineRefusals

    service.load()
    logging.getLogger("kserve").addFilter(OneLineRefusals())
    # kserve's V1 handler returns FastAPI's ORJSONResponse, which FastAPI now warns about on every request.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    model_server.app.add_middleware(RequestGuard, max_bytes=max_request_bytes)
    model_server.app.add_exception_handler(RequestValidationError, schema_refusal)
    if add_routes is not None:
        add_routes(model_server.app)
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([service])


def check_flags(precision: str, port: int, max_batch_size: int, max_batch_wait_ms: float, limits: tuple[int, ...]) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not 0 < port < 65536:
        raise UserError(f"--port: {port} is not a TCP port")
    if max_batch_size < 0 or max_batch_wait_ms < 0:
        raise UserError("--max_batch_size and --max_batch_wait_ms must not be negative")
    if min(limits) < 1:
        raise UserError("--max_instances, --max_text_chars, --max_request_bytes and --max_new_tokens must be at least 1")


def check_port_free(port: int) -> None:
    """Refused before the model loads, rather than by uvicorn after it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 (where the server will listen: every interface, as in a pod)
        except OSError as error:
            raise UserError(f"--port {port}: cannot listen there ({error.strerror}); pass another, e.g. PORT=8081 for make serve") from None


def model_file_for(precision: str, folder, model_name: str, number: int) -> str:
    if precision == "int8" and not (folder / ONNX_INT8_FILE).is_file():
        log.warning("%s version %d has no %s (export ran without INT8): serving %s", model_name, number, ONNX_INT8_FILE, ONNX_FP32_FILE)
        return ONNX_FP32_FILE
    return PRECISIONS[precision]


if __name__ == "__main__":
    run_stage(serve)
