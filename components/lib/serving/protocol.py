"""The two request formats a KServe predictor answers, parsed into texts, and their answers.

V1      POST /v1/models/<name>:predict   {"instances": ["text", ...]}
        -> {"predictions": [{"label": "positive", "probabilities": {"negative": 0.02, ...}}, ...]}
           a multi-label model: {"labels": ["insult", "toxic"], "probabilities": {...}} (each label's own)
V2      POST /v2/models/<name>/infer     (the Open Inference Protocol)
        {"inputs": [{"name": "text", "shape": [n], "datatype": "BYTES", "data": ["text", ...]}]}
        -> outputs "label" (BYTES, [n]; multi-label: the labels joined by "|", "" for none) and
           "probabilities" (FP32, [n, labels]); the response's "labels" parameter names the columns
           of "probabilities".

Every mistake in a request is an `InvalidInput`, which the KServe server answers with status 400
and {"error": "<one line>"}.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from components.lib.data.label_sets import SET_JOIN

TEXT_INPUT = "text"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
ABSTAINED_OUTPUT = "abstained"  # a model with an abstention threshold: whether it abstains on each text
V1_EXAMPLE = '{"instances": ["text", ...]}'


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold, checked while it is parsed (the body's size: serving/request_guard.py)."""

    max_instances: int
    max_text_chars: int


def v1_texts(payload: object, limits: RequestLimits) -> list[str]:
    if isinstance(payload, bytes | str):  # KServe parses only bodies sent as Content-Type: application/json
        payload = parsed_json(payload)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput(f"expected a JSON object {V1_EXAMPLE}")
    return checked_texts(payload["instances"], "instances", limits)


def parsed_json(body: bytes | str) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInput(f"the request body is not JSON: {error}") from None


def v2_texts(request: InferRequest, limits: RequestLimits) -> list[str]:
    inputs = {item.name: item for item in request.inputs}
    if TEXT_INPUT not in inputs:
        raise InvalidInput(f'expected an input named "{TEXT_INPUT}" (datatype BYTES, shape [n]); got {sorted(inputs) or "none"}')
    text_input = inputs[TEXT_INPUT]
    if text_input.datatype != "BYTES":
        raise InvalidInput(f'input "{TEXT_INPUT}": datatype must be BYTES, got {text_input.datatype}')
    values = text_input.data
    texts = checked_texts([decoded(value) for value in values] if isinstance(values, list) else values, f'input "{TEXT_INPUT}"', limits)
    check_shape(list(text_input.shape or []), len(texts))
    return texts


def check_shape(shape: list, count: int) -> None:
    """A tensor of n texts is shaped [n] (or [n, 1]); any other shape says the data is not what was meant."""
    if shape not in ([count], [count, 1]):
        raise InvalidInput(f'input "{TEXT_INPUT}": shape {shape} does not fit its {count} text(s); give [{count}]')


def decoded(value: object) -> object:
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value  # refused below as not a text


def checked_texts(values: object, where: str, limits: RequestLimits) -> list[str]:
    if not isinstance(values, list) or not values:
        raise InvalidInput(f"{where}: expected a non-empty list of texts")
    if len(values) > limits.max_instances:
        raise InvalidInput(f"{where}: {len(values)} texts in one request, over the limit of {limits.max_instances}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidInput(f"{where}[{index}]: expected a text (a JSON string), got {type(value).__name__}")
        if not value.strip():
            raise InvalidInput(f"{where}[{index}]: empty text")
        if len(value) > limits.max_text_chars:
            raise InvalidInput(f"{where}[{index}]: {len(value):,} characters, over the limit of {limits.max_text_chars:,}")
    return values


def v1_response(labels: list[str], probabilities: np.ndarray, answers: list[str], multi_label: bool, abstained: np.ndarray | None) -> dict:
    """`answers`: each text's class, or (multi-label) its labels joined by SET_JOIN; `abstained`: for a model that
    abstains, whether it does on each text (its answer and probabilities are given all the same)."""
    if multi_label:
        return {
            "predictions": [
                {"labels": answer.split(SET_JOIN) if answer else [], "probabilities": dict(zip(labels, row.tolist()))}
                for answer, row in zip(answers, probabilities)
            ]
        }
    predictions = [{"label": answer, "probabilities": dict(zip(labels, row.tolist()))} for answer, row in zip(answers, probabilities)]
    if abstained is not None:
        for prediction, abstains in zip(predictions, abstained.tolist()):
            prediction[ABSTAINED_OUTPUT] = abstains
    return {"predictions": predictions}


def v2_response(
    request: InferRequest, model_name: str, version: str, labels: list[str], probabilities: np.ndarray, answers: list[str],
    abstained: np.ndarray | None,
) -> InferResponse:  # fmt: skip
    rows = len(probabilities)
    outputs = [
        InferOutput(LABEL_OUTPUT, [rows], "BYTES", answers),
        InferOutput(PROBABILITIES_OUTPUT, [rows, len(labels)], "FP32", probabilities.astype(np.float32).reshape(-1).tolist()),
    ]
    if abstained is not None:
        outputs.append(InferOutput(ABSTAINED_OUTPUT, [rows], "BOOL", abstained.tolist()))
    response_id = request.id or str(uuid.uuid4())
    return InferResponse(response_id, model_name, outputs, model_version=version, parameters={"labels": ",".join(labels)})


def v2_metadata(labels: list[str], abstains: bool) -> tuple[list[dict], list[dict]]:
    """The V2 metadata endpoint's inputs and outputs (GET /v2/models/<name>)."""
    inputs = [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]
    outputs = [
        {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
        {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [-1, len(labels)]},
    ]
    if abstains:
        outputs.append({"name": ABSTAINED_OUTPUT, "datatype": "BOOL", "shape": [-1]})
    return inputs, outputs
