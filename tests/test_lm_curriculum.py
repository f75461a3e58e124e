"""Curricula for causal-LM data: sequence-length warmup (`--curriculum length`: short contexts first, the
block growing by step) and the rarity pool (`--curriculum rarity`: blocks of frequent tokens first)."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from components.lib.data.batching import TokenizedSplit, mean_token_rarity, predicted_tokens_in_contexts, split_into_contexts
from components.lib.training import lm_trainer
from components.lib.training.distributed import Distributed
from components.lib.training.lm_trainer import CONTEXT_STEP, LanguageModelTuner
from components.lib.training.settings import TrainConfig
from components.train import train
from tests.test_train import max_difference, weights
from tests.test_train_lm import lm_flags, lm_tokens  # noqa: F401

BLOCK = 64


def warmup_tuner(**settings) -> LanguageModelTuner:
    """A tuner with what context_length and loss_units read: its config, blocks of BLOCK tokens, 10 steps an epoch."""
    tuner = LanguageModelTuner.__new__(LanguageModelTuner)
    tuner.config = TrainConfig(**settings)
    tuner.blocks = tuner.train_split = TokenizedSplit.from_token_lists([list(range(BLOCK))] * 4 + [list(range(20))], np.zeros(5))
    tuner.steps_per_epoch, tuner.progress, tuner.dist = 10, SimpleNamespace(global_step=0), Distributed()
    return tuner


def contexts_by_step(tuner: LanguageModelTuner, steps: int) -> list[int | None]:
    found = []
    for step in range(steps):
        tuner.progress.global_step = step
        found.append(tuner.context_length())
    return found


def test_the_context_starts_at_its_share_of_the_block_and_grows_by_step_to_the_whole_block():
    tuner = warmup_tuner(curriculum="length", curriculum_start=0.125, curriculum_epochs=2, curriculum_pacing="linear")
    contexts = contexts_by_step(tuner, 30)
    assert contexts[0] == BLOCK // 8 == CONTEXT_STEP  # an eighth of the block at the first step
    growing = [context for context in contexts if context is not None]
    assert growing == sorted(growing) and len(set(growing)) == 7  # 8, 16, ..., 56: multiples of CONTEXT_STEP
    assert all(context % CONTEXT_STEP == 0 for context in growing)
    assert contexts[20:] == [None] * 10  # the whole block from the end of --curriculum_epochs on
    assert contexts_by_step(warmup_tuner(), 30) == [None] * 30  # no curriculum: whole blocks


def test_a_batch_cut_into_contexts_holds_the_same_tokens_and_its_loss_units_count_the_predictions():
    tuner = warmup_tuner(curriculum="length", curriculum_start=0.25, curriculum_epochs=1)
    rows = np.arange(5)
    batch = tuner.train_split.collate(rows, pad_id=0)
    context = tuner.context_length()
    pieces = split_into_contexts(batch, context)
    assert pieces["input_ids"].shape[1] == context == 16
    assert torch.equal(pieces["input_ids"][pieces["attention_mask"] == 1], batch["input_ids"][batch["attention_mask"] == 1])
    predictions = int((pieces["attention_mask"].sum(dim=1) - 1).clamp(min=0).sum())
    assert tuner.loss_units(rows) == predictions == predicted_tokens_in_contexts(tuner.train_split.lengths, 16) == 4 * 4 * 15 + 15 + 3


def test_rarity_orders_blocks_by_the_mean_rarity_of_their_tokens():
    rows = [[3, 4, 5, 6], [1, 2, 1, 2], [1, 1, 1, 1]]  # all of one length: only rarity tells them apart
    split = TokenizedSplit.from_token_lists(rows, np.zeros(3))
    shares = {1: 6 / 12, 2: 2 / 12, 3: 1 / 12, 4: 1 / 12, 5: 1 / 12, 6: 1 / 12}
    expected = [np.mean([-np.log(shares[token]) for token in row]) for row in rows]
    assert mean_token_rarity(split) == pytest.approx(expected)
    tuner = warmup_tuner(curriculum="rarity", curriculum_start=0.2, curriculum_epochs=1, batch_size=1)
    tuner.train_split = tuner.blocks = split
    tuner.global_batch_size, tuner.said_rows_left_out = 1, False
    assert tuner.plan(0)[0].tolist() == [2]  # the first step draws from the block of the commonest tokens alone


@pytest.mark.parametrize("curriculum", ["length", "rarity"])
def test_a_language_model_trains_with_each_curriculum_and_resumes_exactly(curriculum, lm_tokens, tmp_path, monkeypatch):  # noqa: F811
    widths = []
    cut = lm_trainer.split_into_contexts
    monkeypatch.setattr(lm_trainer, "split_into_contexts", lambda batch, context: widths.append(context) or cut(batch, context))
    flags = lm_flags(epochs=2, curriculum=curriculum, curriculum_start=0.5, checkpoint_every_steps=10, keep_checkpoints=5,
                     keep_checkpoints_after_training=True, eval_every_steps=5)  # fmt: skip
    train(data_uri=str(lm_tokens), output_uri=str(tmp_path / "whole"), checkpoint_uri=str(tmp_path / "checkpoints"), **flags)
    history = json.loads((tmp_path / "whole" / "training_history.json").read_text())
    assert all(np.isfinite(entry["loss"]) for entry in history["steps"])
    assert (set(widths) == {8}) if curriculum == "length" else not widths  # half of the 16-token blocks, while the warmup lasts
    stopped = tmp_path / "stopped-at-10"
    shutil.copytree(tmp_path / "checkpoints", stopped, ignore=shutil.ignore_patterns("step-00000020", "best"))
    train(data_uri=str(lm_tokens), output_uri=str(tmp_path / "resumed"), checkpoint_uri=str(stopped), **flags)
    assert max_difference(weights(tmp_path / "resumed"), weights(tmp_path / "whole")) == 0.0
    plain = lm_flags(epochs=2)
    train(data_uri=str(lm_tokens), output_uri=str(tmp_path / "plain"), **plain)
    assert max_difference(weights(tmp_path / "plain"), weights(tmp_path / "whole")) > 1e-3  # the curriculum changed training
