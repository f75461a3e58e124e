"""An interpolated trigram language model: the baseline a causal LM's evaluation compares it with.

Jelinek-Mercer interpolation of four estimates of the next token w after the context (v, u):

    p(w | v, u) = l3 p3(w | v, u) + l2 p2(w | u) + l1 p1(w) + l0 / V

p3 and p2 are maximum-likelihood counts from the train split; where their context was never seen
(or, for p3, does not exist because u is the first token of a block) they take the next lower
order's estimate, so each stays a distribution. p1 counts with add-one, and l0 / V is a uniform
floor over the vocabulary, its weight never below FLOOR_WEIGHT: no token's probability is zero.
The weights are fitted by expectation-maximisation on the validation split (each weight becomes
the mean share of the validation likelihood that its estimate explains), which raises the
validation likelihood at every iteration.

It predicts the positions a causal LM does: in every block of n tokens, tokens 1..n-1, each from
the tokens before it in the same block only. Counting and look-ups are numpy: an n-gram is one
int64 key (its ids as digits in base V), counted with np.unique and found with np.searchsorted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

ORDER = 3
COMPONENTS = ("trigram", "bigram", "unigram", "uniform")
FLOOR_WEIGHT = 1e-3  # the least weight the uniform floor keeps
EM_ITERATIONS = 100
EM_TOLERANCE = 1e-7  # stop once no weight moves by more than this
NO_TOKEN = -1  # the missing token before a block's first predicted one


@dataclass(frozen=True)
class Positions:
    """The predicted tokens of a split's blocks and the (up to) two tokens before each in its block."""

    before: np.ndarray  # the token two back, NO_TOKEN at a block's second token
    previous: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class Counts:
    """Sorted n-gram keys and their counts, with the counts of their contexts (the key without its last id)."""

    keys: np.ndarray
    counts: np.ndarray
    context_keys: np.ndarray
    context_counts: np.ndarray

    @classmethod
    def of(cls, keys: np.ndarray, vocab_size: int) -> Counts:
        keys, counts = np.unique(keys, return_counts=True)
        context_keys, first = np.unique(keys // vocab_size, return_index=True)
        return cls(keys, counts, context_keys, np.add.reduceat(counts, first) if len(keys) else counts)

    def count(self, keys: np.ndarray) -> np.ndarray:
        return lookup(self.keys, self.counts, keys)

    def context_count(self, context_keys: np.ndarray) -> np.ndarray:
        return lookup(self.context_keys, self.context_counts, context_keys)


def lookup(table: np.ndarray, counts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The count of each key in a sorted table, 0 where it is absent."""
    if not len(table):
        return np.zeros(len(keys), np.int64)
    index = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return np.where(table[index] == keys, counts[index], 0)


def block_positions(token_ids: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> Positions:
    """Every block's tokens 1..n-1 with their contexts, never reaching before the block's start."""
    index, within = token_indices(offsets, lengths)
    predicted, within = index[within >= 1], within[within >= 1]
    before = np.where(within >= 2, token_ids[np.maximum(predicted - 2, 0)], NO_TOKEN)
    return Positions(before, token_ids[predicted - 1], token_ids[predicted])


def token_indices(offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each block token's index into the flat ids, and its position within its block. `offsets` may have
    one more entry than `lengths` (Arrow's end offset), which is ignored."""
    lengths = np.asarray(lengths, np.int64)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(offsets[: len(lengths)], np.int64), lengths) + within, within


def split_positions(split) -> Positions:
    """`block_positions` of a TokenizedSplit of blocks."""
    return block_positions(split.token_ids, split.offsets, split.lengths)


def split_stream(split) -> np.ndarray:
    """A split's tokens in block order: the split's text as tokenize cut it."""
    return split.token_ids[token_indices(split.offsets, split.lengths)[0]]


@dataclass(frozen=True)
class TrigramModel:
    vocab_size: int
    unigrams: np.ndarray  # count of each id
    bigrams: Counts
    trigrams: Counts
    weights: np.ndarray  # one per COMPONENTS entry, summing to 1

    @classmethod
    def train(cls, stream: np.ndarray, vocab_size: int) -> TrigramModel:
        if vocab_size**ORDER >= 2**63:
            raise ValueError(f"a vocabulary of {vocab_size} ids is too large for int64 trigram keys")
        stream = np.asarray(stream, np.int64)
        bigram_keys = stream[:-1] * vocab_size + stream[1:]
        trigram_keys = bigram_keys[:-1] * vocab_size + stream[2:]
        return cls(
            vocab_size,
            np.bincount(stream, minlength=vocab_size),
            Counts.of(bigram_keys, vocab_size),
            Counts.of(trigram_keys, vocab_size),
            np.full(len(COMPONENTS), 1 / len(COMPONENTS)),
        )

    def estimates(self, positions: Positions) -> np.ndarray:
        """(positions, 4): the trigram, bigram, add-one unigram and uniform estimates of each target."""
        size = self.vocab_size
        unigram = (self.unigrams[positions.target] + 1) / (self.unigrams.sum() + size)
        bigram = backed_off(self.bigrams, positions.previous, positions.target, size, unigram)
        has_context = positions.before != NO_TOKEN
        context = np.where(has_context, positions.before, 0) * size + positions.previous
        trigram = backed_off(self.trigrams, context, positions.target, size, bigram, has_context)
        return np.stack([trigram, bigram, unigram, np.full(len(positions), 1 / size)], axis=1)

    def probabilities(self, positions: Positions) -> np.ndarray:
        return self.estimates(positions) @ self.weights

    def distribution(self, previous: int, before: int = NO_TOKEN) -> np.ndarray:
        """p(w | before, previous) for every id w of the vocabulary."""
        targets = np.arange(self.vocab_size)
        return self.probabilities(Positions(np.full_like(targets, before), np.full_like(targets, previous), targets))

    def fit_weights(self, positions: Positions) -> TrigramModel:
        """This model with the weights that EM finds on `positions` (held-out data); unchanged if there are none."""
        if not len(positions):
            return self
        return replace(self, weights=em_weights(self.estimates(positions)))

    def nats(self, positions: Positions) -> float:
        """The summed negative log-likelihood of the targets."""
        return float(-np.log(self.probabilities(positions)).sum())

    def named_weights(self) -> dict[str, float]:
        return {name: round(float(weight), 6) for name, weight in zip(COMPONENTS, self.weights, strict=True)}


def backed_off(counts: Counts, context: np.ndarray, target: np.ndarray, size: int, lower: np.ndarray, usable=True) -> np.ndarray:
    """The maximum-likelihood estimate of target after context, or `lower` where the context was never seen."""
    seen = counts.context_count(context)
    found = counts.count(context * size + target)
    return np.where(usable & (seen > 0), found / np.maximum(seen, 1), lower)


def em_weights(estimates: np.ndarray) -> np.ndarray:
    """Interpolation weights maximising the likelihood of held-out estimates, the floor's kept at FLOOR_WEIGHT or more."""
    weights = np.full(estimates.shape[1], 1 / estimates.shape[1])
    for _ in range(EM_ITERATIONS):
        shares = estimates * weights
        updated = with_floor((shares / shares.sum(axis=1, keepdims=True)).mean(axis=0))
        converged = np.abs(updated - weights).max() < EM_TOLERANCE
        weights = updated
        if converged:
            break
    return weights


def with_floor(weights: np.ndarray) -> np.ndarray:
    """Raise the uniform weight (the last) to FLOOR_WEIGHT if below, taking the difference from the others."""
    if weights[-1] >= FLOOR_WEIGHT:
        return weights
    others = weights[:-1] * (1 - FLOOR_WEIGHT) / weights[:-1].sum()
    return np.append(others, FLOOR_WEIGHT)


def baseline_scores(model: TrigramModel, positions: Positions) -> dict:
    """Loss (nats per predicted token), perplexity and the count of predicted tokens."""
    loss = model.nats(positions) / len(positions) if len(positions) else float("nan")
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": len(positions)}
