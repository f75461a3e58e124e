"""Benchmark 16: generation's tokens per second with Hugging Face's KV cache and without it (issue 33).

    python -m benchmarks.generation [--new_tokens 120]

GPT-2 networks of the causal-LM sizes train builds (random weights: the speed does not depend on
them), the default vocabulary (8,000) and block size (128), greedy from a 8-token prompt: each new
token one step over the cached keys and values, or (use_cache off) a forward pass over the whole
context so far, which is what the exported ONNX graph, without cache inputs, would do. Both produce
the same tokens (tests/test_generate.py). Best of three runs each, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from benchmarks.common import machine, markdown_table
from components.lib.modelling.language_model import CausalLanguageModel, Sampling

SIZES = ("tiny", "small", "40m")
VOCABULARY, BLOCK = 8000, 128
PROMPT = list(range(1, 9))


def tokens_per_second(model: CausalLanguageModel, new_tokens: int, use_cache: bool) -> float:
    sampling = Sampling(greedy=True, use_cache=use_cache)
    model.generate(PROMPT, 8, seed=0, sampling=sampling)  # warm-up
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        produced = len(model.generate(PROMPT, new_tokens, seed=0, sampling=sampling)) - len(PROMPT)
        best = min(best, time.perf_counter() - started)
    return produced / best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new_tokens", type=int, default=BLOCK - len(PROMPT))
    args = parser.parse_args()
    rows = []
    for size in SIZES:
        torch.manual_seed(0)
        model = CausalLanguageModel.from_scratch(size, VOCABULARY, BLOCK, 0).eval()
        cached, uncached = (tokens_per_second(model, args.new_tokens, use_cache) for use_cache in (True, False))
        rows.append({"size": size, "new_tokens": args.new_tokens, "cached": round(cached, 1), "uncached": round(uncached, 1)})
    print(json.dumps({"machine": machine(), "torch_threads": torch.get_num_threads(), "rows": rows}))
    return 0


def markdown(result: dict) -> str:
    rows = [[row["size"], row["new_tokens"], row["cached"], row["uncached"], f"{row['cached'] / row['uncached']:.2f}x"]
            for row in result["rows"]]  # fmt: skip
    return (
        f"On {result['machine']}. Greedy generation from an 8-token prompt to the"
        f" {BLOCK}-token context, vocabulary {VOCABULARY}, random weights, best of three:\n\n"
        + markdown_table(["size", "new tokens", "tokens/s with the KV cache", "tokens/s without", "cache speed-up"], rows)
    )


if __name__ == "__main__":
    sys.exit(main())
