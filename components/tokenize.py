"""tokenize: clean splits in, token ids out, with the tokenizer saved beside them.

    python -m components.tokenize --data_uri runs/x/data --output_uri runs/x/tokens \\
        --base_model bundled://all-MiniLM-L6-v2 --max_length 128

Uses the base model's fast tokenizer, truncates to `max_length` (capped at the model's own limit)
and pads nothing: padding happens per batch at training time. Works one record batch at a time,
so memory does not grow with the data. The tokenizer is saved under `tokenizer/` so that train,
export and serving all use the identical one.

The task comes from the input's lineage. A causal_lm corpus (preprocess `--task causal_lm`) is cut
into blocks of `--block_size` tokens instead, with the base model's tokenizer or one trained on the
train split (`--tokenizer bpe|unigram`): components/lib/data/lm_tokenize.py.
"""

from __future__ import annotations

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import BASE_MODEL, TRUST_REMOTE_CODE, takes_common_flags
from components.lib.data.contract import require_output_of
from components.lib.data.folds import check_fold_flags
from components.lib.data.labelled_tokenize import AUTO_LENGTH
from components.lib.data.lm_tokenize import check_corpus_flags
from components.lib.errors import UserError
from components.lib.stage_flags import TokenizeFlags
from components.lib.storage.artifacts import read_manifest
from components.lib.tasks import task_for


@takes_common_flags
def tokenize(
    *,
    data_uri: str,
    output_uri: str,
    base_model: str = BASE_MODEL.default,
    max_length: int = AUTO_LENGTH,
    tokenizer: str = "base",
    vocab_size: int = 8000,
    block_size: int = 128,
    batch_size: int = 4096,
    num_folds: int = 0,
    fold: int = 0,
    fold_seed: int = 0,
    trust_remote_code: bool = TRUST_REMOTE_CODE.default,
    executor_input: str = "",
) -> StageResult:
    """Tokenize every split with the base model's fast tokenizer, without padding; cut causal_lm corpora into blocks.

    Args:
      data_uri: Folder (local or s3://) written by preprocess.
      output_uri: Folder (local or s3://) for the tokenized splits and the tokenizer.
      max_length: Longest token sequence kept, within the model's limit; 0: the train split's 99th percentile, rounded up to 8 (logged).
      tokenizer: causal_lm only: base (the base model's), or bpe / unigram trained on the train split; classification needs base.
      vocab_size: causal_lm only, with --tokenizer bpe or unigram: size of the trained vocabulary (at least 258).
      block_size: causal_lm only: tokens per training block; capped at the model's limit with --tokenizer base.
      batch_size: Rows tokenized per record batch; bounds memory.
      num_folds: K-fold cross-validation: pool train and validation, cut them into this many stratified folds; 0: keep the splits.
      fold: With num_folds: this fold (0..K-1) is the validation split, the others the train split; test is untouched.
      fold_seed: Seed of the folds' shuffle.
    """
    if max_length != AUTO_LENGTH and max_length < 8:
        raise UserError(f"--max_length: must be at least 8 (or {AUTO_LENGTH}: chosen from the data), got {max_length}")
    if batch_size < 1:
        raise UserError(f"--batch_size: must be positive, got {batch_size}")
    check_fold_flags(num_folds, fold)
    check_corpus_flags(tokenizer, vocab_size, block_size)
    require_output_of("preprocess", data_uri, "--data_uri")
    task = task_for(read_manifest(data_uri), data_uri)
    flags = TokenizeFlags(data_uri, output_uri, base_model, max_length, tokenizer, vocab_size, block_size, batch_size,
                          num_folds, fold, fold_seed, trust_remote_code)  # fmt: skip
    return task.tokenize(flags)


if __name__ == "__main__":
    run_stage(tokenize)
