"""Causal language models (`--task causal_lm`): a GPT-2-style network built from a config of a chosen
size and trained from scratch, or an existing Hugging Face causal LM fine-tuned.

It offers the trainer what a classifier does (token ids and a mask in, logits out; the parameters
below the head; a layer depth for layer-wise learning-rate decay; safetensors only), but its logits
are one row per position and one column per vocabulary entry. The folder it saves is a plain
Hugging Face one, so `AutoModelForCausalLM.from_pretrained` reads it too.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from components.lib.data.contract import MODEL_TYPE_FILE, MODEL_WEIGHTS_FILE
from components.lib.errors import UserError
from components.lib.modelling.classifier import TrainableModel
from components.lib.modelling.sources import describe_load_failure

MODEL_TYPE = "causal_lm"
PRETRAINED = "pretrained"
LAYER_PATTERN = re.compile(r"\.h\.(\d+)\.|\.layers?\.(\d+)\.")


@dataclass(frozen=True)
class Size:
    layers: int
    heads: int
    width: int

    def non_embedding_parameters(self) -> int:
        """12 x width^2 per layer: attention (4 w^2) and the 4x-wide MLP (8 w^2), biases and norms aside."""
        return 12 * self.layers * self.width**2


# GPT-2's architecture at several sizes. "40m" has 39.3M non-embedding parameters, the smallest of the
# guides' pre-training runs; "gpt2" is GPT-2 small's shape (85M non-embedding; 124M with its own vocabulary).
SIZES = {
    "tiny": Size(layers=2, heads=4, width=128),
    "small": Size(layers=6, heads=6, width=384),
    "40m": Size(layers=8, heads=10, width=640),
    "gpt2": Size(layers=12, heads=12, width=768),
}
LM_SIZES = (*SIZES, PRETRAINED)


@dataclass(frozen=True)
class Sampling:
    """How `CausalLanguageModel.generate` picks each next token: the most likely (greedy), or drawn from the
    `top_k` most likely whose probabilities add up to `top_p`, after dividing the logits by `temperature`."""

    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 40
    top_p: float = 1.0
    stop_id: int | None = None  # generation ends after this token (end-of-text)
    use_cache: bool = True  # False re-reads the whole context for every token (for comparison)

    def problem(self) -> str | None:
        """The first setting out of its range, as "name: must be ..., got ..." (generate's flags and serve's
        request parameters say it in their own words); None when all are in range."""
        if not self.temperature > 0:
            return f"temperature: must be above 0, got {self.temperature}"
        if self.top_k < 0:
            return f"top_k: must be 0 (all tokens) or more, got {self.top_k}"
        if not 0 < self.top_p <= 1:
            return f"top_p: must be in (0, 1], got {self.top_p}"
        return None


class CausalLanguageModel(TrainableModel):
    model_type = MODEL_TYPE
    config_file = "config.json"

    def __init__(self, network) -> None:
        super().__init__()
        self.network = network  # an AutoModelForCausalLM
        numbered = [layer_number(name) for name, _ in network.named_parameters()]
        self.num_layers = max((number for number in numbered if number is not None), default=-1) + 1

    @classmethod
    def from_scratch(cls, size: str, vocab_size: int, block_size: int, end_of_text_id: int) -> CausalLanguageModel:
        """A GPT-2 of `size` with random weights, its vocabulary the trained tokenizer's."""
        from transformers import GPT2Config, GPT2LMHeadModel

        shape = SIZES[size]
        config = GPT2Config(
            vocab_size=vocab_size,
            n_positions=block_size,
            n_embd=shape.width,
            n_layer=shape.layers,
            n_head=shape.heads,
            bos_token_id=end_of_text_id,
            eos_token_id=end_of_text_id,
            pad_token_id=end_of_text_id,
        )
        return cls(GPT2LMHeadModel(config))

    @classmethod
    def pretrained(cls, spec: str, source: str, trust_remote_code: bool = False) -> CausalLanguageModel:
        return cls(causal_lm_from_pretrained(spec, source, trust_remote_code))

    @classmethod
    def load(cls, folder: Path, where: str, for_export: bool = False) -> CausalLanguageModel:
        return cls(causal_lm_from_pretrained(where, str(folder), attn_implementation="eager" if for_export else None))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits: (batch, positions, vocabulary)."""
        return self.network(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    @property
    def vocab_size(self) -> int:
        return self.network.get_input_embeddings().num_embeddings

    @property
    def max_positions(self) -> int | None:
        config = self.network.config
        return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)

    def encoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        """Everything below the output head (which GPT-2 ties to the input embedding)."""
        return self.network.base_model.parameters()

    def layer_depth(self, parameter_name: str) -> tuple[int, int]:
        """0 for embeddings, i + 1 for block i, the number of blocks + 1 for the final norm and head."""
        number = layer_number(parameter_name)
        if number is not None:
            return number + 1, self.num_layers
        return (0 if re.search(r"\.(wte|wpe|embed_tokens)\.", parameter_name) else self.num_layers + 1), self.num_layers

    def save(self, folder: Path) -> None:
        self.network.save_pretrained(folder)
        (folder / MODEL_TYPE_FILE).write_text(json.dumps({"model_type": self.model_type}) + "\n")

    def fit_to_context(self, prompt_ids: list[int]) -> list[int]:
        """The prompt's last tokens that leave at least one of the model's positions free for a new token."""
        room = self.max_positions
        return prompt_ids if room is None else prompt_ids[-(room - 1) :]

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], new_tokens: int, seed: int, sampling: Sampling | None = None) -> list[int]:
        """The prompt (cut by fit_to_context) and up to `new_tokens` tokens after it, by Hugging Face's `generate`
        with the KV cache (each new token one step over the cached keys and values), seeded; stops after
        `sampling.stop_id`. Past the model's positions it goes on from the last half of its context, read
        afresh: a sliding window whose cache is rebuilt once every half context."""
        sampling = sampling or Sampling()
        ids = self.fit_to_context(prompt_ids)
        start, room = len(ids), self.max_positions or len(ids) + new_tokens
        device = next(self.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            while len(ids) - start < new_tokens:
                context = ids if len(ids) < room else ids[-(room // 2) :]
                wanted = min(new_tokens - (len(ids) - start), room - len(context))
                produced = self.generate_within(context, wanted, sampling, device)
                ids += produced
                if sampling.stop_id is not None and sampling.stop_id in produced or len(produced) < wanted:
                    break
        return ids

    def generate_within(self, context: list[int], new_tokens: int, sampling: Sampling, device: torch.device) -> list[int]:
        """Up to `new_tokens` tokens after `context`, all within the model's positions."""
        prompt = torch.tensor([context], device=device)
        # Without a stop, an id no token has: Hugging Face's generate would otherwise stop at the config's end-of-text.
        stop = sampling.stop_id if sampling.stop_id is not None else self.vocab_size
        generated = self.network.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=0,
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_k=sampling.top_k if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            eos_token_id=stop,
            pad_token_id=self.network.config.pad_token_id if self.network.config.pad_token_id is not None else 0,
            use_cache=sampling.use_cache,
        )
        return generated[0, len(context) :].tolist()


def layer_number(parameter_name: str) -> int | None:
    match = LAYER_PATTERN.search(parameter_name)
    return int(match.group(1) or match.group(2)) if match else None


def causal_lm_from_pretrained(spec: str, source: str, trust_remote_code: bool = False, attn_implementation: str | None = None):
    """AutoModelForCausalLM from safetensors, or one line saying why it could not be loaded."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        return AutoModelForCausalLM.from_pretrained(
            source, use_safetensors=True, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation
        )
    except Exception as error:  # transformers raises OSError, ValueError and safetensors errors here
        raise describe_load_failure(spec, "causal language model", error) from None


def next_token_loss_sum(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The summed cross-entropy of every position's prediction of the token after it, over the positions
    whose next token is real: a block of n tokens predicts n - 1, padding predicts nothing."""
    targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="sum")


def predicted_tokens(lengths) -> int:
    """How many next-token predictions blocks of these lengths hold."""
    return int(sum(max(int(length) - 1, 0) for length in lengths))


@dataclass
class BlockScores:
    """A causal LM's scores over a split's blocks: perplexity is exp(loss_sum / tokens)."""

    loss_sum: float  # nats, summed over every predicted token
    tokens: int  # predicted tokens
    correct: int  # predictions whose most likely token was the next one

    @property
    def loss(self) -> float:
        return self.loss_sum / self.tokens if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.tokens else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.tokens if self.tokens else float("nan")

    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss, "perplexity": self.perplexity, "next_token_accuracy": self.accuracy, "tokens": self.tokens}


def score_blocks(model, split, batch_size: int, device: torch.device, pad_id: int, autocast=contextlib.nullcontext) -> BlockScores:
    """Loss, tokens and next-token hits of `model` over every block of `split` (a TokenizedSplit of blocks)."""
    from components.lib.data.batching import sorted_batches

    model.eval()
    loss_sum, tokens, correct = 0.0, 0, 0
    with torch.inference_mode():
        for rows in sorted_batches(split.lengths, batch_size):
            batch = {key: value.to(device) for key, value in split.collate(rows, pad_id).items()}
            with autocast():
                logits = model(batch["input_ids"], batch["attention_mask"])
            loss_sum += float(next_token_loss_sum(logits, batch["input_ids"], batch["attention_mask"]))
            real = batch["attention_mask"][:, 1:] == 1
            tokens += int(real.sum())
            correct += int(((logits[:, :-1].argmax(dim=-1) == batch["input_ids"][:, 1:]) & real).sum())
    return BlockScores(loss_sum, tokens, correct)


def load_for_generation(folder: Path, where: str):
    """(the model on the best device, in eval mode; its tokenizer), or one line saying why this folder has none."""
    kind = json.loads((folder / MODEL_TYPE_FILE).read_text()).get("model_type") if (folder / MODEL_TYPE_FILE).is_file() else None
    if kind != MODEL_TYPE:
        raise UserError(f"{where}: is not a causal language model (model type {kind!r}); generate and serve continue text with one")
    if not (folder / MODEL_WEIGHTS_FILE).is_file():
        raise UserError(
            f"{where}: holds no {MODEL_WEIGHTS_FILE} (an export from before generation was added keeps the ONNX graph only);"
            " export and register it again, or give generate train's model folder"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from components.lib.modelling.sources import load_tokenizer

    return CausalLanguageModel.load(folder, where).to(device).eval(), load_tokenizer(where, str(folder))
