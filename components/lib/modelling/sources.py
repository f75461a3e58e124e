"""Tokenizer details the models read (`pad_id`).

The base-model helpers once here (local_model_source, load_tokenizer, describe_load_failure, the Hub probe, ...)
live in components.lib.model_sources, below components.lib.data, which uses them too; they are imported
here for the modules that still import them from this one.
"""

from __future__ import annotations

from components.lib.model_sources import (
    BUNDLED_MODELS,
    BUNDLED_SCHEME,
    HUB_PROBE_TIMEOUT_SECONDS,
    bundled_model_path,
    describe_load_failure,
    hub_answers,
    load_tokenizer,
    local_model_source,
    model_max_positions,
    offline_unless_hub_answers,
)

__all__ = [
    "BUNDLED_MODELS",
    "BUNDLED_SCHEME",
    "HUB_PROBE_TIMEOUT_SECONDS",
    "bundled_model_path",
    "describe_load_failure",
    "hub_answers",
    "load_tokenizer",
    "local_model_source",
    "model_max_positions",
    "offline_unless_hub_answers",
    "pad_id",
]


def pad_id(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, or 0 for one without (GPT-2's); the
    attention mask hides padding either way."""
    return tokenizer.pad_token_id or 0
