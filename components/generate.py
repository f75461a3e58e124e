"""generate: text from a causal language model (`--task causal_lm`), one continuation per prompt.

    python -m components.generate --registry_uri runs/registry --model_name hindi-lm --prompt "एक बार"
    python -m components.generate --model_uri runs/.../train/model --prompt_file prompts.txt --greedy true
    echo "Once upon a time" | python -m components.generate --model_uri ... --prompt_file /dev/stdin

The model is the PyTorch one (train's folder, or a registry version, which holds its weights beside
the ONNX graph): Hugging Face's `generate` with the KV cache costs one step per new token, where the
exported ONNX graph, which has no cache inputs, would re-read the whole context for each. Sampling is
seeded; generation stops at the end-of-text token or after --max_new_tokens, going on past the model's
context in a sliding window. A prompt longer than the model's context loses its start (logged). Each prompt's text and
speed go to the log and to the summary line.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.errors import UserError
from components.lib.modelling.language_model import CausalLanguageModel, Sampling, load_for_generation
from components.lib.storage.registry import model_folder

log = logging.getLogger("components.generate")


@takes_common_flags
def generate(
    *,
    model_uri: str = "",
    registry_uri: str = "",
    model_name: str = "",
    version: str = "latest",
    prompt: str = "",
    prompt_file: str = "",
    max_new_tokens: int = 50,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 40,
    top_p: float = 1.0,
    seed: int = 0,
    stop_at_end_of_text: bool = True,
) -> StageResult:
    """Continue each prompt with a causal language model.

    Args:
      model_uri: A causal LM folder (local or s3://) written by train or export. Or --registry_uri, --model_name, --version.
      prompt: One prompt. Or --prompt_file.
      prompt_file: A UTF-8 text file of prompts, one per line (empty lines skipped); /dev/stdin reads them from a pipe.
      max_new_tokens: At most this many tokens after each prompt.
      greedy: Always take the most likely next token (no sampling; temperature, top_k and top_p unused).
      temperature: Divide the logits by this before sampling: below 1 safer, above 1 more varied.
      top_k: Sample from the k most likely next tokens only; 0: all.
      top_p: Sample from the most likely next tokens whose probabilities add up to this (nucleus sampling); 1: all.
      seed: Seed of the sampling: the same seed, prompt and model give the same text.
      stop_at_end_of_text: End a continuation at the end-of-text token.
    """
    sampling = Sampling(greedy, temperature, top_k, top_p)
    check_sampling(max_new_tokens, sampling)
    prompts = read_prompts(prompt, prompt_file)
    with model_folder(model_uri, registry_uri, model_name, version) as (folder, _manifest, where):
        model, tokenizer = load_for_generation(folder, where)
        if stop_at_end_of_text and tokenizer.eos_token_id is not None:
            sampling = Sampling(greedy, temperature, top_k, top_p, stop_id=tokenizer.eos_token_id)
        generations = [continue_prompt(model, tokenizer, text, max_new_tokens, seed, sampling) for text in prompts]
    return StageResult(summary={"tool": "generate", "model": where, "seed": seed, "generations": generations})


def check_sampling(max_new_tokens: int, sampling: Sampling) -> None:
    if max_new_tokens < 1:
        raise UserError(f"--max_new_tokens: must be at least 1, got {max_new_tokens}")
    if problem := sampling.problem():
        greedy_hint = "; --greedy true takes the most likely token" if problem.startswith("temperature") else ""
        raise UserError(f"--{problem}{greedy_hint}")


def read_prompts(prompt: str, prompt_file: str) -> list[str]:
    if bool(prompt) == bool(prompt_file):
        raise UserError("give either --prompt (one prompt) or --prompt_file (one prompt per line; /dev/stdin for a pipe)")
    if prompt:
        return [prompt]
    path = Path(prompt_file)
    if not path.exists() or path.is_dir():
        raise UserError(f"{prompt_file}: no such file (--prompt_file)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise UserError(f"{prompt_file}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UserError(f"{prompt_file}: holds no prompt (every line is empty)")
    return prompts


def continue_prompt(model: CausalLanguageModel, tokenizer, text: str, max_new_tokens: int, seed: int, sampling: Sampling) -> dict:
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not prompt_ids:
        raise UserError(f"prompt {text[:60]!r}: the tokenizer makes no tokens of it")
    kept_ids = model.fit_to_context(prompt_ids)
    if len(kept_ids) < len(prompt_ids):
        log.warning("prompt %r: %d tokens, more than the model's %d positions leave room for; kept the last %d",
                    text[:40], len(prompt_ids), model.max_positions, len(kept_ids))  # fmt: skip
    started = time.perf_counter()
    ids = model.generate(kept_ids, max_new_tokens, seed, sampling)
    seconds = time.perf_counter() - started
    continuation = ids[len(kept_ids) :]
    shown = tokenizer.decode(continuation, skip_special_tokens=True)
    log.info("%s ⟶ %s  (%d tokens, %.1f tokens/s)", text, shown, len(continuation), len(continuation) / max(seconds, 1e-9))
    return {
        "prompt": text,
        "text": shown,
        "new_tokens": len(continuation),
        "tokens_per_second": round(len(continuation) / max(seconds, 1e-9), 1),
    }


if __name__ == "__main__":
    run_stage(generate)
