"""Data between stages: readers of raw inputs, cleaning, labels, the tokenized contract and batching."""
