"""tokenize for the causal language-model task: documents in, fixed-size blocks of token ids out.

The tokenizer is either the base model's own (`--tokenizer base`) or a new one trained here on the
train split alone (`bpe` or `unigram`), so that validation and test stay unseen, as they would for
a classifier. Training streams the split one record batch at a time. Both trained kinds apply NFKC
first. `bpe` is byte-level, so every text in any script round-trips exactly; its word pattern is
GPT-2's with combining marks (`\\p{M}`) counted as part of a word, because GPT-2's own splits
Devanagari, Bengali, Tamil... at every vowel sign and no merge can cross those splits. `unigram`
works on characters: a character never seen in train becomes `<unk>`.

Blocks: each document's ids, then the end-of-text id, concatenated over the documents of one split
(never across splits) and cut into consecutive blocks of `block_size` tokens. The split's last
block is usually shorter; it is kept with its true `length` (train pads it and masks the padding
out of the loss), so no token is dropped, and its size is reported. Memory holds one record batch
of ids and a remainder shorter than a block, whatever the split's size.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.lib.data.contract import (
    BLOCKS_SCHEMA,
    CAUSAL_LM,
    CORPUS_SCHEMA,
    SPLITS,
    STATS_FILE,
    TOKENIZER_DIR,
    open_split,
    split_file,
)
from components.lib.errors import UserError, flag_hint
from components.lib.model_sources import load_tokenizer, local_model_source, model_max_positions
from components.lib.storage.artifacts import staged_input, staged_output

log = logging.getLogger("components.tokenize")

BASE, BPE, UNIGRAM = "base", "bpe", "unigram"
TOKENIZER_KINDS = (BASE, BPE, UNIGRAM)
END_OF_TEXT = "<|endoftext|>"
UNKNOWN = "<unk>"
MIN_VOCAB_SIZE = 256 + 2  # the 256 bytes (or base characters) and the special tokens
MIN_BLOCK_SIZE = 8
# GPT-2's pre-tokenizer pattern with \p{M} beside \p{L}: vowel signs and viramas stay inside their word.
WORD_PATTERN = r" ?[\p{L}\p{M}]+| ?\p{N}+| ?[^\s\p{L}\p{M}\p{N}]+|\s+(?!\S)|\s+"


@dataclass(frozen=True)
class CorpusFlags:
    base_model: str
    tokenizer: str
    vocab_size: int
    block_size: int
    batch_size: int
    trust_remote_code: bool


def check_corpus_flags(tokenizer: str, vocab_size: int, block_size: int) -> None:
    if tokenizer not in TOKENIZER_KINDS:
        raise UserError(f"--tokenizer: must be one of {', '.join(TOKENIZER_KINDS)}, got {tokenizer!r}")
    if tokenizer != BASE and vocab_size < MIN_VOCAB_SIZE:
        raise UserError(f"--vocab_size: must be at least {MIN_VOCAB_SIZE} (256 base symbols and the special tokens), got {vocab_size}")
    if block_size < MIN_BLOCK_SIZE:
        raise UserError(f"--block_size: must be at least {MIN_BLOCK_SIZE}, got {block_size}")


def refuse_folds(num_folds: int) -> None:
    if num_folds:
        raise UserError(f"--num_folds {num_folds}: folds are for classification; causal_lm data keeps its train/validation/test splits")


def tokenize_corpus(data_uri: str, output_uri: str, flags: CorpusFlags) -> dict:
    """Write the blocks of every split, the tokenizer and stats.json to `output_uri`; return the stats."""
    with staged_input(data_uri) as (data_dir, data_manifest):
        return write_corpus(data_dir, data_manifest.get("lineage", {}), output_uri, flags)


def write_corpus(data_dir: Path, lineage: dict, output_uri: str, flags: CorpusFlags) -> dict:
    tokenizer, block_size, training_seconds = prepare_tokenizer(data_dir, flags)
    end_of_text_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    encoder = plain_encoder(tokenizer)
    vocab_size = len(tokenizer)
    lineage = {**lineage, "base_model": flags.base_model, "tokenizer": flags.tokenizer, "vocab_size": vocab_size, "block_size": block_size}
    with staged_output(output_uri, extra={"lineage": lineage}) as out:
        split_stats = {split: write_blocks(data_dir, out, split, encoder, end_of_text_id, block_size, flags.batch_size) for split in SPLITS}
        tokenizer.model_max_length = block_size
        tokenizer.save_pretrained(out / TOKENIZER_DIR)
        stats = {
            "task": CAUSAL_LM,
            "base_model": flags.base_model,
            "tokenizer": {
                "kind": flags.tokenizer,
                "vocab_size": vocab_size,  # a small train split can give fewer tokens than asked for
                "requested_vocab_size": None if flags.tokenizer == BASE else flags.vocab_size,
                "training_seconds": training_seconds,
            },
            "block_size": block_size,
            "requested_block_size": flags.block_size,
            "splits": split_stats,
        }
        (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def prepare_tokenizer(data_dir: Path, flags: CorpusFlags):
    """(tokenizer with an eos_token and a pad_token, block size, seconds spent training or None)."""
    if flags.tokenizer == BASE:
        return *base_tokenizer(flags), None
    started = time.perf_counter()
    tokenizer = train_tokenizer(data_dir, flags)
    seconds = round(time.perf_counter() - started, 3)
    log.info("trained a %s tokenizer of %d tokens on the train split in %.1f s", flags.tokenizer, len(tokenizer), seconds)
    return tokenizer, flags.block_size, seconds


def base_tokenizer(flags: CorpusFlags):
    """The base model's tokenizer, its end-of-text set as eos_token, and the block size capped at its positions."""
    from transformers import AutoConfig

    with local_model_source(flags.base_model) as source:
        tokenizer = load_tokenizer(flags.base_model, source, flags.trust_remote_code)
        config = AutoConfig.from_pretrained(source, trust_remote_code=flags.trust_remote_code)
    tokenizer.eos_token = end_of_text(tokenizer, flags.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad positions are masked out of the loss
    block_size = min(flags.block_size, model_max_positions(tokenizer, config))
    if block_size < flags.block_size:
        log.warning("--block_size %d is above what %s takes; using %d, the model's limit", flags.block_size, flags.base_model, block_size)
    return tokenizer, block_size


def end_of_text(tokenizer, base_model: str) -> str:
    token = tokenizer.eos_token or tokenizer.sep_token
    if token is None:
        raise UserError(
            f"{base_model}: its tokenizer has no end-of-text token (no eos_token, no sep_token);"
            f" pass {flag_hint('tokenizer', 'bpe')} or unigram"
        )
    return token


def train_tokenizer(data_dir: Path, flags: CorpusFlags):
    """A new fast tokenizer trained on the train split only, wrapped for `AutoTokenizer` to load back."""
    from transformers import PreTrainedTokenizerFast

    train = open_split(data_dir, "train", CORPUS_SCHEMA)
    tokenizer, trainer = new_bpe(flags.vocab_size) if flags.tokenizer == BPE else new_unigram(flags.vocab_size)
    tokenizer.train_from_iterator(train_texts(train, flags.batch_size), trainer, length=train.metadata.num_rows)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        bos_token=END_OF_TEXT,
        unk_token=UNKNOWN if flags.tokenizer == UNIGRAM else None,
        clean_up_tokenization_spaces=False,  # it would turn "a ." into "a.", and decoding would not round-trip
    )


def new_bpe(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return tokenizer, trainer


def new_unigram(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT, UNKNOWN], unk_token=UNKNOWN)
    return tokenizer, trainer


def train_texts(split: pq.ParquetFile, batch_size: int) -> Iterator[list[str]]:
    for batch in split.iter_batches(batch_size=batch_size, columns=["text"]):
        yield batch.column("text").to_pylist()


def plain_encoder(tokenizer):
    """The Rust tokenizer, set to neither truncate nor pad (a base model's tokenizer.json may do both),
    and to read special tokens written in a document as text: end-of-text comes only between documents,
    never from a document that quotes "<|endoftext|>". (tokenizer.json does not keep this setting.)"""
    encoder = tokenizer.backend_tokenizer
    encoder.no_padding()
    encoder.no_truncation()
    encoder.encode_special_tokens = True
    return encoder


def write_blocks(data_dir: Path, out: Path, split: str, encoder, end_of_text_id: int, block_size: int, batch_size: int) -> dict:
    """Cut one split's documents, each followed by end-of-text, into blocks; return the split's stats."""
    source = open_split(data_dir, split, CORPUS_SCHEMA)
    documents = characters = full_blocks = 0
    remainder = np.zeros(0, np.int32)  # the tokens after the last whole block so far: fewer than block_size
    with pq.ParquetWriter(split_file(out, split), BLOCKS_SCHEMA) as writer:
        for batch in source.iter_batches(batch_size=batch_size, columns=["text"]):
            texts = batch.column("text")
            stream = np.concatenate([remainder, document_stream(encoder, texts.to_pylist(), end_of_text_id)])
            whole = len(stream) - len(stream) % block_size
            writer.write_table(blocks_table(stream[:whole], block_size))
            remainder = stream[whole:]
            full_blocks += whole // block_size
            documents += len(texts)
            characters += pc.sum(pc.utf8_length(texts)).as_py() or 0
        if len(remainder):
            writer.write_table(blocks_table(remainder, len(remainder)))
    tokens = full_blocks * block_size + len(remainder)
    return split_stats(split, documents, characters, tokens, full_blocks + bool(len(remainder)), len(remainder))


def document_stream(encoder, texts: list[str], end_of_text_id: int) -> np.ndarray:
    """The documents' ids, each followed by the end-of-text id, as one array."""
    encodings = encoder.encode_batch_fast(texts, add_special_tokens=False)
    return np.fromiter(chain.from_iterable((*encoding.ids, end_of_text_id) for encoding in encodings), dtype=np.int32)


def blocks_table(tokens: np.ndarray, block_size: int) -> pa.Table:
    """`tokens` cut into consecutive rows of `block_size` (its length is a multiple of it)."""
    count = len(tokens) // block_size
    offsets = pa.array(np.arange(count + 1, dtype=np.int32) * block_size)
    input_ids = pa.ListArray.from_arrays(offsets, pa.array(tokens, pa.int32()))
    return pa.table([input_ids, pa.array(np.full(count, block_size, np.int32))], schema=BLOCKS_SCHEMA)


def split_stats(split: str, documents: int, characters: int, tokens: int, blocks: int, remainder: int) -> dict:
    text_tokens = tokens - documents  # without the end-of-text after each document
    log.info(
        "%s: %d documents, %d tokens, %d blocks, the last one partial with %d tokens (0: none)", split, documents, tokens, blocks, remainder
    )
    return {
        "documents": documents,
        "characters": characters,
        "tokens": tokens,
        "blocks": blocks,
        "remainder_tokens": remainder,
        "characters_per_token": round(characters / text_tokens, 4) if text_tokens else None,
    }
