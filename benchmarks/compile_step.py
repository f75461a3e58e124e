"""Benchmark 24: can torch.compile pay for itself in the train stage's step? Eager beside compiled,
at each of a few fixed sequence lengths (buckets), steady state and compile seconds.

    python -m benchmarks.compile_step [--buckets 16,32,48,64] [--steps 10] [--precision fp32]

The train stage's step (all-MiniLM-L6-v2 with a new three-label head, its AdamW groups with the fused
kernel, clipping at 1.0, batch 16) runs on random token ids padded to each bucket length, in three
ways: eager; compiled with static shapes (one graph per bucket: what padding each batch up to its
bucket would give); compiled with the length dynamic (the stage's `--compile true`); then eager
again, which shows how far the machine's own speed drifted between the first and last rows. For each bucket
the first step's seconds (compilation, where compiled) and the mean of `--steps` steps after two
warm-up steps. Inductor's on-disk caches point at a fresh folder, so every compilation is cold, as in
a new pod. A compiled step earns its compile time back after compile seconds / (eager - compiled
seconds per step) steps; if it is no faster in steady state, no choice of buckets can make it pay.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from benchmarks.common import machine, markdown_table

BATCH = 16
LEARNING_RATE = 1e-4
WARMUP_STEPS = 5  # the first steps after the model is made run slower, eager too
LABELS = ["negative", "neutral", "positive"]
MODES = {
    "eager": "eager",
    "static": "compiled, static shapes (a graph per bucket)",
    "dynamic": "compiled, length dynamic (the stage's --compile true)",
    "eager_again": "eager again, last (how far this machine drifted during the run)",
}
EAGER = ("eager", "eager_again")


def stage_step(precision: str):
    """The train stage's model, optimizer and one optimizer step, on the device the machine has."""
    import torch

    from components.lib.modelling.classifier import ModelRequest
    from components.lib.modelling.huggingface import HuggingFaceClassifier
    from components.lib.modelling.sources import bundled_model_path
    from components.lib.training.optim import parameter_groups

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = str(bundled_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    model = HuggingFaceClassifier.create(ModelRequest("all-MiniLM-L6-v2", source, LABELS, 30522)).to(device).train()
    optimizer = torch.optim.AdamW(parameter_groups(model, LEARNING_RATE, 0.01, 1.0), lr=LEARNING_RATE, fused=True)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def step(forward, length: int) -> None:
        input_ids = torch.randint(1000, 20000, (BATCH, length), device=device)
        attention_mask = torch.ones(BATCH, length, dtype=torch.long, device=device)
        labels = torch.randint(0, len(LABELS), (BATCH,), device=device)
        with torch.autocast(device.type, dtype=dtype, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(forward(input_ids, attention_mask).float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return model, step


def timed(step, forward, length: int) -> float:
    start = time.perf_counter()
    step(forward, length)
    return time.perf_counter() - start


def measure_mode(mode: str, buckets: list[int], steps: int, precision: str) -> dict:
    import torch

    fresh_compiler()
    model, step = stage_step(precision)
    forward = model if mode in EAGER else torch.compile(model, dynamic=mode == "dynamic")
    rows = []
    for length in buckets:
        first = timed(step, forward, length)
        for _ in range(WARMUP_STEPS):
            step(forward, length)
        steady = statistics.mean(timed(step, forward, length) for _ in range(steps))
        rows.append({"length": length, "first_step_seconds": round(first, 2), "step_ms": round(steady * 1000, 1)})
    return {"mode": mode, "buckets": rows, "graphs_compiled": 0 if mode in EAGER else graphs_compiled()}


def fresh_compiler() -> None:
    """Dynamo as in a new process: its caches and its counters (reset() leaves the counters, which would add up across modes)."""
    import torch

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()


def graphs_compiled() -> int:
    import torch

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def summarise(modes: list[dict]) -> list[dict]:
    """Each mode beside eager: mean steady step, speed-up, compile seconds and the steps to earn them back."""
    eager = {row["length"]: row["step_ms"] for row in modes[0]["buckets"]}
    summary = []
    for mode in modes:
        mean_ms = statistics.mean(row["step_ms"] for row in mode["buckets"])
        eager_ms = statistics.mean(eager.values())
        compile_seconds = sum(max(0.0, row["first_step_seconds"] - row["step_ms"] / 1000) for row in mode["buckets"])
        saved_ms = eager_ms - mean_ms
        compiled = mode["mode"] not in EAGER
        break_even = round(compile_seconds / (saved_ms / 1000)) if compiled and saved_ms > 0 else None
        summary.append({
            "mode": mode["mode"], "mean_step_ms": round(mean_ms, 1), "speed_vs_eager": round(eager_ms / mean_ms, 3),
            "compile_seconds": round(compile_seconds, 1) if compiled else 0.0, "break_even_steps": break_even,
        })  # fmt: skip
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", default="16,32,48,64")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    arguments = parser.parse_args()
    buckets = [int(length) for length in arguments.buckets.split(",")]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold: no graph compiled by an earlier run is reused
        modes = [measure_mode(mode, buckets, arguments.steps, arguments.precision) for mode in MODES]
    result = {
        "machine": machine(), "precision": arguments.precision, "batch": BATCH, "steps": arguments.steps,
        "modes": modes, "summary": summarise(modes),
    }  # fmt: skip
    print(json.dumps(result))
    return 0


def break_even_cell(row: dict) -> object:
    if row["mode"] in EAGER:
        return "-"
    return row["break_even_steps"] or "never"


def markdown(result: dict) -> str:
    lengths = [row["length"] for row in result["modes"][0]["buckets"]]
    per_bucket = [
        [MODES[mode["mode"]], *(f"{row['step_ms']} ({row['first_step_seconds']} s)" for row in mode["buckets"])] for mode in result["modes"]
    ]
    summary = [
        [
            MODES[row["mode"]],
            row["mean_step_ms"],
            row["speed_vs_eager"],
            "-" if row["mode"] in EAGER else row["compile_seconds"],
            break_even_cell(row),
        ]
        for row in result["summary"]
    ]
    drift = abs(next(row["speed_vs_eager"] for row in result["summary"] if row["mode"] == "eager_again") - 1)
    graphs = ", ".join(f"{MODES[mode['mode']]}: {mode['graphs_compiled']}" for mode in result["modes"] if mode["mode"] not in EAGER)
    return "\n\n".join([
        f"Machine: {result['machine']}. all-MiniLM-L6-v2, batch {result['batch']}, {result['precision']}; the train stage's model,"
        f" AdamW groups (fused kernel) and clipping, on random token ids; each figure the mean of {result['steps']} steps after"
        f" {WARMUP_STEPS} warm-up steps. Inductor's caches start empty.",
        markdown_table(["mode", *(f"length {length}: ms/step (first step)" for length in lengths)], per_bucket),
        markdown_table(["mode", "mean ms/step", "speed vs eager", "compile s", "steps to earn compile back"], summary),
        f"Graphs compiled: {graphs}. A compiled run pays only where it has more steps than its steps to earn compile back;"
        " \"never\": no faster than eager in steady state, so no choice of buckets makes it pay. The two eager rows, the same"
        f" code at the start and the end of the run, differ by {drift:.0%}: a compiled row closer than that to eager is no"
        " measured gain.",
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
