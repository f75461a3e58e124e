"""Benchmark 5 (GPU only): the train stage on CUDA with bf16 autocast: samples/s and model FLOPs utilisation.

    python -m benchmarks.gpu_train [--rows 20000] [--peak_tflops 989]

Review first sentences (tweet length; the first sentence of each bundled review, repeated to `rows`), all-MiniLM-L6-v2,
batch 64, one epoch. MFU = achieved model FLOPs / the GPU's peak dense bf16 FLOPs, counted on the
padded tokens the GPU really computed; the model FLOPs per trained token are `train_flops_per_token`:
6 x non-embedding parameters + 12 x layers x hidden size x sequence length (forward and backward).
`--peak_tflops` is the GPU's dense bf16 peak: 989 for an H100 SXM (the default).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import BASE_MODEL, SAMPLE, first_sentence, machine, markdown_table


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--peak_tflops", type=float, default=989.0)
    arguments = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device on this machine"}))
        return 0
    from components.preprocess import preprocess
    from components.tokenize import tokenize
    from components.train import train

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "source"
        source.mkdir()
        table = pq.read_table(SAMPLE / "train.parquet", columns=["review", "rating"])
        texts = [first_sentence(text) for text in table.column("review").to_pylist()]
        labels = table.column("rating").to_pylist()
        repeated = [f"{texts[index % len(texts)]} ({index})" for index in range(arguments.rows)]
        pq.write_table(
            pa.table({"review": repeated, "rating": [labels[index % len(labels)] for index in range(arguments.rows)]}),
            source / "all.parquet",
        )
        preprocess(input_uri=str(source), output_uri=f"{scratch}/data", text_column="review", label_column="rating")
        tokenize(data_uri=f"{scratch}/data", output_uri=f"{scratch}/tokens", base_model=BASE_MODEL, max_length=128)
        train(data_uri=f"{scratch}/tokens", output_uri=f"{scratch}/model", base_model=BASE_MODEL, epochs=1, batch_size=64, precision="bf16",
              report_to="none", num_workers=2, logging_steps=1000)  # fmt: skip
        summary = json.loads(Path(f"{scratch}/model/train_summary.json").read_text())
        config = json.loads(Path(f"{scratch}/model/config.json").read_text())
        parameters = sum(
            entry.numel()
            for entry in __import__("safetensors.torch", fromlist=["load_file"]).load_file(f"{scratch}/model/model.safetensors").values()
        )
    flops_per_token = train_flops_per_token(config, summary["mean_padded_length"])
    result = {
        "machine": machine(), "rows": arguments.rows, "precision": summary["precision"], "samples_per_second": summary["training_samples_per_second"],
        "padded_tokens_per_second": summary["padded_tokens_per_second"], "parameters": parameters,
        "non_embedding_parameters": non_embedding_parameters(config), "flops_per_token": round(flops_per_token), "padding_share": summary["padding_share"],
        "peak_gpu_memory_mb": summary.get("peak_gpu_memory_mb"),
        "mfu": round(summary["padded_tokens_per_second"] * flops_per_token / (arguments.peak_tflops * 1e12), 4),
    }  # fmt: skip
    print(json.dumps(result))
    return 0


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"Not run: {result['skipped']}."
    rows = [[result["precision"], result["samples_per_second"], result.get("mfu", "n/a"), result["peak_gpu_memory_mb"]]]
    return f"Machine: {result['machine']}.\n\n" + markdown_table(["precision", "train samples/s", "MFU", "peak GPU memory MB"], rows)


if __name__ == "__main__":
    sys.exit(main())
