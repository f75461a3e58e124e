"""Shared fixtures: a tiny random-weight BERT, small labelled datasets, an S3 server on loopback."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# train's `--precision auto` picks bf16 on a CPU with native bf16 (components/lib/modelling/precision.py):
# capping oneDNN below bf16 keeps the suite in fp32 on every CPU, so that its figures do not depend on
# the machine CI runs on (the stages the tests start as processes inherit it). Tests of the rule fake
# the CPU's flags with `cpu_flags`, which lifts the cap.
from components.lib.modelling.precision import HIGHEST_ISA_WITHOUT_BF16, ISA_CAP_ENV  # noqa: E402  (after the path)

os.environ[ISA_CAP_ENV] = HIGHEST_ISA_WITHOUT_BF16

LABELS = ["negative", "neutral", "positive"]
WORDS = {
    "negative": ["awful", "terrible", "worst", "pain", "nausea", "useless", "hate", "bad", "horrible", "sick"],
    "neutral": ["okay", "average", "fine", "some", "moderate", "unsure", "mixed", "normal", "usual", "plain"],
    "positive": ["great", "excellent", "love", "best", "relief", "wonderful", "good", "happy", "amazing", "helped"],
}
FILLER = ["the", "this", "drug", "was", "for", "me", "and", "it", "my", "doctor", "after", "week", "felt", "really", "so"]
FAKE_ACCESS_KEY = "AKIAFAKEKEY123456789"
FAKE_SECRET_KEY = "fake+secret/PLANTED0123456789abcdefghij"


def sentence(label: str, rng: random.Random) -> str:
    words = [rng.choice(WORDS[label]) for _ in range(rng.randint(2, 4))] + [rng.choice(FILLER) for _ in range(rng.randint(2, 10))]
    rng.shuffle(words)
    return " ".join(words)


def labelled_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < count:
        label = LABELS[len(rows) % 3]
        text = sentence(label, rng)
        if text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": label})
    return rows


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def build_tiny_model(folder: Path, dropout: float = 0.1) -> Path:
    """A 2-layer BERT with hidden size 32 and a WordPiece vocabulary of the test words."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({word for words in WORDS.values() for word in words} | set(FILLER))]
    vocabulary += [f"##{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocabulary)}, do_lower_case=True)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).base_model.save_pretrained(folder)
    return folder


def model_copy_with_summary(model: Path, copy: Path, **changes) -> Path:
    """A committed copy of train's model folder whose train_summary.json has `changes` applied."""
    import shutil

    from components.lib.data.contract import TRAIN_SUMMARY_FILE
    from components.lib.storage.artifacts import MANIFEST, commit

    shutil.copytree(model, copy)
    summary = json.loads((copy / TRAIN_SUMMARY_FILE).read_text())
    (copy / TRAIN_SUMMARY_FILE).write_text(json.dumps({**summary, **changes}))
    manifest = json.loads((copy / MANIFEST).read_text())
    commit(
        copy, str(copy), extra={key: value for key, value in manifest.items() if key not in ("manifest_version", "committed_at", "files")}
    )
    return copy


def scored_with_and_without_native_bf16(model: Path, data: Path, folder: Path, cpu_flags, metric: str) -> dict[str, float]:
    """evaluate's test `metric`, by the precision it scored in, with the CPU's bf16 flags faked on, then off."""
    from components.evaluate import evaluate

    scored = {}
    for native in (True, False):
        cpu_flags(avx512_bf16=native)
        evaluate(model_uri=str(model), data_uri=str(data), output_uri=str(folder / f"evaluation-{native}"))
        metrics = json.loads((folder / f"evaluation-{native}" / "metrics.json").read_text())
        scored[metrics["scored_in"]["precision"]] = metrics["test"][metric]
    return scored


@pytest.fixture
def cpu_flags(monkeypatch):
    """cpu_flags(avx512_bf16=..., amx=...): this process's CPU as torch's probes report it, oneDNN uncapped."""
    import torch

    monkeypatch.delenv(ISA_CAP_ENV, raising=False)

    def fake(avx512_bf16: bool, amx: bool = False) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)

    return fake


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_model_without_dropout(tmp_path_factory) -> Path:
    """For comparisons that must be exact across batch layouts (dropout masks depend on them)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-no-dropout"), dropout=0.0)


@pytest.fixture(scope="session")
def sample_source(tmp_path_factory) -> Path:
    """A learnable 3-class dataset in named split files: 180 train, 45 test rows."""
    folder = tmp_path_factory.mktemp("source")
    write_parquet(folder / "train.parquet", labelled_rows(180, seed=1))
    write_parquet(folder / "test.parquet", labelled_rows(45, seed=2))
    return folder


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory, sample_source, tiny_model) -> tuple[Path, Path]:
    """The sample source, preprocessed and tokenized with the tiny model: (data dir, tokens dir)."""
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    root = tmp_path_factory.mktemp("prepared")
    preprocess(input_uri=str(sample_source), output_uri=str(root / "data"))
    tokenize(data_uri=str(root / "data"), output_uri=str(root / "tokens"), base_model=str(tiny_model), max_length=32)
    return root / "data", root / "tokens"


def train_flags(**overrides) -> dict:
    """Fast, deterministic settings for the tiny model; dropout off is set by the caller if needed."""
    flags = {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "report_to": "none", "logging_steps": 1}
    flags.update(overrides)
    return flags


def run_module(
    module: str, *args: str, env: dict | None = None, timeout: int = 300, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """`python -m module args...` in the repository, as a user would type it (`stdin` piped in)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout, input=stdin
    )


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto in server mode) on loopback, for the whole session."""
    import logging

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """Point boto3 at the loopback server with fake credentials; a fresh, empty store per test."""
    import boto3
    import requests

    from components.lib import storage

    requests.post(f"{s3_server}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("HOME", str(tmp_path))
    storage.s3_client.cache_clear()
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="bucket")
    yield client
    storage.s3_client.cache_clear()


def upload_folder(client, folder: Path, bucket: str, prefix: str) -> str:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/{prefix}"
