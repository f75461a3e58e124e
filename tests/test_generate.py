"""generate: a causal LM's continuations with Hugging Face's KV cache, equal to decoding without it; seeded
sampling; the end-of-text stop; the command line from export's folder (what a registry version holds)."""

import json

import pytest
import torch

from components.export import export
from components.lib.modelling.language_model import CausalLanguageModel, Sampling
from tests.conftest import run_module
from tests.test_train_lm import WORDS, lm_tokens, trained_lm  # noqa: F401

PROMPT = [3, 4, 5]  # gamma delta epsilon: the trained model goes on through the cycle of words


@pytest.fixture(scope="module")
def model(trained_lm) -> CausalLanguageModel:  # noqa: F811
    return CausalLanguageModel.load(trained_lm, str(trained_lm)).eval()


def greedy_without_cache(model: CausalLanguageModel, prompt: list[int], new_tokens: int) -> list[int]:
    """The reference: each next token the argmax of a forward pass over the whole sequence so far."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(new_tokens):
            context = torch.tensor([ids])
            ids.append(int(model(context, torch.ones_like(context))[0, -1].argmax()))
    return ids


def context_sensitive_model() -> CausalLanguageModel:
    """A random GPT-2 with large weights: every next token depends on the whole context (the trained one looks
    at the last word alone), so a cache that lost or shifted any position would change the text."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=2, initializer_range=0.5, eos_token_id=0,
                        pad_token_id=0, bos_token_id=0)  # fmt: skip
    return CausalLanguageModel(GPT2LMHeadModel(config)).eval()


def test_greedy_generation_with_the_kv_cache_equals_decoding_the_whole_context_each_step(model):
    sensitive = context_sensitive_model()
    prompt = [5, 9, 3, 7]
    reference = greedy_without_cache(sensitive, prompt, 20)
    assert sensitive.generate(prompt, 20, seed=0, sampling=Sampling(greedy=True)) == reference
    assert sensitive.generate(prompt, 20, seed=0, sampling=Sampling(greedy=True, use_cache=False)) == reference
    assert greedy_without_cache(sensitive, [1, *prompt[1:]], 20) != reference  # the first token does count
    assert model.generate(PROMPT, 12, seed=0, sampling=Sampling(greedy=True))[3:6] == [6, 7, 8]  # the trained one: the cycle


def test_sampling_is_seeded_and_stops_after_the_end_of_text_token(model):
    sampled = [model.generate(PROMPT, 20, seed=seed, sampling=Sampling(temperature=3.0, top_k=0)) for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]
    greedy = model.generate(PROMPT, 12, seed=0, sampling=Sampling(greedy=True))
    stop = greedy[5]  # the third new token
    assert model.generate(PROMPT, 12, seed=0, sampling=Sampling(greedy=True, stop_id=stop)) == greedy[:6]


def follows_the_cycle(ids: list[int]) -> float:
    """The share of consecutive word pairs where the second is the word after the first in the training cycle."""
    pairs = [(first, second) for first, second in zip(ids, ids[1:]) if first and second]
    return sum(second == 1 + first % len(WORDS) for first, second in pairs) / len(pairs)


def test_a_prompt_longer_than_the_context_keeps_its_end_and_generation_slides_past_the_context(model):
    room = model.max_positions
    prompt = [1 + index % len(WORDS) for index in range(3 * room)]
    assert model.fit_to_context(prompt) == prompt[-(room - 1) :]
    generated = model.generate(prompt, 3 * room, seed=0, sampling=Sampling(greedy=True))
    assert len(generated) == room - 1 + 3 * room  # three contexts' worth of new tokens
    assert follows_the_cycle(generated[room - 1 :]) > 0.8  # each window, read afresh, goes on with the cycle


def test_the_command_continues_each_prompt_from_exports_folder(trained_lm, lm_tokens, tmp_path):  # noqa: F811
    export(model_uri=str(trained_lm), data_uri=str(lm_tokens), output_uri=str(tmp_path / "onnx"), latency_runs=1)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("gamma delta epsilon\n\nalpha beta\n")
    result = run_module("components.generate", "--model_uri", str(tmp_path / "onnx"), "--prompt_file", str(prompts), "--greedy", "true",
                        "--max_new_tokens", "3", "--stop_at_end_of_text", "false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [entry["prompt"] for entry in summary["generations"]] == ["gamma delta epsilon", "alpha beta"]
    assert summary["generations"][0]["text"] == "zeta eta theta" and summary["generations"][0]["new_tokens"] == 3
    from_stdin = run_module("components.generate", "--model_uri", str(tmp_path / "onnx"), "--prompt_file", "/dev/stdin", "--greedy", "true",
                            "--max_new_tokens", "3", "--stop_at_end_of_text", "false", stdin="gamma delta epsilon\n")  # fmt: skip
    [piped] = json.loads(from_stdin.stdout.strip().splitlines()[-1])["generations"]
    assert (piped["prompt"], piped["text"]) == ("gamma delta epsilon", "zeta eta theta")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prompt", "alpha", "--temperature", "0"], "--temperature: must be above 0, got 0.0; --greedy true takes the most likely token"),
        (["--prompt", "alpha", "--top_p", "1.5"], "--top_p: must be in (0, 1], got 1.5"),
        ([], "give either --prompt (one prompt) or --prompt_file (one prompt per line; /dev/stdin for a pipe)"),
        (["--prompt_file", "missing.txt"], "missing.txt: no such file (--prompt_file)"),
    ],
)
def test_bad_generation_flags_are_one_line_before_the_model_is_loaded(flags, message, trained_lm):  # noqa: F811
    result = run_module("components.generate", "--model_uri", str(trained_lm), *flags)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: {message}"]


def test_a_classifier_is_refused_in_one_line(tmp_path):
    from components.lib.storage.artifacts import staged_output

    with staged_output(str(tmp_path / "classifier")) as out:  # a committed model folder of another kind
        (out / "model_type.json").write_text(json.dumps({"model_type": "transformer"}))
    result = run_module("components.generate", "--model_uri", str(tmp_path / "classifier"), "--prompt", "hello")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("is not a causal language model (model type 'transformer'); generate and serve continue text with one")
    )


def test_without_a_stop_it_generates_every_token_asked_for_through_end_of_text(model):
    """evaluate's samples ask for no stop: the end-of-text token is one more token, as in the training stream."""
    sampled = [model.generate(PROMPT, 40, seed=seed, sampling=Sampling(temperature=3.0, top_k=0)) for seed in range(5)]
    assert all(len(ids) == len(PROMPT) + 40 for ids in sampled) and any(0 in ids[len(PROMPT) :] for ids in sampled)
