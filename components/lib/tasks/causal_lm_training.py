"""train for causal language models: a GPT-2 of --lm_size from scratch or --base_model's own causal LM,
trained on token blocks by LanguageModelTuner, and the settings a language model refuses."""

from __future__ import annotations

import dataclasses
import logging

from components.lib.data.batching import TokenizedSplit
from components.lib.errors import UserError
from components.lib.modelling.language_model import PRETRAINED, CausalLanguageModel
from components.lib.reporting.metrics import LANGUAGE_MODEL_METRICS
from components.lib.tasks.base import TrainingRequest, TrainingSetup
from components.lib.training.lm_trainer import LanguageModelTuner
from components.lib.training.settings import TrainConfig

log = logging.getLogger("components.train")


def language_model_settings(config: TrainConfig) -> TrainConfig:
    """Refuse settings a language model has no use for; it takes perplexity for the default metric (and says so)."""
    for name, unusable in (("teacher_uri", config.teacher_uri), ("model_type", config.model_type != "transformer"),
                           ("label_smoothing", config.label_smoothing),
                           ("abstain_at_accuracy", config.abstain_at_accuracy),
                           ("abstain_at_coverage", config.abstain_at_coverage)):  # fmt: skip
        if unusable:
            raise UserError(f"--{name}: not available for causal_lm data (a language model trained on fixed-size blocks)")
    if config.metric_for_best in LANGUAGE_MODEL_METRICS:
        return config
    if config.metric_for_best != TrainConfig.metric_for_best:
        raise UserError(f"--metric_for_best {config.metric_for_best}: causal_lm data has {', '.join(LANGUAGE_MODEL_METRICS)}")
    log.info("--metric_for_best: causal_lm data; the best weights are those of lowest validation perplexity")
    return dataclasses.replace(config, metric_for_best="perplexity")


def language_model_setup(request: TrainingRequest) -> TrainingSetup:
    model = language_model(request)
    train, validation = TokenizedSplit.load_blocks(request.data_dir, "train"), TokenizedSplit.load_blocks(request.data_dir, "validation")
    return TrainingSetup(model, [], LanguageModelTuner, train, validation)


def language_model(request: TrainingRequest) -> CausalLanguageModel:
    """A GPT-2 of --lm_size from scratch over the tokenizer's vocabulary, or --base_model's own causal LM."""
    config, tokenizer, base_model = request.config, request.tokenizer, request.base_model
    if config.lm_size != PRETRAINED:
        block_size = tokenizer.model_max_length
        return CausalLanguageModel.from_scratch(config.lm_size, len(tokenizer), block_size, tokenizer.eos_token_id)
    model = CausalLanguageModel.pretrained(base_model, request.base_model_source(), request.trust_remote_code)
    if model.vocab_size < len(tokenizer):
        raise UserError(
            f"--lm_size pretrained: {base_model} has {model.vocab_size} vocabulary entries, the tokenizer {len(tokenizer)};"
            " tokenize with --tokenizer base and the same --base_model"
        )
    return model
