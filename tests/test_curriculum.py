"""Curriculum order: short texts first, the pool widening with the competence schedule, seeded."""

import numpy as np
import pytest

from components.lib.data.batching import competence, curriculum_epoch, plan_epoch
from components.lib.errors import UserError
from tests.test_train import make_tuner


def test_competence_follows_the_papers_schedules():
    assert competence(0, 100, 0.2, "root") == pytest.approx(0.2)
    assert competence(50, 100, 0.2, "root") == pytest.approx((0.5 * 0.96 + 0.04) ** 0.5)
    assert competence(50, 100, 0.2, "linear") == pytest.approx(0.6)
    assert competence(100, 100, 0.2, "root") == competence(500, 100, 0.2, "linear") == 1.0


def test_the_first_batches_come_from_the_shortest_rows_and_the_pool_widens():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    batches = curriculum_epoch(lengths, 10, seed=3, epoch=0, curriculum_epochs=1, start=0.2, pacing="root")
    shortest_fifth = np.sort(lengths)[199]
    assert len(batches) == len(plan_epoch(lengths, 10, 3, 0, True)) == 100
    assert all(lengths[row] <= shortest_fifth for row in batches[0])
    assert max(lengths[np.concatenate(batches[-5:])]) > shortest_fifth * 2
    assert all(len(set(batch)) == len(batch) for batch in batches)


def test_a_curriculum_is_a_pure_function_of_seed_and_epoch():
    lengths = np.random.default_rng(1).integers(1, 50, size=300)
    plan = lambda seed, epoch: curriculum_epoch(lengths, 8, seed, epoch, 2, 0.3, "linear")  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(plan(5, 1), plan(5, 1), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(plan(5, 1), plan(6, 1), strict=True))


def test_the_trainer_follows_the_curriculum_then_plain_epochs(prepared_data, tiny_model, tmp_path):
    tuner = make_tuner(prepared_data, tiny_model, tmp_path, curriculum="length", curriculum_start=0.1, batch_size=4)
    lengths = tuner.train_split.lengths
    assert max(lengths[tuner.plan(0)[0]]) <= np.sort(lengths)[int(0.1 * len(lengths))]
    plain = plan_epoch(lengths, 4, tuner.config.seed, 1, True)
    assert all(np.array_equal(a, b) for a, b in zip(tuner.plan(1), plain, strict=True))
    off = make_tuner(prepared_data, tiny_model, tmp_path, batch_size=4)
    assert all(np.array_equal(a, b) for a, b in zip(off.plan(0), plan_epoch(lengths, 4, off.config.seed, 0, True), strict=True))


def test_an_unknown_curriculum_is_refused(prepared_data, tiny_model, tmp_path):
    with pytest.raises(UserError, match=r"--curriculum: 'hardest' is not one of none, length"):
        make_tuner(prepared_data, tiny_model, tmp_path, curriculum="hardest").config.check()
