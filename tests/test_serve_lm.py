"""serve on a registered causal language model: POST /v2/models/<name>/generate answers with text, generated
by the PyTorch model the version holds; a mistake in a request is a 400 with one line."""

import sys

import pytest

from components.evaluate import evaluate
from components.export import export
from components.register import register
from components.train import train
from tests.test_evaluate_lm import lm_data  # noqa: F401 (a fixture)
from tests.test_serve import Server
from tests.test_train_lm import lm_flags, lm_tokens  # noqa: F401 (a fixture)

MODEL = "corpus-lm"
GENERATE = f"/v2/models/{MODEL}/generate"


@pytest.fixture(scope="module")
def lm_registry(lm_data, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("lm-serving")
    train(data_uri=str(lm_data), output_uri=str(root / "model"), **lm_flags(epochs=3))
    evaluate(model_uri=str(root / "model"), data_uri=str(lm_data), output_uri=str(root / "evaluation"))
    export(model_uri=str(root / "model"), data_uri=str(lm_data), output_uri=str(root / "onnx"), latency_runs=1)
    register(model_uri=str(root / "model"), data_uri=str(lm_data), evaluation_uri=str(root / "evaluation"), export_uri=str(root / "onnx"),
             registry_uri=str(root / "registry"), model_name=MODEL, output_uri=str(root / "decision"), require_beat_baseline=False)  # fmt: skip
    return root / "registry"


def lm_serve_command(registry, port, *flags):
    return [sys.executable, "-m", "components.serve", "--registry_uri", str(registry), "--model_name", MODEL, "--port", str(port), *flags]


@pytest.fixture(scope="module")
def lm_server(lm_registry):
    running = Server(lm_registry, "--max_new_tokens", "8", command=lm_serve_command)
    yield running
    if running.process.poll() is None:
        running.stop()


def test_generate_answers_the_models_continuation(lm_server):
    status, answer = lm_server.post(GENERATE, {"text_input": "gamma delta epsilon", "parameters": {"max_tokens": 2, "greedy": True}})
    assert status == 200, answer
    assert answer["model_name"] == MODEL and answer["model_version"] == "1"
    assert answer["text_output"] == "zeta eta" and answer["new_tokens"] == 2  # the cycle of words it was trained on
    status, sampled = lm_server.post(GENERATE, {"text_input": "alpha", "parameters": {"seed": 3, "temperature": 0.7}})
    assert status == 200 and sampled["new_tokens"] <= 8  # the server's --max_new_tokens when the request does not say
    assert lm_server.post(GENERATE, {"text_input": "alpha", "parameters": {"seed": 3, "temperature": 0.7}})[1] == sampled


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"prompt": "alpha"}, 'the body must be a JSON object with "text_input" (a string) and optional "parameters"'),
        ({"text_input": "alpha", "parameters": {"max_tokens": 9}}, "parameters.max_tokens: must be 1 to 8 (the server's --max_new_tokens)"),
        (
            {"text_input": "alpha", "parameters": {"beams": 4}},
            "parameters: ['beams']; known: max_tokens, temperature, top_k, top_p, seed, greedy",
        ),
        ({"text_input": "alpha", "parameters": {"max_tokens": True}}, "parameters.max_tokens: must be int, got True"),
        (
            {"text_input": "alpha", "parameters": {"temperature": 0}},
            "parameters.temperature: must be above 0, got 0.0",
        ),
        ({"text_input": " "}, "text_input: must hold 1 to 10000 characters, got 1"),
    ],
)
def test_a_bad_generate_request_gets_400_and_one_line(lm_server, payload, message):
    assert lm_server.post(GENERATE, payload) == (400, {"error": message})


def test_another_model_gets_404_and_an_infer_request_names_the_generate_route(lm_server):
    assert lm_server.post("/v2/models/other/generate", {"text_input": "alpha"})[0] == 404
    status, answer = lm_server.post(f"/v1/models/{MODEL}:predict", {"instances": ["alpha"]})
    assert status == 400 and f"is a language model: POST {GENERATE}" in answer["error"]
