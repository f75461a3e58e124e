"""Benchmark 9: where the train stage's time goes, by torch.profiler on the machine it runs on.

    python -m benchmarks.profile_train [--steps 40] [--precision fp32]

The train stage (all-MiniLM-L6-v2, batch 16, lr 1e-4, the settings of benchmark 1) runs `--steps`
optimizer steps on the review first sentences under torch.profiler; its one validation pass at the
end (59 rows) is in the profile too. Each operator's self time (time in the operator itself, not in
the operators it calls) goes to one kind of work; the table gives the kinds' shares of all self
time, and the operators that took the most.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BASE_MODEL, REPO, machine, markdown_table, prepare_datasets

# A kind of work: the first whose words appear in an operator's name takes it (order matters: the
# fused optimizer's foreach_ kernels before the elementwise ones).
KINDS = [
    ("optimizer and gradient clipping", ("adamw", "_foreach", "clip_grad", "vector_norm", "optimizer")),
    ("matrix products", ("addmm", "aten::mm", "bmm", "matmul", "aten::linear")),
    ("attention softmax and scores", ("scaled_dot_product", "softmax", "_efficient_attention", "_flash_attention")),
    ("LayerNorm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("dropout", ("dropout", "bernoulli")),
    ("embedding lookup and its gradient", ("embedding",)),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax")),
    ("copies, casts and layout", ("copy_", "aten::to", "_to_copy", "contiguous", "clone", "transpose", "permute", "view", "reshape")),
    ("other elementwise (add, mul, fill)", ("add", "mul", "div", "fill_", "zero_", "sum", "where", "masked")),
]
OTHER = "everything else"
TOP_OPERATORS = 12


def kind_of(operator: str) -> str:
    name = operator.lower()
    return next((kind for kind, words in KINDS if any(word in name for word in words)), OTHER)


def profile(tokens: Path, steps: int, precision: str) -> tuple[dict[str, float], list[tuple[str, float]], float]:
    import torch
    from torch.profiler import ProfilerActivity

    from components.train import train

    with tempfile.TemporaryDirectory() as scratch, torch.profiler.profile(activities=[ProfilerActivity.CPU]) as profiler:
        train(data_uri=str(tokens), output_uri=f"{scratch}/model", base_model=BASE_MODEL, epochs=1, max_steps=steps, batch_size=16,
              learning_rate=1e-4, warmup_ratio=0.1, class_weights="none", precision=precision, report_to="none", logging_steps=1000)  # fmt: skip
    by_operator = {event.key: event.self_cpu_time_total / 1e6 for event in profiler.key_averages() if event.self_cpu_time_total > 0}
    total = sum(by_operator.values())
    kinds: dict[str, float] = {}
    for operator, seconds in by_operator.items():
        kinds[kind_of(operator)] = kinds.get(kind_of(operator), 0.0) + seconds
    top = sorted(by_operator.items(), key=lambda item: -item[1])[:TOP_OPERATORS]
    return kinds, top, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--workdir", default=str(REPO / "build" / "bench"))
    arguments = parser.parse_args()
    tokens = prepare_datasets(Path(arguments.workdir))["first_sentences"]["tokens"]
    kinds, top, total = profile(tokens, arguments.steps, arguments.precision)
    result = {
        "machine": machine(), "steps": arguments.steps, "precision": arguments.precision, "self_seconds": round(total, 2),
        "kinds": {kind: round(seconds / total, 4) for kind, seconds in sorted(kinds.items(), key=lambda item: -item[1])},
        "top_operators": [{"operator": name, "kind": kind_of(name), "share": round(seconds / total, 4)} for name, seconds in top],
    }  # fmt: skip
    print(json.dumps(result))
    return 0


def markdown(result: dict) -> str:
    kinds = markdown_table(["kind of work", "share of self time"], [[kind, f"{share:.1%}"] for kind, share in result["kinds"].items()])
    top = markdown_table(
        ["operator", "kind", "share of self time"],
        [[row["operator"], row["kind"], f"{row['share']:.1%}"] for row in result["top_operators"]],
    )
    return (
        f"Machine: {result['machine']}. The train stage, {result['steps']} optimizer steps of all-MiniLM-L6-v2 at batch 16 on the"
        f" review first sentences, {result['precision']}, and its validation pass, under torch.profiler: {result['self_seconds']:.1f} s of"
        f" operator self time.\n\n{kinds}\n\nThe operators that took the most:\n\n{top}"
    )


if __name__ == "__main__":
    sys.exit(main())
