"""Token batches: a seeded plan of which rows go together, and padding per batch.

Rows live in two flat arrays (token ids and offsets, straight from Arrow), so a batch is a few
slices, not a Python object per row. Each epoch's plan is a pure function of (seed, epoch), which
is what makes a resumed run, a run with gradient accumulation and a multi-process run see exactly
the same batches as a plain one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from components.lib.data.contract import BLOCKS_SCHEMA, TOKENIZED_SCHEMA, read_split

# Length grouping sorts rows by length inside windows of this many batches, then shuffles the
# batches: padding shrinks, and the order stays random at the scale that matters.
LENGTH_GROUP_WINDOW = 64


@dataclass
class TokenizedSplit:
    token_ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None  # None for a language model's blocks, which predict their own next tokens
    teacher_logits: np.ndarray | None = None  # a distillation teacher's logits, one row per row, when there is one

    @property
    def gold(self) -> np.ndarray:
        """The labels of a labelled split (every split but a language model's blocks)."""
        if self.labels is None:
            raise ValueError("this split has no labels: a language model's blocks predict their own next tokens")
        return self.labels

    @classmethod
    def load(cls, folder: Path, split: str) -> TokenizedSplit:
        table = read_split(folder, split, TOKENIZED_SCHEMA, columns=["input_ids", "length", "label"])
        return cls.from_table(table, labels=table.column("label").to_numpy().astype(np.int64))

    @classmethod
    def load_blocks(cls, folder: Path, split: str) -> TokenizedSplit:
        """A causal_lm split: fixed-size blocks of token ids, no labels."""
        return cls.from_table(read_split(folder, split, BLOCKS_SCHEMA), labels=None)

    @classmethod
    def from_table(cls, table: pa.Table, labels: np.ndarray | None) -> TokenizedSplit:
        ids = table.column("input_ids").combine_chunks()
        return cls(
            token_ids=ids.values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
            offsets=ids.offsets.to_numpy(),
            lengths=table.column("length").to_numpy().astype(np.int64),
            labels=labels,
        )

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_token_lists(cls, token_lists: list[list[int]], labels: np.ndarray) -> TokenizedSplit:
        lengths = np.fromiter((len(ids) for ids in token_lists), dtype=np.int64, count=len(token_lists))
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        flat = np.fromiter((token for ids in token_lists for token in ids), dtype=np.int64, count=int(lengths.sum()))
        return cls(flat, offsets, lengths, np.asarray(labels, dtype=np.int64))

    def subset(self, rows: np.ndarray) -> TokenizedSplit:
        teacher = None if self.teacher_logits is None else self.teacher_logits[rows]
        labels = None if self.labels is None else self.labels[rows]
        return TokenizedSplit(self.token_ids, self.offsets[rows], self.lengths[rows], labels, teacher)

    def rotated(self, shift: int) -> TokenizedSplit:
        """The rows' tokens, in row order, read as one stream that starts `shift` tokens in and wraps
        around, cut into rows of the same lengths (a language model's blocks; no labels)."""
        if not len(self):
            return self
        stream = np.concatenate([self.token_ids[start : start + length] for start, length in zip(self.offsets, self.lengths)])
        starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        return TokenizedSplit(np.roll(stream, -shift), starts, self.lengths, None)

    def collate(self, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        """Pad the given rows to the longest among them."""
        width = int(self.lengths[rows].max())
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        for slot, row in enumerate(rows):
            start = self.offsets[row]
            input_ids[slot, : self.lengths[row]] = self.token_ids[start : start + self.lengths[row]]
        attention_mask = (np.arange(width)[None, :] < self.lengths[rows][:, None]).astype(np.int64)
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        if self.labels is not None:
            batch["labels"] = torch.from_numpy(self.labels[rows])
        if self.teacher_logits is not None:
            batch["teacher_logits"] = torch.from_numpy(self.teacher_logits[rows])
        return batch


def plan_epoch(lengths: np.ndarray, global_batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[np.ndarray]:
    """The global batches of one epoch, in order: row indices, at most `global_batch_size` each."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return [order[start : start + global_batch_size] for start in range(0, len(order), global_batch_size)]
    window = global_batch_size * LENGTH_GROUP_WINDOW
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[offset : offset + global_batch_size] for offset in range(0, len(chunk), global_batch_size))
    longest = max(range(len(batches)), key=lambda index: lengths[batches[index]].max())
    rest = [batches[index] for index in rng.permutation(len(batches)) if index != longest]
    # The longest batch goes first, so a batch size that does not fit in memory fails at once.
    return [batches[longest], *rest]


def shard(global_batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This process's share of a global batch; shares differ in size by at most one row."""
    return np.array_split(global_batch, world_size)[rank]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of rows of similar length, for inference, where order does not matter."""
    order = np.argsort(-lengths, kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


PACINGS = ("root", "linear")


def competence(step: int, total_steps: int, start: float, pacing: str) -> float:
    """The share of rows, easiest first, that a curriculum may draw from at `step` (Platanios et al.
    2019, "Competence-based Curriculum Learning for Neural Machine Translation", section 3):
    root: sqrt(t (1 - c0^2) / T + c0^2); linear: t (1 - c0) / T + c0; both reach 1 at T."""
    progress = min(step / total_steps, 1.0) if total_steps else 1.0
    if pacing == "root":
        return min(1.0, (progress * (1 - start**2) + start**2) ** 0.5)
    return min(1.0, progress * (1 - start) + start)


def curriculum_epoch(
    lengths: np.ndarray, global_batch_size: int, seed: int, epoch: int, curriculum_epochs: int, start: float, pacing: str
) -> list[np.ndarray]:
    """One epoch of a short-to-long curriculum: as many batches as a plain epoch, each drawn (seeded,
    without replacement inside the batch) from the shortest competence(t) share of the rows. As in the
    paper, a row may come more than once, or not at all, while the curriculum lasts; after
    `curriculum_epochs` epochs the trainer goes back to plain epochs, where every row comes once."""
    rng = np.random.default_rng([seed, epoch, 1])  # a stream of its own, apart from plan_epoch's
    easiest_first = np.argsort(lengths, kind="stable")
    per_epoch = -(-len(lengths) // global_batch_size)
    batches = []
    for index in range(per_epoch):
        share = competence(epoch * per_epoch + index, curriculum_epochs * per_epoch, start, pacing)
        pool = easiest_first[: max(global_batch_size, int(np.ceil(share * len(lengths))))]
        batches.append(rng.choice(pool, size=min(global_batch_size, len(pool)), replace=False))
    return batches


def mean_token_rarity(split: TokenizedSplit) -> np.ndarray:
    """Each row's mean rarity of its tokens, -ln(the token's share of all the split's tokens): the guide's
    lexical difficulty, rows of frequent words first."""
    lengths = split.lengths.astype(np.int64)
    row_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    positions = np.repeat(split.offsets.astype(np.int64) - row_starts, lengths) + np.arange(int(lengths.sum()))
    tokens = split.token_ids[positions]
    counts = np.bincount(tokens)
    rarity = -np.log(counts[tokens] / max(len(tokens), 1))
    sums = np.add.reduceat(rarity, row_starts) if len(tokens) else np.zeros(len(lengths))
    return np.where(lengths > 0, sums / np.maximum(lengths, 1), 0.0)


def split_into_contexts(batch: dict[str, torch.Tensor], context: int) -> dict[str, torch.Tensor]:
    """The batch's blocks cut into pieces of `context` tokens (the last piece of each padded): the same
    tokens in shorter sequences, as sequence-length warmup reads them."""
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    width = -(-input_ids.shape[1] // context) * context
    padding = width - input_ids.shape[1]
    input_ids = torch.nn.functional.pad(input_ids, (0, padding), value=0).reshape(-1, context)
    attention_mask = torch.nn.functional.pad(attention_mask, (0, padding), value=0).reshape(-1, context)
    keep = attention_mask.sum(dim=1) > 0  # pieces of padding alone
    return {"input_ids": input_ids[keep], "attention_mask": attention_mask[keep]}


def predicted_tokens_in_contexts(lengths: np.ndarray, context: int) -> int:
    """The next-token predictions blocks of these lengths hold once cut into pieces of `context` tokens."""
    whole, rest = np.divmod(lengths.astype(np.int64), context)
    return int((whole * (context - 1)).sum() + np.maximum(rest - 1, 0).sum())
