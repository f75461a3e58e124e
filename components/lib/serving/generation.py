"""A causal language model behind the model server: POST /v2/models/<name>/generate, the generate
extension of the Open Inference Protocol as KServe's and Triton's LLM servers answer it:

    {"text_input": "Once upon a time", "parameters": {"max_tokens": 40, "temperature": 0.8, "seed": 1}}
    -> {"model_name": ..., "model_version": ..., "text_output": "...", "new_tokens": 40}

KServe's Python server has no such route (its OpenAI completions route needs vLLM's types), so serve adds
it to the server's FastAPI app. Generation is the PyTorch model with Hugging Face's KV cache
(components/lib/modelling/language_model.py), in a worker thread so the server keeps answering probes.
A mistake in a request is a 400 with one line; V1 and V2 infer requests to a language model are
refused the same way, naming the route.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import kserve
from fastapi import Request  # at module level: FastAPI reads the handler's annotations by name
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from prometheus_client import Counter

from components.lib.modelling.language_model import CausalLanguageModel, Sampling

GENERATED_TOKENS = Counter("textclf_generated_tokens", "Tokens generated", ["model_name"])
PARAMETERS = {"max_tokens": int, "temperature": float, "top_k": int, "top_p": float, "seed": int, "greedy": bool}


@dataclass(frozen=True)
class GenerationLimits:
    max_text_chars: int  # the longest text_input
    max_new_tokens: int  # the most tokens a request may ask for, and what it gets when it does not say


def generate_path(name: str) -> str:
    return f"/v2/models/{name}/generate"


class LanguageModelService(kserve.Model):
    def __init__(self, name: str, version: str, model: CausalLanguageModel, tokenizer, limits: GenerationLimits):
        super().__init__(name)
        self.version, self.model, self.tokenizer, self.limits = version, model, tokenizer, limits

    def load(self) -> bool:
        self.ready = True  # the model is loaded before the server starts
        return self.ready

    async def predict(self, payload, headers=None, response_headers=None):
        raise InvalidInput(f'{self.name} is a language model: POST {generate_path(self.name)} with {{"text_input": "..."}}')

    async def generate(self, body) -> dict:
        """The answer to one generate request, or InvalidInput with one line."""
        prompt, new_tokens, seed, sampling = self.parse(body)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InvalidInput("text_input: the tokenizer makes no tokens of it")
        output = await asyncio.to_thread(self.model.generate, ids, new_tokens, seed, sampling)
        kept = len(self.model.fit_to_context(ids))
        GENERATED_TOKENS.labels(self.name).inc(len(output) - kept)
        text = self.tokenizer.decode(output[kept:], skip_special_tokens=True)
        return {"model_name": self.name, "model_version": self.version, "text_output": text, "new_tokens": len(output) - kept}

    def parse(self, body) -> tuple[str, int, int, Sampling]:
        if not isinstance(body, dict) or not isinstance(body.get("text_input"), str):
            raise InvalidInput('the body must be a JSON object with "text_input" (a string) and optional "parameters"')
        prompt = body["text_input"]
        if not prompt.strip() or len(prompt) > self.limits.max_text_chars:
            raise InvalidInput(f"text_input: must hold 1 to {self.limits.max_text_chars} characters, got {len(prompt)}")
        given = body.get("parameters", {})
        if not isinstance(given, dict) or set(given) - set(PARAMETERS):
            unknown = sorted(set(given) - set(PARAMETERS)) if isinstance(given, dict) else "not an object"
            raise InvalidInput(f"parameters: {unknown}; known: {', '.join(PARAMETERS)}")
        for name, kind in PARAMETERS.items():
            if name in given and type(given[name]) not in ((int, float) if kind is float else (kind,)):  # true is no number
                raise InvalidInput(f"parameters.{name}: must be {kind.__name__}, got {given[name]!r}")
        new_tokens = given.get("max_tokens", self.limits.max_new_tokens)
        if not 1 <= new_tokens <= self.limits.max_new_tokens:
            raise InvalidInput(f"parameters.max_tokens: must be 1 to {self.limits.max_new_tokens} (the server's --max_new_tokens)")
        sampling = Sampling(bool(given.get("greedy", False)), float(given.get("temperature", 1.0)), given.get("top_k", 40),
                            float(given.get("top_p", 1.0)), stop_id=self.tokenizer.eos_token_id)  # fmt: skip
        if problem := sampling.problem():
            raise InvalidInput(f"parameters.{problem}")
        return prompt, new_tokens, int(given.get("seed", 0)), sampling


def add_generate_route(app, service: LanguageModelService) -> None:
    """POST /v2/models/{name}/generate on the server's FastAPI app: 400 with one line for a mistake, 404 for another name."""

    async def generate(model_name: str, request: Request) -> JSONResponse:
        if model_name != service.name:
            return JSONResponse({"error": f"Model with name {model_name} does not exist."}, status_code=404)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        try:
            return JSONResponse(await service.generate(body))
        except InvalidInput as error:
            return JSONResponse({"error": str(error.reason)}, status_code=400)

    app.add_api_route("/v2/models/{model_name}/generate", generate, methods=["POST"])
