"""train on causal_lm data: a GPT-2 from scratch on token blocks, with the classification loop's controls.

The blocks here are made directly (a word-level tokenizer over a patterned synthetic text), so these
tests exercise train alone; tests/test_tokenize_lm.py covers how tokenize makes them.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from components.lib.data.batching import TokenizedSplit, plan_epoch
from components.lib.data.contract import BLOCKS_SCHEMA, CAUSAL_LM, SPLITS, TASK_KEY, TOKENIZER_DIR, split_file
from components.lib.errors import UserError
from components.lib.modelling.language_model import CausalLanguageModel, score_blocks
from components.lib.storage.artifacts import staged_output
from components.lib.training.distributed import Distributed
from components.lib.training.lm_trainer import LanguageModelTuner
from components.lib.training.settings import TrainConfig
from components.lib.training.trainer import seed_everything
from components.select_best import select_best
from components.train import train
from tests.conftest import train_flags
from tests.test_train import max_difference, weights

BLOCK_SIZE = 16
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {"<|endoftext|>": 0, **{word: index + 1 for index, word in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.model_max_length = BLOCK_SIZE
    return tokenizer


def patterned_stream(seed: int, tokens: int) -> list[int]:
    """Runs of a cycle through the words, starting anywhere: the next word is predictable from the last."""
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    while len(stream) < tokens:
        start, run = int(rng.integers(len(WORDS))), int(rng.integers(5, 30))
        stream += [1 + (start + step) % len(WORDS) for step in range(run)] + [0]
    return stream[:tokens]


def write_blocks(folder: Path, split: str, stream: list[int]) -> None:
    blocks = [stream[start : start + BLOCK_SIZE] for start in range(0, len(stream), BLOCK_SIZE)]
    table = pa.table([pa.array(blocks, pa.list_(pa.int32())), pa.array([len(block) for block in blocks], pa.int32())], schema=BLOCKS_SCHEMA)
    pq.write_table(table, split_file(folder, split))


@pytest.fixture(scope="module")
def lm_tokens(tmp_path_factory) -> Path:
    """A tokenize output folder for causal_lm data; each split ends in a short remainder block."""
    folder = tmp_path_factory.mktemp("lm") / "tokens"
    with staged_output(str(folder), extra={"lineage": {TASK_KEY: CAUSAL_LM}}) as out:
        for seed, split in enumerate(SPLITS):
            write_blocks(out, split, patterned_stream(seed, {"train": 1200, "validation": 300, "test": 300}[split] + 7))
        word_tokenizer().save_pretrained(out / TOKENIZER_DIR)
    return folder


def lm_flags(**overrides) -> dict:
    return train_flags(**{"lm_size": "tiny", "batch_size": 8, "learning_rate": 3e-3, **overrides})


@pytest.fixture(scope="module")
def trained_lm(lm_tokens, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm-model") / "model"
    train(data_uri=str(lm_tokens), output_uri=str(out), **lm_flags(epochs=3))
    return out


def test_a_gpt2_from_scratch_learns_the_blocks_and_keeps_its_lowest_perplexity_weights(trained_lm, lm_tokens):
    summary = json.loads((trained_lm / "train_summary.json").read_text())
    history = json.loads((trained_lm / "training_history.json").read_text())
    perplexities = [entry["validation"]["perplexity"] for entry in history["evaluations"]]
    assert summary["best"]["metric"] == "perplexity"
    assert summary["best"]["value"] == pytest.approx(min(perplexities), abs=1e-3)
    assert min(perplexities) < 3.0 < len(WORDS) + 1  # far below a uniform guess over the vocabulary
    model = CausalLanguageModel.load(trained_lm, "trained")
    scores = score_blocks(model, TokenizedSplit.load_blocks(lm_tokens, "validation"), 64, torch.device("cpu"), 0)
    assert scores.perplexity == pytest.approx(min(perplexities), rel=1e-3)
    assert json.loads((trained_lm / "model_type.json").read_text())["model_type"] == "causal_lm"
    assert not (trained_lm / "labels.json").exists()


def test_a_sweep_of_language_models_keeps_the_lowest_perplexity(trained_lm, lm_tokens, tmp_path):
    weak = tmp_path / "weak"
    train(data_uri=str(lm_tokens), output_uri=str(weak), **lm_flags(epochs=1, learning_rate=1e-6))
    result = select_best(model_uris=[str(weak), str(trained_lm)], tuning_uri=str(tmp_path / "tuning"))
    assert result.summary["metric"] == "perplexity" and result.parameters["model_uri"] == str(trained_lm)
    tuning = json.loads((tmp_path / "tuning" / "tuning_results.json").read_text())
    assert [trial["model_uri"] for trial in tuning["trials"]] == [str(trained_lm), str(weak)]
    assert tuning["trials"][0]["value"] < tuning["trials"][1]["value"]


def test_perplexity_is_exp_of_the_mean_loss_per_predicted_token(lm_tokens):
    """Checked against transformers' own loss (labels = the input: it shifts and averages over tokens)."""
    torch.manual_seed(0)
    model = CausalLanguageModel.from_scratch("tiny", len(WORDS) + 1, BLOCK_SIZE, 0).eval()
    split = TokenizedSplit.load_blocks(lm_tokens, "test")
    full = split.subset(np.flatnonzero(split.lengths == BLOCK_SIZE))
    batch = full.collate(np.arange(len(full)), 0)
    with torch.no_grad():
        expected = model.network(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss.item()
    scores = score_blocks(model, full, 7, torch.device("cpu"), 0)
    assert scores.tokens == len(full) * (BLOCK_SIZE - 1)
    assert scores.perplexity == pytest.approx(math.exp(expected), rel=1e-5)
    # The short remainder block, padded in its batch, counts its own n - 1 predictions and nothing of the padding.
    with_remainder = score_blocks(model, split, 7, torch.device("cpu"), 0)
    assert with_remainder.tokens == int((split.lengths - 1).sum())
    nats = 0.0
    with torch.no_grad():
        for row in np.flatnonzero(split.lengths > 1):  # a block of one token predicts nothing
            ids = split.collate(np.array([row]), 0)["input_ids"]  # one block alone: no padding
            nats += model.network(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
    assert with_remainder.perplexity == pytest.approx(math.exp(nats / with_remainder.tokens), rel=1e-5)


@pytest.fixture
def without_dropout(monkeypatch):
    """Dropout draws differ between one batch and two halves of it; switched off, the updates must agree."""
    made = CausalLanguageModel.from_scratch.__func__

    def from_scratch(cls, *args):
        model = made(cls, *args)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return model

    monkeypatch.setattr(CausalLanguageModel, "from_scratch", classmethod(from_scratch))


def test_a_steps_loss_is_the_mean_over_its_predicted_tokens(lm_tokens, tmp_path, without_dropout):
    """The first logged loss against transformers' own (it shifts, skips -100 and averages over tokens),
    on the same weights and the same first batch; a mean per block would be 15 times as large."""
    flags = lm_flags(epochs=1, seed=3, max_steps=1, batch_size=8, group_by_length=False)
    train(data_uri=str(lm_tokens), output_uri=str(tmp_path / "model"), **flags)
    logged = json.loads((tmp_path / "model" / "training_history.json").read_text())["steps"][0]["loss"]
    seed_everything(3)
    model = CausalLanguageModel.from_scratch("tiny", len(WORDS) + 1, BLOCK_SIZE, 0)
    split = TokenizedSplit.load_blocks(lm_tokens, "train")
    batch = split.collate(plan_epoch(split.lengths, 8, 3, 0, group_by_length=False)[0], 0)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    expected = model.network(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss.item()
    assert logged == pytest.approx(expected, rel=1e-5)


def test_each_epoch_reads_the_train_stream_in_windows_shifted_by_a_seeded_offset(lm_tokens, tmp_path):
    """The same blocks every epoch are learnt by heart; shifted windows are not, and the steps stay the same."""
    tuner = LanguageModelTuner.__new__(LanguageModelTuner)  # plan() needs only the config, the split and one process
    tuner.config, tuner.dist, tuner.global_batch_size = TrainConfig(seed=5), Distributed.from_environment(), 8
    tuner.train_split = TokenizedSplit.load_blocks(lm_tokens, "train")
    blocks = tuner.train_split
    stream = np.concatenate([blocks.token_ids[start : start + length] for start, length in zip(blocks.offsets, blocks.lengths)])
    shifts = []
    for epoch in range(4):
        tuner.plan(epoch)
        split = tuner.train_split
        assert np.array_equal(split.lengths, blocks.lengths)  # the same steps every epoch
        first = split.token_ids[split.offsets[0] : split.offsets[0] + BLOCK_SIZE]
        shift = next(shift for shift in range(BLOCK_SIZE) if np.array_equal(np.roll(stream, -shift)[:BLOCK_SIZE], first))
        assert np.array_equal(
            np.concatenate([split.token_ids[o : o + n] for o, n in zip(split.offsets, split.lengths)]), np.roll(stream, -shift)
        )
        shifts.append(shift)
    assert shifts[0] == 0 and len(set(shifts[1:])) > 1  # epoch 0 as tokenize cut it; later epochs elsewhere
    assert shifts == [LanguageModelTuner.window_shift(tuner, epoch) for epoch in range(4)]  # a function of (seed, epoch): resume is exact


def test_resume_is_exact_for_the_language_model(lm_tokens, tmp_path):
    """A run resumed from its step-10 checkpoint (the later ones removed, as if it had stopped there)
    ends with the weights and history of the run that never stopped."""
    flags = lm_flags(epochs=2, checkpoint_every_steps=10, keep_checkpoints=5, keep_checkpoints_after_training=True, eval_every_steps=5)
    train(data_uri=str(lm_tokens), output_uri=str(tmp_path / "whole"), checkpoint_uri=str(tmp_path / "checkpoints"), **flags)
    stopped = tmp_path / "stopped-at-10"
    shutil.copytree(tmp_path / "checkpoints", stopped, ignore=shutil.ignore_patterns("step-00000020", "best"))
    assert sorted(path.name for path in stopped.iterdir()) == ["step-00000010"]
    train(data_uri=str(lm_tokens), output_uri=str(tmp_path / "resumed"), checkpoint_uri=str(stopped), **flags)
    assert json.loads((tmp_path / "resumed" / "train_summary.json").read_text())["resumed_from_checkpoint"] is True
    assert max_difference(weights(tmp_path / "resumed"), weights(tmp_path / "whole")) == 0.0
    history = json.loads((tmp_path / "resumed" / "training_history.json").read_text())
    assert history == json.loads((tmp_path / "whole" / "training_history.json").read_text())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"teacher_uri": "runs/x/model"}, "--teacher_uri: not available for causal_lm"),
        ({"model_type": "cnn"}, "--model_type: not available for causal_lm"),
        ({"metric_for_best": "accuracy"}, "--metric_for_best accuracy: causal_lm data has loss, perplexity, next_token_accuracy"),
    ],
)
def test_classification_settings_are_refused_for_a_language_model(flags, message, lm_tokens, tmp_path):
    with pytest.raises(UserError, match=message):
        train(data_uri=str(lm_tokens), output_uri=str(tmp_path / "model"), **lm_flags(**flags))
