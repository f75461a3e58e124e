"""tokenize: the base model's fast tokenizer, truncation capped at the model's limit, no padding."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from components.lib.errors import UserError
from components.tokenize import tokenize
from tests.conftest import run_module


def test_tokens_match_the_tokenizer_without_padding_and_the_tokenizer_is_saved(prepared_data, tiny_model):
    data, tokens = prepared_data
    reference = AutoTokenizer.from_pretrained(str(tiny_model))
    rows = pq.read_table(tokens / "train.parquet").to_pylist()
    source = pq.read_table(data / "train.parquet").to_pylist()
    assert [row["text"] for row in rows] == [row["text"] for row in source]
    assert [row["label"] for row in rows] == [row["label"] for row in source]
    for row in rows[:20]:
        assert row["input_ids"] == reference(row["text"], truncation=True, max_length=32)["input_ids"]
        assert row["length"] == len(row["input_ids"])
    saved = AutoTokenizer.from_pretrained(str(tokens / "tokenizer"))
    assert saved(rows[0]["text"])["input_ids"] == rows[0]["input_ids"]
    assert json.loads((tokens / "labels.json").read_text()) == json.loads((data / "labels.json").read_text())


def test_max_length_truncates_and_is_capped_at_the_models_limit(prepared_data, tiny_model, tmp_path, caplog):
    tokenize(data_uri=str(prepared_data[0]), output_uri=str(tmp_path / "short"), base_model=str(tiny_model), max_length=8, batch_size=7)
    assert max(pq.read_table(tmp_path / "short" / "train.parquet").column("length").to_pylist()) == 8
    result = tokenize(data_uri=str(prepared_data[0]), output_uri=str(tmp_path / "long"), base_model=str(tiny_model), max_length=4096)
    assert result.summary["max_length"] == 64  # the tiny model has 64 positions
    assert f"--max_length 4096 is above what {tiny_model} takes; using 64, the model's limit" in caplog.text
    stats = json.loads((tmp_path / "long" / "stats.json").read_text())
    assert stats["requested_max_length"] == 4096 and stats["splits"]["train"]["tokens"]["max"] <= 64


def test_max_length_0_is_chosen_from_the_train_splits_token_lengths(prepared_data, tiny_model, tmp_path, caplog):
    """The 99th percentile of train's untruncated lengths, rounded up to a multiple of 8, within the model's limit."""
    import numpy as np

    data = prepared_data[0]
    reference = AutoTokenizer.from_pretrained(str(tiny_model))
    texts = pq.read_table(data / "train.parquet").column("text").to_pylist()
    untruncated = [len(reference(text, truncation=True, max_length=64)["input_ids"]) for text in texts]
    expected = min(64, int(np.ceil(np.percentile(untruncated, 99) / 8) * 8))
    assert expected < 64  # else the cap, not the percentile, would be tested
    caplog.set_level("INFO", logger="components.tokenize")
    result = tokenize(data_uri=str(data), output_uri=str(tmp_path / "auto"), base_model=str(tiny_model), batch_size=7)
    assert result.summary["max_length"] == expected
    lengths = pq.read_table(tmp_path / "auto" / "train.parquet").column("length").to_pylist()
    assert max(lengths) == expected and sum(length == expected for length in lengths) >= 1  # the cut applied
    assert f"--max_length 0: {expected} tokens, the 99th percentile of {len(texts)} train texts' lengths" in caplog.text
    assert AutoTokenizer.from_pretrained(str(tmp_path / "auto" / "tokenizer")).model_max_length == expected  # serving cuts alike


def test_small_record_batches_give_the_same_output(prepared_data, tiny_model, tmp_path):
    tokenize(data_uri=str(prepared_data[0]), output_uri=str(tmp_path / "one"), base_model=str(tiny_model), max_length=32, batch_size=1)
    assert pq.read_table(tmp_path / "one" / "train.parquet").to_pylist() == pq.read_table(prepared_data[1] / "train.parquet").to_pylist()


def test_the_bundled_model_needs_no_hub(prepared_data, tmp_path):
    result = tokenize(
        data_uri=str(prepared_data[0]), output_uri=str(tmp_path / "out"), base_model="bundled://all-MiniLM-L6-v2", max_length=128
    )
    assert result.summary["max_length"] == 128
    with pytest.raises(UserError, match="unknown bundled model"):
        tokenize(data_uri=str(prepared_data[0]), output_uri=str(tmp_path / "x"), base_model="bundled://gpt-7")


def test_a_hub_id_offline_is_one_line(prepared_data, tmp_path):
    result = run_module("components.tokenize", "--data_uri", str(prepared_data[0]), "--output_uri", str(tmp_path / "out"),
                        "--base_model", "distilbert-base-uncased", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: distilbert-base-uncased: cannot load the tokenizer from the Hugging Face Hub (")
    assert line.endswith("(offline, pass a local folder, an s3:// folder or bundled://all-MiniLM-L6-v2)")


def tokenize_cli(data: Path | str, tmp_path: Path, model: Path):
    return run_module("components.tokenize", "--data_uri", str(data), "--output_uri", str(tmp_path / "out"), "--base_model", str(model))


PASS_PREPROCESS_OUTPUT = "pass --data_uri the folder preprocess wrote (its --output_uri)"


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda folder: None, f"no such folder, so no preprocess output; {PASS_PREPROCESS_OUTPUT}"),
        (lambda folder: folder.mkdir(), f"the folder is empty, so no preprocess output; {PASS_PREPROCESS_OUTPUT}"),
        (lambda folder: folder.write_text("text,label\n"), f"is a file, not preprocess output; {PASS_PREPROCESS_OUTPUT}"),
        (
            lambda folder: folder.mkdir() or (folder / "train.parquet").write_bytes(b"PAR1 partial"),
            f"holds no committed preprocess output (no MANIFEST.json); {PASS_PREPROCESS_OUTPUT}, or run preprocess again if it was stopped",
        ),
    ],
    ids=["missing", "empty", "a file", "uncommitted"],
)
def test_an_input_that_is_not_preprocess_output_says_what_to_pass(make, expected, tmp_path, tiny_model):
    make(tmp_path / "data")
    result = tokenize_cli(tmp_path / "data", tmp_path, tiny_model)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'data'}: {expected}"


def test_tokenize_output_given_to_tokenize_says_what_to_pass(prepared_data, tmp_path, tiny_model):
    result = tokenize_cli(prepared_data[1], tmp_path, tiny_model)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {prepared_data[1]}: this is tokenize output, not preprocess output; {PASS_PREPROCESS_OUTPUT}"


def test_an_empty_s3_prefix_says_what_to_pass(s3, tmp_path, tiny_model):
    result = tokenize_cli("s3://bucket/run/data", tmp_path, tiny_model)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: s3://bucket/run/data: nothing there, so no preprocess output; {PASS_PREPROCESS_OUTPUT}"


class CharacterTokenizer:
    """A stand-in whose Rust encoder gives one token per character, truncated where it is told."""

    class Encoder:
        def __init__(self):
            self.limit = None

        def no_padding(self):
            pass

        def enable_truncation(self, limit):
            self.limit = limit

        def encode_batch_fast(self, texts):
            from types import SimpleNamespace

            return [SimpleNamespace(ids=[0] * min(len(text), self.limit)) for text in texts]

    def __init__(self):
        self.backend_tokenizer = self.Encoder()


@pytest.mark.parametrize(
    "lengths, model_limit, chosen",
    [
        ([0] * 100, 512, 8),
        ([3] * 100, 512, 8),
        ([33] * 100, 512, 40),
        ([40] * 100, 512, 40),
        ([600] * 100, 514, 514),
        ([10] * 99 + [200], 512, 16),
    ],
    ids=[
        "at least 8",
        "8 for a few tokens",
        "rounded up to 8",
        "a multiple of 8 kept",
        "capped at the model's limit",
        "the 99th percentile, not the longest",
    ],
)
def test_the_length_chosen_from_the_data(lengths, model_limit, chosen, tmp_path):
    import pyarrow as pa

    from components.lib.data.contract import CLEAN_SCHEMA
    from components.lib.data.labelled_tokenize import length_from_data

    texts = ["x" * length for length in lengths]
    table = pa.table({"text": texts, "label": [0] * len(texts), "source_row": [str(row) for row in range(len(texts))]}, schema=CLEAN_SCHEMA)
    pq.write_table(table, tmp_path / "train.parquet")
    assert length_from_data(tmp_path, CharacterTokenizer(), model_limit) == chosen


def test_texts_that_reach_the_models_limit_are_counted_as_cut(tmp_path, caplog):
    """Lengths are measured cut at the model's limit, so a text that reaches it was (most likely) longer:
    when the chosen length is the limit, those texts are the ones cut, and the log says how many."""
    import pyarrow as pa

    from components.lib.data.contract import CLEAN_SCHEMA
    from components.lib.data.labelled_tokenize import length_from_data

    texts = ["x" * 600] * 30 + ["x" * 100] * 70
    table = pa.table({"text": texts, "label": [0] * 100, "source_row": [str(row) for row in range(100)]}, schema=CLEAN_SCHEMA)
    pq.write_table(table, tmp_path / "train.parquet")
    with caplog.at_level("INFO", logger="components.tokenize"):
        assert length_from_data(tmp_path, CharacterTokenizer(), 512) == 512
    assert "30.0% of train texts are cut" in caplog.text


def test_a_max_length_under_8_other_than_0_is_refused_before_any_work(prepared_data, tiny_model, tmp_path):
    with pytest.raises(UserError, match=r"--max_length: must be at least 8 \(or 0: chosen from the data\), got 7"):
        tokenize(data_uri=str(prepared_data[0]), output_uri=str(tmp_path / "out"), base_model=str(tiny_model), max_length=7)
    assert not (tmp_path / "out").exists()
