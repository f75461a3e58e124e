"""Benchmark 11: causal language models (issue 13) on the Hindi corpus of configs/causal-lm.yaml.

    python -m benchmarks.causal_lm [--epochs 12] [--workdir build/bench/causal-lm]

1. Tokenizers: byte-level BPE and Unigram trained by the tokenize stage on the train split (seconds,
   characters per token on validation) beside the base model's own (all-MiniLM-L6-v2's English
   WordPiece: its characters per token, and the share of its tokens that are [UNK]).
2. Training: the train stage beside the Hugging Face Trainer on the same BPE blocks, the same GPT-2
   (`--lm_size tiny`, the same config and initial weights), batch, learning rate, cosine schedule with
   10% warmup, weight decay, clipping and epochs; the Trainer at its strongest on CPU (fused AdamW; its
   length grouping has nothing to group, every block but the last of a split has the same length).
   Tokens/s counts real tokens and training only on both sides (the Trainer evaluates after training,
   the stage's evaluations are left out of its rate). Each side runs in a process of its own. The
   stage reads each epoch's stream in windows shifted by a seeded offset; the Trainer is given the
   fixed blocks, as a Trainer script would be, so the perplexities show what the shifting buys.
3. Test perplexity and bits per character of the stage's model (the evaluate stage) beside the
   evaluate stage's n-gram baseline, after the fixed budget of epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BASE_MODEL, machine, markdown_table, peak_rss_mb, run_json

CORPUS = "package://idatasets/datasets/devdas.txt"  # as configs/causal-lm.yaml reads it
VOCAB_SIZE, BLOCK_SIZE, LM_SIZE = 1000, 128, "tiny"
EPOCHS, BATCH_SIZE, LEARNING_RATE, SEED = 32, 16, 2e-3, 42  # as configs/causal-lm.yaml
OURS, TRAINER = "this project's train stage", "HF Trainer, fused AdamW"


def prepare(work: Path) -> dict[str, Path]:
    """preprocess once; tokenize with each tokenizer kind."""
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    data = work / "data"
    preprocess(input_uri=CORPUS, output_uri=str(data), task="causal_lm", document_unit="paragraph")
    folders = {}
    for kind in ("bpe", "unigram", "base"):
        folders[kind] = work / f"tokens-{kind}"
        tokenize(data_uri=str(data), output_uri=str(folders[kind]), base_model=BASE_MODEL, tokenizer=kind, vocab_size=VOCAB_SIZE,
                 block_size=BLOCK_SIZE)  # fmt: skip
    return folders


def tokenizer_rows(folders: dict[str, Path]) -> list[dict]:
    rows = []
    for kind, folder in folders.items():
        stats = json.loads((folder / "stats.json").read_text())
        row = {
            "tokenizer": kind,
            "vocab_size": stats["tokenizer"]["vocab_size"],
            "training_seconds": stats["tokenizer"]["training_seconds"],
            "validation_characters_per_token": stats["splits"]["validation"]["characters_per_token"],
        }
        if kind == "base":
            row["unknown_token_share"] = unknown_share(folder)
        rows.append(row)
    return rows


def unknown_share(folder: Path) -> float:
    """The share of the validation blocks' tokens that are the tokenizer's unknown token."""
    import numpy as np

    from components.lib.data.batching import TokenizedSplit
    from components.lib.modelling.sources import load_tokenizer

    tokenizer = load_tokenizer(str(folder / "tokenizer"), str(folder / "tokenizer"))
    ids = TokenizedSplit.load_blocks(folder, "validation").token_ids
    return round(float(np.mean(ids == tokenizer.unk_token_id)), 4) if len(ids) else 0.0


def train_ours(tokens: Path, output: Path) -> dict:
    from components.train import train

    train(data_uri=str(tokens), output_uri=str(output), lm_size=LM_SIZE, epochs=EPOCHS, batch_size=BATCH_SIZE,
          learning_rate=LEARNING_RATE, scheduler="cosine", seed=SEED, report_to="none", logging_steps=50)  # fmt: skip
    summary = json.loads((output / "train_summary.json").read_text())
    return {
        "tokens_per_second": summary["tokens_per_second"],
        "best_validation_perplexity": round(summary["best"]["value"], 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def train_trainer(tokens: Path, output: Path) -> dict:
    """The same GPT-2, blocks and optimisation through transformers' Trainer; validation perplexity after training."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments
    from transformers.utils import logging

    from components.lib.data.batching import TokenizedSplit
    from components.lib.modelling.language_model import CausalLanguageModel, score_blocks
    from components.lib.modelling.sources import load_tokenizer
    from components.lib.training.trainer import seed_everything

    logging.set_verbosity_error()
    tokenizer = load_tokenizer(str(tokens / "tokenizer"), str(tokens / "tokenizer"))
    seed_everything(SEED)  # as the stage seeds before it builds the model: the same initial weights
    model = CausalLanguageModel.from_scratch(LM_SIZE, len(tokenizer), BLOCK_SIZE, tokenizer.eos_token_id)
    train_split = TokenizedSplit.load_blocks(tokens, "train")
    blocks = [train_split.token_ids[start : start + length].tolist() for start, length in zip(train_split.offsets, train_split.lengths)]

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        """Pad with the end-of-text id, and leave padding out of the loss (-100): the end-of-text tokens themselves
        are predicted, as in the stage (DataCollatorForLanguageModeling would mask them too, pad being end-of-text)."""
        batch = train_split.collate(np.array([row["index"] for row in rows]), tokenizer.pad_token_id)
        return {**batch, "labels": batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)}

    arguments = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=BATCH_SIZE, num_train_epochs=EPOCHS, learning_rate=LEARNING_RATE,
        lr_scheduler_type="cosine", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0, seed=SEED, optim="adamw_torch_fused",
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=True, remove_unused_columns=False,
    )  # fmt: skip
    dataset = Dataset.from_dict({"index": list(range(len(blocks)))})
    metrics = Trainer(model=model.network, args=arguments, train_dataset=dataset, data_collator=collate).train().metrics
    real_tokens_per_block = float(train_split.lengths.mean())
    validation = score_blocks(model, TokenizedSplit.load_blocks(tokens, "validation"), 64, torch.device("cpu"), tokenizer.pad_token_id)
    return {
        "tokens_per_second": round(metrics["train_samples_per_second"] * real_tokens_per_block, 1),
        "final_validation_perplexity": round(validation.perplexity, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def evaluate_ours(model: Path, tokens: Path, output: Path) -> dict:
    from components.evaluate import evaluate

    evaluate(model_uri=str(model), data_uri=str(tokens), output_uri=str(output))
    metrics = json.loads((output / "metrics.json").read_text())
    keys = ("perplexity", "bits_per_character")
    return {"model": {key: metrics["test"][key] for key in keys}, "ngram": {key: metrics["baseline_ngram"][key] for key in keys}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="", help="keep the corpus, blocks and models here (default: a temporary folder)")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.side:
        side = {"ours": train_ours, "trainer": train_trainer}[arguments.side]
        print(json.dumps(side(Path(arguments.tokens), Path(arguments.output))))
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(arguments.workdir or scratch)
        folders = prepare(work)
        sides = {
            name: run_json("benchmarks.causal_lm", "--side", side, "--tokens", str(folders["bpe"]), "--output", str(work / f"model-{side}"))
            for name, side in ((OURS, "ours"), (TRAINER, "trainer"))
        }
        scores = evaluate_ours(work / "model-ours", folders["bpe"], work / "evaluation")
        tokenizers = tokenizer_rows(folders)
    result = {
        "machine": machine(),
        "settings": {
            "vocab_size": VOCAB_SIZE,
            "block_size": BLOCK_SIZE,
            "lm_size": LM_SIZE,
            "epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
        },  # fmt: skip
        "tokenizers": tokenizers,
        "training": sides,
        "speedup": round(sides[OURS]["tokens_per_second"] / sides[TRAINER]["tokens_per_second"], 2),
        "test": scores,
    }
    print(json.dumps(result))
    return 0


def markdown(result: dict) -> str:
    settings = result["settings"]
    tokenizer_table = markdown_table(
        ["tokenizer", "vocabulary", "training seconds", "validation characters per token", "[UNK] share"],
        [[row["tokenizer"], row["vocab_size"], row["training_seconds"] if row["training_seconds"] is not None else "-",
          row["validation_characters_per_token"], row.get("unknown_token_share", "-")] for row in result["tokenizers"]],
    )  # fmt: skip
    training_table = markdown_table(
        ["setting", "tokens/s", "validation perplexity", "peak RSS (MB)"],
        [[name, side["tokens_per_second"], side.get("best_validation_perplexity", side.get("final_validation_perplexity")),
          side["peak_rss_mb"]] for name, side in result["training"].items()],
    )  # fmt: skip
    test = result["test"]
    return (
        f"Machine: {result['machine']}. Corpus: Devdas in Hindi (package indic-nlp-datasets), a document per paragraph;"
        f" GPT-2 `{settings['lm_size']}` from scratch, blocks of {settings['block_size']} tokens, BPE vocabulary"
        f" {settings['vocab_size']}, {settings['epochs']} epochs, batch {settings['batch_size']}, lr {settings['learning_rate']:g},"
        " cosine schedule, fp32.\n\n"
        + tokenizer_table
        + "\n\nThe base tokenizer is English WordPiece: shown for what a tokenizer trained on the corpus buys.\n\n"
        + training_table
        + f"\n\nThe stage trains at {result['speedup']:.2f}x the Trainer's tokens/s (the stage's perplexity is its best evaluation's,"
        " the Trainer's after its last epoch).\n\n"
        + markdown_table(
            ["test split", "perplexity", "bits per character"],
            [
                ["GPT-2 (the stage)", test["model"]["perplexity"], test["model"]["bits_per_character"]],
                ["n-gram baseline (evaluate)", test["ngram"]["perplexity"], test["ngram"]["bits_per_character"]],
            ],
        )  # fmt: skip
    )


if __name__ == "__main__":
    sys.exit(main())
