"""Benchmarks 17 and 20: curricula for a causal LM (issue 33), on the Hindi corpus of configs/causal-lm.yaml
and on a larger English one (the bundled FOLDOC definitions, a document per definition).

    python -m benchmarks.lm_curriculum [--corpus devdas|foldoc] [--seeds 1,2,3] [--epochs 32]

The recipe of configs/causal-lm.yaml (BPE 1000, blocks of 128, GPT-2 tiny from scratch, batch 16, lr
2e-3, cosine), trained with no curriculum, with sequence-length warmup (`curriculum=length`: contexts
from a quarter of the block, growing by the root pacing over the first quarter of the epochs), and
with the rarity pool (`curriculum=rarity`, the same start and span), each with three seeds; the
evaluate stage's test perplexity and the train stage's wall time, each train in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.causal_lm import BATCH_SIZE, BLOCK_SIZE, CORPUS, LEARNING_RATE, LM_SIZE, VOCAB_SIZE
from benchmarks.common import BASE_MODEL, REPO, machine, markdown_table

CURRICULA = ("none", "length", "rarity")
START = 0.25
# preprocess's flags for each corpus, and how the table names it.
CORPORA = {
    "devdas": ({"input_uri": CORPUS, "document_unit": "paragraph"}, "Devdas in Hindi (160K characters, a document per paragraph)"),
    "foldoc": ({"input_uri": str(REPO / "data" / "sample" / "foldoc" / "foldoc.parquet"), "text_column": "text"},
               "the FOLDOC definitions in English (3.0M characters, a document per definition)"),
}  # fmt: skip


def prepare(work: Path, corpus: str) -> Path:
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    preprocess(output_uri=str(work / "data"), task="causal_lm", **CORPORA[corpus][0])
    tokenize(data_uri=str(work / "data"), output_uri=str(work / "tokens"), base_model=BASE_MODEL, tokenizer="bpe", vocab_size=VOCAB_SIZE,
             block_size=BLOCK_SIZE)  # fmt: skip
    return work / "tokens"


def run(tokens: Path, work: Path, curriculum: str, seed: int, epochs: int) -> dict:
    model, evaluation = work / f"model-{curriculum}-{seed}", work / f"evaluation-{curriculum}-{seed}"
    flags = ["--data_uri", str(tokens), "--output_uri", str(model), "--lm_size", LM_SIZE, "--epochs", str(epochs), "--batch_size",
             str(BATCH_SIZE), "--learning_rate", str(LEARNING_RATE), "--scheduler", "cosine", "--seed", str(seed), "--report_to", "none",
             "--curriculum", curriculum, "--curriculum_start", str(START), "--curriculum_epochs", str(max(1, epochs // 4))]  # fmt: skip
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "components.train", *flags], cwd=REPO, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    subprocess.run([sys.executable, "-m", "components.evaluate", "--model_uri", str(model), "--data_uri", str(tokens), "--output_uri",
                    str(evaluation)], cwd=REPO, check=True, capture_output=True)  # fmt: skip
    test = json.loads((evaluation / "metrics.json").read_text())["test"]
    return {"curriculum": curriculum, "seed": seed, "test_perplexity": round(test["perplexity"], 2), "train_seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="devdas")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lm-curriculum-") as folder:
        work = Path(folder)
        tokens = prepare(work, args.corpus)
        blocks = json.loads((tokens / "stats.json").read_text())["splits"]["train"]["blocks"]
        runs = [run(tokens, work, curriculum, int(seed), args.epochs) for seed in args.seeds.split(",") for curriculum in CURRICULA]
    print(json.dumps({"machine": machine(), "corpus": args.corpus, "train_blocks": blocks, "epochs": args.epochs, "runs": runs}))
    return 0


def markdown(result: dict) -> str:
    rows = []
    for curriculum in CURRICULA:
        runs = [entry for entry in result["runs"] if entry["curriculum"] == curriculum]
        perplexities = [entry["test_perplexity"] for entry in runs]
        rows.append([curriculum, " / ".join(f"{value:.2f}" for value in perplexities), f"{statistics.mean(perplexities):.2f}",
                     " / ".join(f"{entry['train_seconds']:.0f}" for entry in runs)])  # fmt: skip
    corpus = CORPORA[result.get("corpus", "devdas")][1]
    blocks = f", {result['train_blocks']:,} train blocks of {BLOCK_SIZE} tokens" if "train_blocks" in result else ""
    return (
        f"On {result['machine']}. Corpus: {corpus}{blocks}. configs/causal-lm.yaml's recipe ({result['epochs']} epochs), seeds"
        f" {', '.join(sorted({str(entry['seed']) for entry in result['runs']}))}; curricula start at {START} (of the block for"
        " `length`, of the blocks for `rarity`) and reach the whole over the first quarter of the epochs, root pacing. The machine"
        " ran the test suite beside it for some or all of the time, so train seconds are upper bounds that say more about the machine's load"
        " than about the curricula.\n\n" + markdown_table(["curriculum", "test perplexity by seed", "mean", "train seconds by seed"], rows)
    )


if __name__ == "__main__":
    sys.exit(main())
