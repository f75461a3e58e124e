"""`make bench`: run every benchmark, each in a fresh process, one after another (never side by side
with another, so they do not share the two cores); print all figures as one JSON object and write
them, with the targets, to benchmarks/RESULTS.md.

    python -m benchmarks.run_all [--quick]

The targets table goes into README.md too, between its two benchmark markers, so the two cannot
drift. `--quick` (smaller sizes, one seed and one epoch) writes build/bench/RESULTS-quick.md and
leaves RESULTS.md and README.md alone. The figures are kept in benchmarks/results.json (each
benchmark's as soon as it ends); `--only KEY ...` runs some benchmarks again and keeps the others'
figures (a section with none keeps its text from the previous RESULTS.md); `--render` writes
RESULTS.md and README.md again from that file, without running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import (
    causal_lm,
    compile_step,
    default_recipe,
    evaluation_checks,
    generation,
    gpu_train,
    halving_sweep,
    inference_latency,
    kfold_learning_rates,
    label_noise,
    lm_curriculum,
    memory_scaling,
    model_families,
    multilabel,
    profile_train,
    serve_load,
    time_to_model,
    tokenize_speed,
    train_vs_trainer,
    two_nodes,
    vader_tweets,
)
from benchmarks.common import DATASETS, REPO, markdown_table, run_json
from benchmarks.train_vs_trainer import BF16, MAJORITY_MARGIN, OURS, STRONGEST

RESULTS = REPO / "benchmarks" / "RESULTS.md"
# The figures RESULTS.md is written from, kept in the repository so that one benchmark can be run again alone.
SAVED = REPO / "benchmarks" / "results.json"
QUICK_SAVED = REPO / "build" / "bench" / "results-quick.json"
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
    "profile": ("benchmarks.profile_train",),
    "time_to_model": ("benchmarks.time_to_model",),
    "causal_lm": ("benchmarks.causal_lm",),
    "default_recipe": ("benchmarks.default_recipe",),
    "multilabel": ("benchmarks.multilabel",),
    "evaluation": ("benchmarks.evaluation_checks",),
    "label_noise": ("benchmarks.label_noise",),
    "generation": ("benchmarks.generation",),
    "lm_curriculum": ("benchmarks.lm_curriculum", "--epochs", "4"),
    "halving": ("benchmarks.halving_sweep",),
    "two_nodes": ("benchmarks.two_nodes",),
    "lm_curriculum_foldoc": ("benchmarks.lm_curriculum", "--corpus", "foldoc", "--epochs", "4"),
    "lm_curriculum_full_budget": ("benchmarks.lm_curriculum", "--epochs", "32"),
    "time_to_model_snippets": ("benchmarks.time_to_model", "--corpus", "movie_snippets"),
    "train_snippets": ("benchmarks.train_vs_trainer", "--datasets", "movie_snippets"),
    "compile_step": ("benchmarks.compile_step",),
}
# RESULTS.md's sections after the targets: benchmark key, title, renderer.
SECTIONS = [
    ("train", "1. Training: this project's train stage beside the Hugging Face Trainer", train_vs_trainer.markdown),
    ("tokenize", "2. Tokenize beside raw `tokenizers`", tokenize_speed.markdown),
    ("inference", "3. Inference: PyTorch eager, onnxruntime fp32, onnxruntime INT8", inference_latency.markdown),
    ("memory", "4. Peak memory of preprocess and tokenize as the data grows", memory_scaling.markdown),
    ("gpu", "5. Training on a GPU (bf16)", gpu_train.markdown),
    ("families", "6. Model families: MiniLM, a CNN, distillation, augmentation", model_families.markdown),
    ("kfold", "7. K-fold cross-validation: MiniLM at two learning rates", kfold_learning_rates.markdown),
    ("serve", "8. The model server under load (loopback)", serve_load.markdown),
    ("profile", "9. Where the train stage's time goes (torch.profiler)", profile_train.markdown),
    ("time_to_model", "10. Time to a registered model: `make run` beside a Trainer script", time_to_model.markdown),
    ("causal_lm", "11. Causal language models: trained tokenizers, the train stage beside the Trainer, perplexity", causal_lm.markdown),
    ("default_recipe", "12. The default recipe on its bundled data and on data it was not chosen on", default_recipe.markdown),
    ("multilabel", "13. Multi-label classification: FOLDOC subject tags, beside TF-IDF one-vs-rest", multilabel.markdown),
    ("evaluation", "14. Evaluation that decides: label audit, slices, abstention, the production comparison", evaluation_checks.markdown),
    ("label_noise", "15. Dropping suspect labels, and slices by a source column", label_noise.markdown),
    ("generation", "16. Generation with and without the KV cache", generation.markdown),
    ("lm_curriculum", "17. Curricula for a causal language model: sequence-length warmup and rarity", lm_curriculum.markdown),
    ("halving", "18. A successive-halving sweep beside the full grid", halving_sweep.markdown),
    ("two_nodes", "19. Two training nodes as Kubeflow Trainer starts them, beside one process", two_nodes.markdown),
    ("lm_curriculum_foldoc", "20. The causal-LM curricula on a larger corpus: FOLDOC's definitions", lm_curriculum.markdown),
    ("lm_curriculum_full_budget", "21. The causal-LM curricula at the recipe's full budget (32 epochs)", lm_curriculum.markdown),
    (
        "time_to_model_snippets",
        "22. Time to a registered model on tweet-length text no setting was chosen on: evaluate and export beside train",
        time_to_model.markdown,
    ),
    (
        "train_snippets",
        "23. Training on tweet-length text no setting was chosen on: the train stage beside the Trainer",
        train_vs_trainer.markdown,
    ),
    ("compile_step", "24. torch.compile in the train stage's step: eager beside compiled, at fixed lengths", compile_step.markdown),
]
QUICK_ARGUMENTS = {
    "train": ["--quick"],
    "tokenize": ["--rows", "20000"],
    "memory": ["--sizes", "10000,100000"],
    "families": ["--cnn_epochs", "2"],
    "serve": ["--requests", "40", "--seconds", "5"],
    "profile": ["--steps", "5"],
    "train_snippets": ["--datasets", "movie_snippets", "--quick"],
    "compile_step": ["--buckets", "16", "--steps", "2"],
}


VERDICTS = {True: "met", False: "NOT met", None: "not measured"}


def setting(results: dict, dataset: str, name: str, key: str = "train") -> dict:
    """A setting's row of train_vs_trainer's results (under `key`: "train", or "train_snippets" for the movie-review snippets)."""
    return next(row for row in results[key]["datasets"][dataset] if row["setting"] == name)


def within_seed_noise(ours: dict, peer: dict, key: str) -> bool:
    """Better, or behind by no more than the wider spread of either side's seeds."""
    spreads = [row[f"{key}_range"][1] - row[f"{key}_range"][0] for row in (ours, peer) if f"{key}_range" in row]
    return ours[key] >= peer[key] - max(spreads, default=0.0)


def speed_target(factor: float, ours: dict, peer: dict, label: str) -> list:
    ratio = ours["samples_per_second"] / peer["samples_per_second"]
    figure = f"{ratio:.2f}x ({ours['samples_per_second']:.1f} vs {peer['samples_per_second']:.1f} samples/s)"
    return [f"train{label} >= {factor}x the Trainer, {peer['setting'].removeprefix('HF Trainer, ')}", figure, ratio >= factor]


def score_targets(results: dict, dataset: str, ours: dict, peer: dict, title: str, key: str = "train") -> list[list]:
    """Validation and test macro-F1 within seed noise of a peer, unless the peer learned nothing past the majority class."""
    majority = results[key]["majority_class"][dataset]
    rows = []
    for split in ("validation", "test"):
        score = f"{split}_macro_f1"
        if score not in peer or abs(peer[score] - majority[score]) <= MAJORITY_MARGIN:
            continue
        rows.append(
            [
                f"{DATASETS[dataset]}: {split} macro-F1 {title} (means of {ours['seeds']} vs {peer['seeds']} seeds)",
                f"{ours[score]:.4f} vs {peer[score]:.4f} (majority class: {majority[score]:.4f})",
                within_seed_noise(ours, peer, score),
            ]
        )
    return rows


def snippet_train_targets(results: dict) -> list[list]:
    """Issue 32's second dataset: the train stage beside the strongest Trainer on the movie-review snippets, at each
    precision measured, with the scores that must stay within seed noise."""
    name, key, rows = "movie_snippets", "train_snippets", []
    measured = {row["setting"] for row in results[key]["datasets"][name]}
    for precision in ("", BF16):
        if OURS + precision not in measured:
            continue
        ours, strongest = setting(results, name, OURS + precision, key), setting(results, name, STRONGEST + precision, key)
        label = " bf16" if precision else " fp32"
        speed = speed_target(1.15, ours, strongest, label)
        speed[0] += f", {DATASETS[name]}"
        rows.append(speed)
        rows += score_targets(results, name, ours, strongest, f"within seed noise of the strongest Trainer,{label}", key)
    return rows


def bf16_targets(results: dict) -> list[list]:
    name = "first_sentences"
    ours_bf16, strongest_bf16 = setting(results, name, OURS + BF16), setting(results, name, STRONGEST + BF16)
    rows = [speed_target(1.15, ours_bf16, strongest_bf16, " bf16")]
    rows += score_targets(results, name, ours_bf16, strongest_bf16, "within seed noise of the strongest Trainer, bf16")
    for dataset in ("first_sentences", "vader_tweets"):
        fp32, bf16 = setting(results, dataset, OURS), setting(results, dataset, OURS + BF16)
        rows += score_targets(results, dataset, bf16, fp32, "of the train stage in bf16 within seed noise of fp32")
    return rows


def gpu_mfu_target(gpu: dict) -> list:
    """The train stage's best bf16 MFU on the BERT-base-sized model over the batch sizes measured; not measured without a GPU."""
    name = f"on a GPU: train bf16 MFU >= {gpu_train.MFU_TARGET:.0%}, BERT-base-sized model at {gpu_train.SEQUENCE_LENGTH} tokens"
    if "models" not in gpu:
        return [name, gpu.get("skipped", "not run"), None]
    rows = gpu["models"][gpu_train.BERT_BASE]["settings"]
    best = max((row for row in rows if row["setting"] == gpu_train.OURS), key=lambda row: row["mfu"])
    trainer = next(row for row in rows if row["setting"] == gpu_train.TRAINER and row["batch_size"] == best["batch_size"])
    figure = f"{best['mfu']:.1%} at batch {best['batch_size']} (the strongest Trainer: {trainer['mfu']:.1%})"
    return [name, figure, best["mfu"] >= gpu_train.MFU_TARGET]


def default_recipe_targets(result: dict) -> list[list]:
    """Issue 28: `make run` on its bundled data within the time limit, its model labelling the README's examples right."""
    bundled = result["datasets"]["vader_tweets"]
    right = sum(bundled["examples"].get(text) == label for text, label in default_recipe.README_EXAMPLES.items())
    return [
        [f"make run (bundled data, default recipe) within {default_recipe.TIME_LIMIT_SECONDS} s", f"{bundled['seconds']:.0f} s",
         bundled["seconds"] <= default_recipe.TIME_LIMIT_SECONDS],
        ["make run's model labels the README's example sentences right", f"{right} of {len(default_recipe.README_EXAMPLES)}",
         right == len(default_recipe.README_EXAMPLES)],
    ]  # fmt: skip


def targets(results: dict) -> list[list]:
    """The issues' targets, each with the figure that answers it; speed judged on the review first sentences.

    Speed is judged against the Trainer at its best at the same precision (its own length grouping and
    fused AdamW) and against padding to 128. A score is within seed noise when it is better, or behind
    by no more than the wider range of either side's seeds; a peer at the majority class (within
    MAJORITY_MARGIN) is not judged against: beating a model that learned nothing says nothing.
    """
    name = "first_sentences"
    ours, strongest = setting(results, name, OURS), setting(results, name, STRONGEST)
    rows = [
        speed_target(3, ours, setting(results, name, "HF Trainer, padded to 128"), ""),
        speed_target(1.15, ours, strongest, " fp32"),
    ]
    rows += score_targets(results, name, ours, strongest, "within seed noise of the strongest Trainer, fp32")
    if "bf16_left_out" in results["train"]:
        rows.append(
            ["train bf16 >= 1.15x the strongest Trainer in bf16; bf16 scores within seed noise", results["train"]["bf16_left_out"], None]
        )
    else:
        rows += bf16_targets(results)
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
        rows.append([f"{label} >= 80% of raw tokenizers", f"{share:.1%}", share >= 0.8])
    ratio = results["memory"]["largest_over_smallest_peak_rss"]
    rows.append(["peak RSS at 1M rows <= 1.2x at 100K", f"{ratio:.2f}x", ratio <= 1.2])
    if "train_snippets" in results:
        rows += snippet_train_targets(results)
    rows += time_to_model_targets(results)
    if "default_recipe" in results:
        rows += default_recipe_targets(results["default_recipe"])
    rows.append(gpu_mfu_target(results.get("gpu", {})))
    if "causal_lm" in results:
        test = results["causal_lm"]["test"]
        rows.append(
            [
                "causal LM: test perplexity below the n-gram baseline's (issue 13)",
                f"{test['model']['perplexity']:.1f} vs {test['ngram']['perplexity']:.1f}",
                test["model"]["perplexity"] < test["ngram"]["perplexity"],
            ]
        )
    if "multilabel" in results:
        ours, tfidf = results["multilabel"]["pipeline"], results["multilabel"]["tfidf"]
        rows.append(
            [
                "multi-label (FOLDOC): test micro-F1 and macro-F1 above TF-IDF one-vs-rest on the same splits (issue 29)",
                f"micro {ours['micro_f1']:.4f} vs {tfidf['micro_f1']:.4f}, macro {ours['macro_f1']:.4f} vs {tfidf['macro_f1']:.4f}",
                ours["micro_f1"] > tfidf["micro_f1"] and ours["macro_f1"] > tfidf["macro_f1"],
            ]
        )
    if "evaluation" in results:
        for rate, run in results["evaluation"]["runs"].items():
            abstention = run["abstention"]
            rows.append(
                [
                    f"abstention chosen on validation for accuracy 0.95 holds on test (bundled tweets, lr {rate}; issue 30)",
                    f"{abstention['accuracy']:.4f} answered, coverage {100 * abstention['coverage']:.1f}%",
                    abstention["accuracy"] >= 0.95,
                ]
            )
    if "halving" in results:
        share, grid, halving = halving_sweep.steps_share(results["halving"]), results["halving"]["grid"], results["halving"]["halving"]
        rows.append(
            [
                "successive halving: the grid's best configuration for at most 40% of its train steps (issue 31)",
                f"{share:.1%} of the steps; best {halving['best_trial']} (validation {halving['best_validation']}) vs the grid's"
                f" {grid['best_trial']} ({grid['best_validation']})",
                share <= 0.4 and halving["best_trial"] == grid["best_trial"],
            ]
        )
    return [[name, figure, VERDICTS[met]] for name, figure, met in rows]


def time_to_model_targets(results: dict) -> list[list]:
    """make run beside the Trainer script on each corpus measured; on the snippets, evaluate and export beside train."""
    snippets = time_to_model.CORPORA["movie_snippets"]
    on_snippets = (
        f", movie-review snippets ({vader_tweets.SNIPPET_SAMPLE_ROWS:,} rows, {snippets.epochs} epoch{'s' * (snippets.epochs > 1)})"
    )
    rows = []
    for key, where in (("time_to_model", ""), ("time_to_model_snippets", on_snippets)):
        if key in results:
            result = results[key]
            figure = f"{result['speedup']:.2f}x ({result['ours']['seconds']:.0f} vs {result['trainer']['seconds']:.0f} s)"
            rows.append([f"make run to a registered model >= {time_to_model.TARGET}x faster than a Trainer script{where}", figure,
                         result["speedup"] >= time_to_model.TARGET])  # fmt: skip
    if "time_to_model_snippets" in results:
        share = time_to_model.release_share(results["time_to_model_snippets"])
        target = time_to_model.RELEASE_SHARE_TARGET
        rows.append([f"evaluate + export <= {target:.0%} of the train stage's seconds{on_snippets}",
                     f"{share:.1%}", share <= target])  # fmt: skip
    return rows


def targets_table(results: dict) -> str:
    return markdown_table(["target", "measured", ""], targets(results))


TRAIN_TARGETS_ON = (
    f"Training targets are judged on the {DATASETS['first_sentences']}: the first sentence of each bundled drug review,"
    " labelled with the whole review's rating (not tweets)."
)


def readme_block(results: dict) -> str:
    """What run_all writes into README.md between the markers: the targets table exactly as in RESULTS.md."""
    return (
        f"{README_START}\n"
        f"Targets from `benchmarks/RESULTS.md` (`make bench`; training finished {results['finished']['train']} on {results['train']['machine']}), copied here by"
        f" `benchmarks/run_all.py`. {TRAIN_TARGETS_ON}\n\n"
        f"{targets_table(results)}\n"
        f"{README_END}"
    )


def write_readme(block: str, readme: Path = README) -> None:
    text = readme.read_text()
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + block + tail)


def previous_sections(results_md: Path) -> dict[str, str]:
    """The sections of the RESULTS.md being replaced, by title: what a benchmark not in results.json keeps."""
    if not results_md.exists():
        return {}
    sections = results_md.read_text().split("\n## ")[1:]
    return {section.split("\n", 1)[0]: "## " + section.strip() for section in sections}


def section(results: dict, key: str, title: str, render, previous: dict[str, str]) -> str:
    """A benchmark's section, dated; one that is not in results.json keeps its text (and its date) from the previous RESULTS.md."""
    if key not in results:
        return previous.get(title, f"## {title}\n\nNot run yet: `python -m benchmarks.run_all --only {key}`.")
    return f"## {title}\n\nFinished {results['finished'][key]} (`python -m benchmarks.run_all --only {key}`). {render(results[key])}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, to check that the scripts run")
    parser.add_argument("--render", action="store_true", help=f"write RESULTS.md and README.md again from {SAVED.relative_to(REPO)}")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run these benchmarks alone; keep the others' figures")
    arguments = parser.parse_args()
    quick = arguments.quick
    saved = QUICK_SAVED if quick else SAVED
    saved.parent.mkdir(parents=True, exist_ok=True)
    if arguments.render and not saved.exists():
        print(f"--render: {saved} does not exist; run the benchmarks first", file=sys.stderr)
        return 2
    keeps_others = (arguments.render or arguments.only) and saved.exists()
    results = json.loads(saved.read_text()) if keeps_others else {}
    if not arguments.render:
        for key in arguments.only or BENCHMARKS:
            module, *args = BENCHMARKS[key]
            if quick:
                args = QUICK_ARGUMENTS.get(key, args)
            started = time.perf_counter()
            results[key] = run_json(module, *args)
            results.setdefault("wall_seconds", {})[key] = round(time.perf_counter() - started)
            results.setdefault("finished", {})[key] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            saved.write_text(json.dumps(results))
            print(f"{key}: done in {results['wall_seconds'][key]} s", file=sys.stderr, flush=True)
    walls = results.get("wall_seconds", {})
    wall = " Wall time: " + ", ".join(f"{key} {seconds / 60:.1f} min" for key, seconds in walls.items()) + "." if walls else ""
    destination = REPO / "build" / "bench" / "RESULTS-quick.md" if quick else RESULTS
    previous = previous_sections(destination)
    sections = [
        "# Benchmark results\n\nWritten by `make bench` (benchmarks/run_all.py) from benchmarks/results.json; each section says when"
        f" its benchmark finished.{wall} Each figure is one run on the machine named, unless its section gives a median of"
        " rounds; compare figures of the same run only: these machines are noisy.",
        f"## Targets\n\n{TRAIN_TARGETS_ON}\n\n" + targets_table(results),
        *(section(results, key, title, render, previous) for key, title, render in SECTIONS),
    ]
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text("\n\n".join(sections) + "\n")
    if quick:
        (destination.parent / "README-block-quick.md").write_text(readme_block(results) + "\n")
    else:
        write_readme(readme_block(results))
    print(json.dumps(results))
    print(f"wrote {destination}" + ("" if quick else f" and the targets in {README}"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
