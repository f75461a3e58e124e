"""Benchmark 5 (GPU only): the train stage beside the Hugging Face Trainer at its strongest, on CUDA in bf16:
samples/s and model FLOPs utilisation, for a MiniLM-sized and a BERT-base-sized encoder at 128 tokens.

    python -m benchmarks.gpu_train [--rows 60000] [--batch_sizes 64,256] [--peak_tflops 989] [--tokenizer bundled://all-MiniLM-L6-v2]

Models: all-MiniLM-L6-v2's shape (6 layers, hidden 384, FFN 1536) and BERT-base's (12 layers, hidden
768, 12 heads, FFN 3072), both with all-MiniLM-L6-v2's tokenizer (BERT-base-uncased's vocabulary) and
weights drawn at random from the config (seed 0): the time a step takes does not depend on the weights'
values, and so the script needs nothing but a tokenizer on a GPU machine without network.

Data: bundled drug reviews, three consecutive ones joined so that every text fills 128 tokens, made
unique and repeated to `--rows`; preprocessed and tokenized by the pipeline's own stages (max_length
128). Every sequence is 128 tokens, so no side gains from padding and MFU counts real tokens only.

Both sides: each of `--batch_sizes`, AdamW lr 1e-4 (fused), weight decay 0.01, linear schedule with 10%
warmup, clipping at 1, bf16 autocast, one epoch, 2 DataLoader workers, evaluation time left out. The
Trainer at its strongest: its own length grouping, `adamw_torch_fused`, `bf16=True`. Each run in a process of its own.

MFU = model FLOPs per second / the GPU's dense bf16 peak (`--peak_tflops`, 989 for an H100 SXM), with
the model FLOPs per token of `train_flops_per_token`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import SAMPLE, machine, markdown_table, run_json

SEQUENCE_LENGTH = 128
LEARNING_RATE = 1e-4
BERT_BASE = "BERT-base shape"
MODELS = {
    "all-MiniLM-L6-v2 shape": {},
    BERT_BASE: {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}
OURS = "this project's train stage, bf16"
TRAINER = "HF Trainer, group_by_length + fused AdamW, bf16"
# Compiled rows (the Trainer's torch_compile=True, the stage's --compile true) are left out: at 3,000 texts
# compilation took most of each run (53.5 samples/s against 1,262.8 eager for the stage, 56.1 against
# 393.9 for the Trainer, MiniLM shape, H100), and runs long enough to pay it back do not fit a GPU lease here.
SETTINGS = [(TRAINER, "trainer"), (OURS, "ours")]
MFU_TARGET = 0.40  # issue 14: bf16 MFU of the BERT-base-sized model at 128 tokens


def non_embedding_parameters(config: dict) -> int:
    """Parameters of a BERT encoder's layers: everything applied to every token except the embeddings.

    Per layer: query, key, value and output projections (h x h and a bias each), the feed-forward
    pair (h x i, i x h, with biases) and two LayerNorms (2h each). The embeddings are left out, as
    Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", section 2.1) leave them out of N:
    a lookup is no matmul. The pooler and classifier run once per sequence, on [CLS], not per token,
    so they are left out too (under 2% of all-MiniLM-L6-v2's layer FLOPs).
    """
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    attention = 4 * (hidden * hidden + hidden)
    feed_forward = hidden * inner + inner + inner * hidden + hidden
    layer_norms = 2 * 2 * hidden
    return layers * (attention + feed_forward + layer_norms)


def train_flops_per_token(config: dict, sequence_length: float) -> float:
    """Training FLOPs per token, forward and backward: 6 N + 12 L h T.

    6 N: 2 FLOPs per multiply-add for each non-embedding parameter forward, twice that backward
    (Kaplan et al. 2020, section 2.1: C = 6 N). 12 L h T: the attention scores QK^T and their use on V,
    2 x 2 x h x T FLOPs per token per layer forward, x3 with backward; PaLM (Chowdhery et al. 2022,
    appendix B) counts model FLOPs as 6 N + 12 L H Q T with H Q = h. BERT attends both ways, so T is
    the whole padded length, no causal halving.
    """
    return 6 * non_embedding_parameters(config) + 12 * config["num_hidden_layers"] * config["hidden_size"] * sequence_length


def write_random_model(tokenizer_source: str, changes: dict, folder: Path) -> dict:
    """A Hugging Face model folder: the tokenizer's model config with `changes`, weights drawn at random (seed 0)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from components.lib.modelling.sources import local_model_source

    with local_model_source(tokenizer_source) as source:
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    for key, value in changes.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return config.to_dict()


def write_source(rows: int, folder: Path) -> None:
    """Bundled reviews, three consecutive ones per text (long enough for 128 tokens), numbered so that none is a duplicate."""
    table = pq.read_table(SAMPLE / "train.parquet", columns=["review", "rating"])
    reviews, ratings = table.column("review").to_pylist(), table.column("rating").to_pylist()
    count = len(reviews)
    texts = [f"({index}) " + " ".join(reviews[(index + step) % count] for step in range(3)) for index in range(rows)]
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"review": texts, "rating": [ratings[index % count] for index in range(rows)]}), folder / "all.parquet")


def run_ours(model: Path, tokens: Path, batch_size: int) -> dict:
    from components.train import train

    with tempfile.TemporaryDirectory() as scratch:
        train(data_uri=str(tokens), output_uri=f"{scratch}/model", base_model=str(model), epochs=1, batch_size=batch_size,
              learning_rate=LEARNING_RATE, warmup_ratio=0.1, precision="bf16", report_to="none", num_workers=2,
              logging_steps=10_000)  # fmt: skip
        summary = json.loads(Path(f"{scratch}/model/train_summary.json").read_text())
    return {
        "samples_per_second": summary["training_samples_per_second"],
        "mean_padded_length": summary["mean_padded_length"],
        "peak_gpu_memory_mb": summary["peak_gpu_memory_mb"],
    }


def run_trainer(model: Path, data: Path, batch_size: int) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments
    from transformers.utils import logging

    from components.lib.data.labels import read_labels

    logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(model)
    table = pq.read_table(data / "train.parquet").to_pydict()
    encoded = tokenizer(table["text"], truncation=True, max_length=SEQUENCE_LENGTH)
    rows = [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], table["label"])
    ]
    classifier = AutoModelForSequenceClassification.from_pretrained(model, num_labels=len(read_labels(data)))
    with tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size, num_train_epochs=1, learning_rate=LEARNING_RATE, weight_decay=0.01,
            warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0, seed=42, eval_strategy="no", save_strategy="no",
            logging_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=2, train_sampling_strategy="group_by_length",
            optim="adamw_torch_fused", bf16=True,
        )  # fmt: skip
        trainer = Trainer(model=classifier, args=arguments, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer))
        metrics = trainer.train().metrics
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return {
        "samples_per_second": round(metrics["train_samples_per_second"], 2),
        "mean_padded_length": sum(lengths) / len(lengths),  # every text fills 128 tokens, so a batch pads nothing
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


def measure(arguments) -> dict:
    if arguments.side == "ours":
        return run_ours(Path(arguments.model), Path(arguments.tokens), arguments.batch_size)
    return run_trainer(Path(arguments.model), Path(arguments.data), arguments.batch_size)


def benchmark(arguments) -> dict:
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    result = {"machine": machine(), "rows": arguments.rows, "batch_sizes": arguments.batch_sizes, "peak_tflops": arguments.peak_tflops,
              "sequence_length": SEQUENCE_LENGTH, "models": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        write_source(arguments.rows, work / "source")
        preprocess(input_uri=str(work / "source"), output_uri=str(work / "data"), text_column="review", label_column="rating")
        for name, changes in MODELS.items():
            model = work / name.replace(" ", "-")
            config = write_random_model(arguments.tokenizer, changes, model)
            tokens = work / f"tokens-{model.name}"
            tokenize(data_uri=str(work / "data"), output_uri=str(tokens), base_model=str(model), max_length=SEQUENCE_LENGTH)
            rows = []
            for batch_size in arguments.batch_sizes:
                for label, side in SETTINGS:
                    measured = run_json(
                        "benchmarks.gpu_train", "--side", side, "--model", str(model), "--data", str(work / "data"), "--tokens", str(tokens),
                        "--batch_size", str(batch_size),
                    )  # fmt: skip
                    flops = train_flops_per_token(config, measured["mean_padded_length"])
                    tokens_per_second = measured["samples_per_second"] * measured["mean_padded_length"]
                    measured["mfu"] = round(tokens_per_second * flops / (arguments.peak_tflops * 1e12), 4)
                    rows.append({"setting": label, "batch_size": batch_size, **measured})
                    print(f"{name}, batch {batch_size}: {label}: {measured}", file=sys.stderr, flush=True)
                trainer = next(row for row in rows if row["setting"] == TRAINER and row["batch_size"] == batch_size)
                for row in rows[-len(SETTINGS) :]:
                    row["vs_trainer"] = round(row["samples_per_second"] / trainer["samples_per_second"], 2)
            result["models"][name] = {"non_embedding_parameters": non_embedding_parameters(config), "settings": rows}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--batch_sizes", type=lambda text: [int(size) for size in text.split(",")], default=[64, 256])
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="the GPU's dense bf16 peak: 989 for an H100 SXM")
    parser.add_argument(
        "--tokenizer", default="bundled://all-MiniLM-L6-v2", help="a model folder whose tokenizer and config both models use"
    )
    for hidden in ("--side", "--model", "--data", "--tokens"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    import torch

    if arguments.side:
        print(json.dumps(measure(arguments)))
    elif not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device on this machine"}))
    else:
        print(json.dumps(benchmark(arguments)))
    return 0


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"Not run: {result['skipped']}."
    header = ["setting", "batch", "train samples/s", "vs the Trainer", "MFU", "peak GPU memory MB"]
    sections = [
        f"Machine: {result['machine']}. {result['rows']:,} texts of {result['sequence_length']} tokens,"
        f" one epoch, bf16 autocast on both sides; weights drawn at random (speed does not depend on them). MFU against"
        f" {result['peak_tflops']:g} dense bf16 TFLOP/s, model FLOPs 6 N + 12 L h T per token (N: non-embedding parameters)."
    ]
    for name, model in result["models"].items():
        rows = [[row["setting"], row["batch_size"], row["samples_per_second"], row["vs_trainer"], f"{row['mfu']:.1%}", row["peak_gpu_memory_mb"]]
                for row in model["settings"]]  # fmt: skip
        sections.append(
            f"**{name}** ({model['non_embedding_parameters'] / 1e6:.1f}M non-embedding parameters)\n\n" + markdown_table(header, rows)
        )
    return "\n\n".join(sections)


if __name__ == "__main__":
    sys.exit(main())
