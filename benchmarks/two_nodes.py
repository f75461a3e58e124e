"""Benchmark 19: two training nodes as Kubeflow Trainer starts them, beside one process (issue 31).

    python -m benchmarks.two_nodes [--rows 400] [--epochs 1]

The bundled tweets tokenized for the bundled MiniLM (max_length 64), --rows of the train split trained alike three ways: one
process (batch 16, the machine's threads), and two torchrun agents on loopback given only the PET_*
variables of Kubeflow Trainer's torch plugin (batch 8 each: the same global batch, one thread each),
twice with the same seed. Throughput is the train stage's own samples/s (all processes together);
the weights are compared with the one process's (each rank draws its own dropout masks, so they
differ beyond float summation order; tests/test_distributed.py matches one process within 1e-4 with
dropout off) and between the two runs of two nodes (run to run).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file

from benchmarks.common import BASE_MODEL, REPO, machine, markdown_table
from components.lib.data.contract import MODEL_WEIGHTS_FILE, TRAIN_SUMMARY_FILE

TRAIN_FLAGS = ["--learning_rate", "1e-4", "--report_to", "none", "--num_workers", "0", "--seed", "1"]


def run(module: str, *args: str, env: dict | None = None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed ({result.returncode}):\n{result.stderr[-3000:]}")


def prepare(scratch: Path) -> Path:
    run("components.preprocess", "--input_uri", "data/sample/vader_tweets", "--text_column", "tweet", "--label_column", "sentiment",
        "--output_uri", str(scratch / "data"))  # fmt: skip
    run("components.tokenize", "--data_uri", str(scratch / "data"), "--output_uri", str(scratch / "tokens"), "--base_model", BASE_MODEL,
        "--max_length", "64")  # fmt: skip
    return scratch / "tokens"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(tokens: Path, out: Path, epochs: int) -> None:
    variables = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port()),
                 "OMP_NUM_THREADS": "1"}  # fmt: skip
    command = [sys.executable, "-m", "components.train", "--data_uri", str(tokens), "--base_model", BASE_MODEL, "--epochs", str(epochs),
               "--batch_size", "8", "--output_uri", str(out), *TRAIN_FLAGS]  # fmt: skip
    nodes = [subprocess.Popen(command, cwd=REPO, env={**os.environ, **variables, "PET_NODE_RANK": str(rank)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]  # fmt: skip
    errors = [node.communicate()[1] for node in nodes]
    if any(node.returncode for node in nodes):
        raise RuntimeError(f"two nodes failed:\n{errors[0][-2000:]}\n{errors[1][-2000:]}")


def figures(model: Path) -> dict:
    summary = json.loads((model / TRAIN_SUMMARY_FILE).read_text())
    return {"world_size": summary["world_size"], "samples_per_second": summary["training_samples_per_second"],
            "seconds": summary["seconds_this_process"], "best_validation": summary["best"]["value"]}  # fmt: skip


def max_difference(first: Path, second: Path) -> float:
    a, b = load_file(str(first / MODEL_WEIGHTS_FILE)), load_file(str(second / MODEL_WEIGHTS_FILE))
    return max(float((a[name].float() - b[name].float()).abs().max()) for name in a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=1)
    arguments = parser.parse_args()
    described = machine()
    with tempfile.TemporaryDirectory(prefix="two-nodes-bench-") as folder:
        scratch = Path(folder)
        tokens = prepare(scratch)
        TRAIN_FLAGS.extend(["--max_train_samples", str(arguments.rows)])
        run("components.train", "--data_uri", str(tokens), "--base_model", BASE_MODEL, "--epochs", str(arguments.epochs), "--batch_size", "16",
            "--output_uri", str(scratch / "one"), *TRAIN_FLAGS)  # fmt: skip
        two_nodes(tokens, scratch / "two-a", arguments.epochs)
        two_nodes(tokens, scratch / "two-b", arguments.epochs)
        result = {
            "machine": described, "rows": arguments.rows, "epochs": arguments.epochs,
            "one_process": figures(scratch / "one"), "two_nodes": figures(scratch / "two-a"), "two_nodes_again": figures(scratch / "two-b"),
            "max_difference_vs_one": max_difference(scratch / "two-a", scratch / "one"),
            "max_difference_run_to_run": max_difference(scratch / "two-a", scratch / "two-b"),
        }  # fmt: skip
    print(json.dumps(result))
    return 0


def markdown(result: dict) -> str:
    rows = [[name, result[key]["world_size"], result[key]["samples_per_second"], result[key]["best_validation"]]
            for name, key in (("one process, batch 16", "one_process"), ("two nodes, batch 8 each", "two_nodes"),
                              ("two nodes again", "two_nodes_again"))]  # fmt: skip
    return (
        f"On {result['machine']}. {result['rows']} bundled tweets (train split of them), MiniLM, max_length 64, {result['epochs']} epoch(s);"
        " the two nodes are two torchrun agents on loopback (gloo), one thread each, given only Kubeflow Trainer's PET_* variables.\n\n"
        + markdown_table(["training", "ranks", "train samples/s", "best validation macro-F1"], rows)
        + f"\n\nLargest weight difference, two nodes against one process: {result['max_difference_vs_one']:.2e} (each rank draws its"
        f" own dropout masks); two nodes run to run: {result['max_difference_run_to_run']:.2e}. On one machine the two agents share"
        " its cores, so this measures what the node protocol costs, not what a second node gains.\n"
    )


if __name__ == "__main__":
    sys.exit(main())
