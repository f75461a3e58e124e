"""The language of each text, detected offline by py3langid (its model ships in the wheel and loads from
npz without pickle): evaluate and register slice the test rows by it, tokenize profiles each split's
language mix, and register compares that mix with production's (components/lib/data/profile.py).

A text the detector is unsure of (below MIN_CONFIDENCE, as most very short tweets are) counts as
UNSURE rather than as whatever language won by a hair.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

MIN_CONFIDENCE = 0.5  # the detector's normalised probability; on English tweets 0.5 leaves about 1 in 6 unsure, 0.9 about 1 in 3
UNSURE = "unsure"
PROFILE_SAMPLE_ROWS = 2000  # a split's language mix is read from this many rows, spread evenly over it
MIN_SHARE = 0.01  # a language below this share of a profile counts under "other"
OTHER = "other"


@functools.cache
def identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_languages(texts: Sequence[str]) -> list[str]:
    """An ISO 639-1 code per text ("en", "es"), or UNSURE."""
    detector = identifier()
    detected = []
    for text in texts:
        language, confidence = detector.classify(text)
        detected.append(language if confidence >= MIN_CONFIDENCE else UNSURE)
    return detected


def language_shares(texts: Sequence[str]) -> dict[str, float]:
    """{language: share of the rows} on an even sample of PROFILE_SAMPLE_ROWS; languages under MIN_SHARE as OTHER."""
    step = max(1, len(texts) // PROFILE_SAMPLE_ROWS)
    sample = texts[::step][:PROFILE_SAMPLE_ROWS]
    counts = Counter(detect_languages(sample))
    shares: dict[str, float] = {}
    for language, count in counts.most_common():
        named = language if count / len(sample) >= MIN_SHARE else OTHER
        shares[named] = shares.get(named, 0.0) + count / len(sample)
    return {language: round(share, 4) for language, share in sorted(shares.items(), key=lambda item: -item[1])}
