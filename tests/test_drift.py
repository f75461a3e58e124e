"""Data drift between runs: the population stability index, and the one-line shifts register names."""

import json
import math

import numpy as np
import pytest

from components.lib.data.language import UNSURE, detect_languages, language_shares
from components.lib.data.profile import DRIFT_PSI, drift_lines, length_shares, stability_index

PROFILE = {"tokens": {"p50": 12}, "length_shares": [0.1, 0.5, 0.3, 0.1, 0.0, 0.0, 0.0],
           "class_counts": {"negative": 300, "neutral": 300, "positive": 400}, "unknown_token_rate": 0.002}  # fmt: skip


def test_the_stability_index_matches_its_formula_worked_by_hand():
    """(0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5) = 0.4 ln 1.8 + 0.4 ln 5 = 0.8789."""
    assert stability_index([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5))
    assert stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_lengths_fall_in_the_profiles_bins():
    assert length_shares(np.array([0, 7, 8, 15, 16, 255, 256, 1000])) == [0.25, 0.25, 0.125, 0.0, 0.0, 0.125, 0.25]


def test_the_same_data_has_no_drift_and_each_shift_is_named_in_one_line():
    assert drift_lines(PROFILE, PROFILE) == []
    longer = {**PROFILE, "tokens": {"p50": 70}, "length_shares": [0.0, 0.05, 0.15, 0.3, 0.4, 0.1, 0.0]}
    skewed = {**PROFILE, "class_counts": {"negative": 50, "neutral": 50, "positive": 900}}
    foreign = {**PROFILE, "unknown_token_rate": 0.04}
    [length] = drift_lines(PROFILE, longer)
    assert length.startswith("text length has shifted from production's training data: PSI ") and "(median 12 -> 70 tokens)" in length
    [labels] = drift_lines(PROFILE, skewed)
    assert f"> {DRIFT_PSI} (negative 0.30 -> 0.05, neutral 0.30 -> 0.05, positive 0.40 -> 0.90)" in labels
    [unknown] = drift_lines(PROFILE, foreign)
    assert unknown == "the tokenizer knows fewer of the tokens: unknown-token rate 0.0020 -> 0.0400 (another language?)"
    assert drift_lines(PROFILE, {**PROFILE, "unknown_token_rate": 0.005}) == []  # up, but not by the set amount


def test_a_shift_in_the_language_mix_is_named_in_one_line_and_a_steady_mix_is_not():
    english = {**PROFILE, "language_shares": {"en": 0.85, "unsure": 0.15}}
    assert drift_lines(english, {**english, "language_shares": {"en": 0.83, "unsure": 0.16, "other": 0.01}}) == []
    [line] = drift_lines(english, {**english, "language_shares": {"en": 0.45, "es": 0.4, "unsure": 0.15}})
    assert line.startswith("the language mix has shifted from production's training data: PSI ")
    assert line.endswith("(en 0.85 -> 0.45, es 0.00 -> 0.40, unsure 0.15 -> 0.15)")


ENGLISH = "I really love this phone, the battery lasts all day and the screen is bright"
SPANISH = "Me encanta este teléfono, la batería dura todo el día y la pantalla es brillante"


def test_languages_are_detected_offline_and_a_splits_mix_is_read_from_an_even_sample():
    assert detect_languages([ENGLISH, SPANISH, "ok"]) == ["en", "es", UNSURE]  # two letters: the detector is unsure
    shares = language_shares([ENGLISH] * 3000 + [SPANISH] * 1000)
    assert shares == {"en": 0.75, "es": 0.25}  # sampled every other row: still the mix of the whole


def test_tokenize_profiles_the_language_mix_of_each_split(prepared_data):
    stats = json.loads((prepared_data[1] / "stats.json").read_text())
    for split in ("train", "validation", "test"):
        assert sum(stats["splits"][split]["language_shares"].values()) == pytest.approx(1.0, abs=0.01)
