"""A TextClassifier as a kserve.Model: V1 and V2 requests in, labels and calibrated probabilities out."""

from __future__ import annotations

import asyncio
import logging

import kserve
import numpy as np
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.infer_type import InferRequest
from prometheus_client import Counter, Histogram

from components.lib.data.batching import TokenizedSplit
from components.lib.data.label_sets import SET_JOIN
from components.lib.data.profile import PROFILE_LENGTH_EDGES
from components.lib.modelling.inference import TextClassifier
from components.lib.serving.batching import MicroBatcher
from components.lib.serving.protocol import RequestLimits, v1_response, v1_texts, v2_metadata, v2_response, v2_texts

# Beside KServe's own request_*_seconds histograms on GET /metrics.
PREDICTIONS = Counter("textclf_predictions", "Texts classified, by predicted label", ["model_name", "label"])
REFUSED = Counter("textclf_refused_requests", "Requests answered 400 for a mistake in the request", ["model_name"])
MODEL_CALL_TEXTS = Histogram("textclf_model_call_texts", "Texts per model call (more than one request's when micro-batched)",
                             ["model_name"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))  # fmt: skip
# What is served, in the terms of the training data's profile (components/lib/data/profile.py), to watch for drift.
TEXT_TOKENS = Histogram("textclf_text_tokens", "Length of each served text in tokens, after truncation", ["model_name"],
                        buckets=PROFILE_LENGTH_EDGES)  # fmt: skip
TOKENS = Counter("textclf_tokens", "Tokens of the served texts", ["model_name"])
UNKNOWN_TOKENS = Counter("textclf_unknown_tokens", "Served tokens the tokenizer does not know (its unknown token)", ["model_name"])
ABSTENTIONS = Counter("textclf_abstentions", "Texts the model abstained on (confidence below its min_confidence)", ["model_name"])


class OneLineRefusals(logging.Filter):
    """KServe logs each request it refuses with a traceback (kserve/errors.py, invalid_input_handler,
    model_not_found_handler); a client's mistake is not the server's error, so it gets one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], InvalidInput | ModelNotFound):
            record.msg, record.args, record.exc_info = "refused a request: %s", (record.exc_info[1],), None
        return True


class TextClassifierService(kserve.Model):
    def __init__(self, name: str, version: str, classifier: TextClassifier, limits: RequestLimits, batching: tuple[int, float] | None):
        super().__init__(name)
        self.version = version
        self.classifier = classifier
        self.limits = limits
        self.batch_size = batching[0] if batching else limits.max_instances
        self.batcher = MicroBatcher(self.infer, *batching) if batching else None

    def load(self) -> bool:
        self.ready = True  # the classifier is loaded before the server starts
        return self.ready

    def infer(self, texts: list[str]) -> np.ndarray:
        MODEL_CALL_TEXTS.labels(self.name).observe(len(texts))
        split = self.classifier.encode(texts)
        self.count_tokens(split)
        return self.classifier.probabilities_of(split, self.batch_size)

    def count_tokens(self, split: TokenizedSplit) -> None:
        for length in split.lengths.tolist():
            TEXT_TOKENS.labels(self.name).observe(length)
        TOKENS.labels(self.name).inc(int(split.lengths.sum()))
        if self.classifier.unknown_id is not None:
            UNKNOWN_TOKENS.labels(self.name).inc(int(np.count_nonzero(split.token_ids == self.classifier.unknown_id)))

    async def classify(self, texts: list[str]) -> np.ndarray:
        if self.batcher:
            return await self.batcher.submit(texts)
        return await asyncio.get_running_loop().run_in_executor(None, self.infer, texts)

    async def predict(self, payload, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None):
        v2 = isinstance(payload, InferRequest)
        try:
            texts = v2_texts(payload, self.limits) if v2 else v1_texts(payload, self.limits)
        except InvalidInput:
            REFUSED.labels(self.name).inc()
            raise
        probabilities = await self.classify(texts)
        answers = self.classifier.answers(probabilities)
        for answer in answers:
            for label in answer.split(SET_JOIN) if self.classifier.multi_label else [answer]:
                if label:
                    PREDICTIONS.labels(self.name, label).inc()
        abstained = self.classifier.abstained(probabilities)
        if abstained is not None:
            ABSTENTIONS.labels(self.name).inc(int(abstained.sum()))
        if v2:
            return v2_response(payload, self.name, self.version, self.classifier.labels, probabilities, answers, abstained)
        return v1_response(self.classifier.labels, probabilities, answers, self.classifier.multi_label, abstained)

    def get_input_types(self) -> list[dict]:
        return v2_metadata(self.classifier.labels, self.abstains)[0]

    def get_output_types(self) -> list[dict]:
        return v2_metadata(self.classifier.labels, self.abstains)[1]

    @property
    def abstains(self) -> bool:
        return self.classifier.min_confidence is not None
