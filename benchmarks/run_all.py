"""`make bench`: run every benchmark, each in a fresh process, one after another (never side by side
with another, so they do not share the two cores); print all figures as one JSON object and write
them, with the targets, to benchmarks/RESULTS.md.

    python -m benchmarks.run_all [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks import gpu_train, inference_latency, memory_scaling, tokenize_speed, train_vs_trainer
from benchmarks.common import REPO, run_json

RESULTS = REPO / "benchmarks" / "RESULTS.md"


def targets(results: dict) -> list[list]:
    """The issue's targets, each with the figure that answers it."""
    rows = []
    tweets = {row["setting"]: row for row in results["train"]["datasets"]["tweets"]}
    ours = tweets["this project's train stage"]
    padded, dynamic = tweets["HF Trainer, padded to 128"], tweets["HF Trainer, dynamic padding"]
    rows.append(
        [
            "train >= 3x Trainer padded to 128 (tweets)",
            f"{ours['samples_per_second'] / padded['samples_per_second']:.2f}x",
            ours["samples_per_second"] >= 3 * padded["samples_per_second"],
        ]
    )
    rows.append(
        [
            "train >= 1.15x Trainer dynamic padding (tweets)",
            f"{ours['samples_per_second'] / dynamic['samples_per_second']:.2f}x",
            ours["samples_per_second"] >= 1.15 * dynamic["samples_per_second"],
        ]
    )
    for split in ("validation", "test"):
        key = f"{split}_macro_f1"
        for name, trainer in (("with dynamic padding, mean of 3 seeds each", dynamic), ("padded to 128, 1 seed", padded)):
            rows.append(
                [f"{split} macro-F1 no worse than the Trainer {name}", f"{ours[key]:.4f} vs {trainer[key]:.4f}", ours[key] >= trainer[key]]
            )
    engines = results["inference"]["engines"]
    rows.append(
        [
            "ORT INT8 >= 5x PyTorch eager at batch 1",
            f"{engines['onnxruntime INT8']['batch_1_speedup_vs_eager']:.2f}x",
            engines["onnxruntime INT8"]["batch_1_speedup_vs_eager"] >= 5,
        ]
    )
    points = results["inference"]["int8_minus_fp32_macro_f1_points"]
    rows.append(["INT8 test macro-F1 within 1 point of fp32", f"{points:+.2f} points", abs(points) <= 1])
    share = results["tokenize"]["stage_loop_vs_fastest_raw"]
    rows.append(["tokenize >= 80% of raw tokenizers", f"{share:.0%}", share >= 0.8])
    ratio = results["memory"]["largest_over_smallest_peak_rss"]
    rows.append(["peak RSS at 1M rows <= 1.2x at 100K", f"{ratio:.2f}x", ratio <= 1.2])
    return [[name, figure, "met" if met else "NOT met"] for name, figure, met in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, to check that the scripts run")
    quick = parser.parse_args().quick
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {
        "train": run_json("benchmarks.train_vs_trainer"),
        "tokenize": run_json("benchmarks.tokenize_speed", "--rows", "20000" if quick else "200000"),
        "inference": run_json("benchmarks.inference_latency"),
        "memory": run_json("benchmarks.memory_scaling", "--sizes", "10000,100000" if quick else "100000,1000000"),
        "gpu": run_json("benchmarks.gpu_train"),
    }
    from benchmarks.common import markdown_table

    sections = [
        f"# Benchmark results\n\nProduced by `make bench` (benchmarks/run_all.py) on {started}. Each figure is one run on the machine named;"
        " compare figures of the same run only: these machines are noisy.",
        "## Targets\n\n" + markdown_table(["target", "measured", ""], targets(results)),
        "## 1. Training: this project's train stage beside the Hugging Face Trainer\n\n" + train_vs_trainer.markdown(results["train"]),
        "## 2. Tokenize beside raw `tokenizers`\n\n" + tokenize_speed.markdown(results["tokenize"]),
        "## 3. Inference: PyTorch eager, onnxruntime fp32, onnxruntime INT8\n\n" + inference_latency.markdown(results["inference"]),
        "## 4. Peak memory of preprocess and tokenize as the data grows\n\n" + memory_scaling.markdown(results["memory"]),
        "## 5. Training on a GPU (bf16)\n\n" + gpu_train.markdown(results["gpu"]),
    ]
    RESULTS.write_text("\n\n".join(sections) + "\n")
    print(json.dumps(results))
    print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
