"""`make bench`: run every benchmark, each in a fresh process, one after another (never side by side
with another, so they do not share the two cores); print all figures as one JSON object and write
them, with the targets, to benchmarks/RESULTS.md.

    python -m benchmarks.run_all [--quick]

The targets table goes into README.md too, between its two benchmark markers, so the two cannot
drift. `--quick` (smaller sizes, one seed and one epoch) writes build/bench/RESULTS-quick.md and
leaves RESULTS.md and README.md alone. The figures are kept in build/bench/results.json (each
benchmark's as soon as it ends); `--render` writes RESULTS.md and README.md again from that file,
without running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import (
    gpu_train,
    inference_latency,
    kfold_learning_rates,
    memory_scaling,
    model_families,
    serve_load,
    tokenize_speed,
    train_vs_trainer,
)
from benchmarks.common import DATASETS, REPO, markdown_table, run_json
from benchmarks.train_vs_trainer import MAJORITY_MARGIN, OURS

RESULTS = REPO / "benchmarks" / "RESULTS.md"
README = REPO / "README.md"
README_START = "<!-- benchmark targets: written by benchmarks/run_all.py from benchmarks/RESULTS.md; do not edit by hand -->"
README_END = "<!-- end of benchmark targets -->"


# Each benchmark's key in results.json: its module and arguments (QUICK_ARGUMENTS replace them with --quick).
BENCHMARKS = {
    "train": ("benchmarks.train_vs_trainer",),
    "tokenize": ("benchmarks.tokenize_speed", "--rows", "200000"),
    "inference": ("benchmarks.inference_latency",),
    "memory": ("benchmarks.memory_scaling", "--sizes", "100000,1000000"),
    "gpu": ("benchmarks.gpu_train",),
    "families": ("benchmarks.model_families",),
    "kfold": ("benchmarks.kfold_learning_rates",),
    "serve": ("benchmarks.serve_load",),
}
QUICK_ARGUMENTS = {
    "train": ["--quick"],
    "tokenize": ["--rows", "20000"],
    "memory": ["--sizes", "10000,100000"],
    "families": ["--cnn_epochs", "2"],
    "serve": ["--requests", "40", "--seconds", "5"],
}


def targets(results: dict) -> list[list]:
    """The issue's targets, each with the figure that answers it, judged on the review first sentences.

    Speed is judged against the Trainer's fastest setting as well as against padding to 128. A quality
    row is left out where the Trainer's score is at the majority class (within MAJORITY_MARGIN): beating
    a model that learned nothing says nothing; the tables in section 1 still show those scores.
    """
    rows = []
    name = "first_sentences"
    settings = results["train"]["datasets"][name]
    ours = next(row for row in settings if row["setting"] == OURS)
    trainers = [row for row in settings if row["setting"] != OURS]
    padded = next(row for row in trainers if row["setting"] == "HF Trainer, padded to 128")
    fastest = max(trainers, key=lambda row: row["samples_per_second"])
    fastest_name = fastest["setting"].removeprefix("HF Trainer, ")
    for factor, trainer, label in (
        (3, padded, "the Trainer padded to 128"),
        (1.15, fastest, f"the fastest Trainer setting ({fastest_name})"),
    ):
        rows.append(
            [
                f"train >= {factor}x {label}",
                f"{ours['samples_per_second'] / trainer['samples_per_second']:.2f}x ({ours['samples_per_second']:.1f} vs"
                f" {trainer['samples_per_second']:.1f} samples/s)",
                ours["samples_per_second"] >= factor * trainer["samples_per_second"],
            ]
        )
    majority = results["train"]["majority_class"][name]
    for split in ("validation", "test"):
        key = f"{split}_macro_f1"
        for trainer in trainers:
            if key not in trainer or abs(trainer[key] - majority[key]) <= MAJORITY_MARGIN:
                continue
            rows.append(
                [
                    f"{split} macro-F1 no worse than the Trainer, {trainer['setting'].removeprefix('HF Trainer, ')}"
                    f" (mean of {ours['seeds']} vs {trainer['seeds']} seeds)",
                    f"{ours[key]:.4f} vs {trainer[key]:.4f} (majority class: {majority[key]:.4f})",
                    ours[key] >= trainer[key],
                ]
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
    for key, label in (("stage_loop_vs_fastest_raw", "tokenize stage loop"), ("whole_stage_vs_fastest_raw", "whole tokenize stage")):
        share = results["tokenize"][key]
        rows.append([f"{label} >= 80% of raw tokenizers", f"{share:.0%}", share >= 0.8])
    ratio = results["memory"]["largest_over_smallest_peak_rss"]
    rows.append(["peak RSS at 1M rows <= 1.2x at 100K", f"{ratio:.2f}x", ratio <= 1.2])
    return [[name, figure, "met" if met else "NOT met"] for name, figure, met in rows]


def targets_table(results: dict) -> str:
    return markdown_table(["target", "measured", ""], targets(results))


TRAIN_TARGETS_ON = (
    f"Training targets are judged on the {DATASETS['first_sentences']}: the first sentence of each bundled drug review,"
    " labelled with the whole review's rating (not tweets)."
)


def readme_block(results: dict, started: str) -> str:
    """What run_all writes into README.md between the markers: the targets table exactly as in RESULTS.md."""
    return (
        f"{README_START}\n"
        f"Targets from `benchmarks/RESULTS.md` (`make bench`, {started}; {results['train']['machine']}), copied here by"
        f" `benchmarks/run_all.py`. {TRAIN_TARGETS_ON}\n\n"
        f"{targets_table(results)}\n"
        f"{README_END}"
    )


def write_readme(block: str, readme: Path = README) -> None:
    text = readme.read_text()
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + block + tail)


def later_section(results: dict, key: str, title: str, render) -> str:
    """A section added after the full run: run alone with --only, so it says when."""
    if key not in results:
        return f"## {title}\n\nNot run yet: `python -m benchmarks.run_all --only {key}`."
    return f"## {title}\n\nFinished {results['finished'][key]} (`python -m benchmarks.run_all --only {key}`). {render(results[key])}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, to check that the scripts run")
    parser.add_argument("--render", action="store_true", help="write RESULTS.md and README.md again from build/bench/results.json")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run this benchmark alone; keep the others' figures from results.json")
    arguments = parser.parse_args()
    quick = arguments.quick
    saved = REPO / "build" / "bench" / ("results-quick.json" if quick else "results.json")
    saved.parent.mkdir(parents=True, exist_ok=True)
    if arguments.render or arguments.only:
        results = json.loads(saved.read_text())
    else:
        results = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if not arguments.render:
        for key in [arguments.only] if arguments.only else BENCHMARKS:
            module, *args = BENCHMARKS[key]
            if quick:
                args = QUICK_ARGUMENTS.get(key, args)
            started = time.perf_counter()
            results[key] = run_json(module, *args)
            results.setdefault("wall_seconds", {})[key] = round(time.perf_counter() - started)
            results.setdefault("finished", {})[key] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            saved.write_text(json.dumps(results))
            print(f"{key}: done in {results['wall_seconds'][key]} s", file=sys.stderr, flush=True)
    started = results["started"]
    walls = results.get("wall_seconds", {})
    wall = (
        f" Wall time: {sum(walls.values()) / 60:.0f} min ("
        + ", ".join(f"{key} {seconds / 60:.1f} min" for key, seconds in walls.items())
        + ")."
        if walls
        else ""
    )
    sections = [
        f"# Benchmark results\n\nProduced by `make bench` (benchmarks/run_all.py) on {started}.{wall} Each figure is one run on the"
        " machine named; compare figures of the same run only: these machines are noisy.",
        f"## Targets\n\n{TRAIN_TARGETS_ON}\n\n" + targets_table(results),
        "## 1. Training: this project's train stage beside the Hugging Face Trainer\n\n" + train_vs_trainer.markdown(results["train"]),
        "## 2. Tokenize beside raw `tokenizers`\n\n" + tokenize_speed.markdown(results["tokenize"]),
        "## 3. Inference: PyTorch eager, onnxruntime fp32, onnxruntime INT8\n\n" + inference_latency.markdown(results["inference"]),
        "## 4. Peak memory of preprocess and tokenize as the data grows\n\n" + memory_scaling.markdown(results["memory"]),
        "## 5. Training on a GPU (bf16)\n\n" + gpu_train.markdown(results["gpu"]),
        later_section(results, "families", "6. Model families: MiniLM, a CNN, distillation, augmentation", model_families.markdown),
        later_section(results, "kfold", "7. K-fold cross-validation: MiniLM at two learning rates", kfold_learning_rates.markdown),
        later_section(results, "serve", "8. The model server under load (loopback)", serve_load.markdown),
    ]
    destination = REPO / "build" / "bench" / "RESULTS-quick.md" if quick else RESULTS
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text("\n\n".join(sections) + "\n")
    if quick:
        (destination.parent / "README-block-quick.md").write_text(readme_block(results, started) + "\n")
    else:
        write_readme(readme_block(results, started))
    print(json.dumps(results))
    print(f"wrote {destination}" + ("" if quick else f" and the targets in {README}"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
