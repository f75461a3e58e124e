"""register's re-scoring of the production version on this run's test split."""

import shutil

import numpy as np
from transformers import AutoTokenizer

from components import register
from components.lib.labels import LABELS_FILE


def test_production_is_rescored_with_its_own_tokenizers_pad_id(prepared_data, tiny_model, tmp_path, monkeypatch):
    data_dir = prepared_data[1]
    version_dir = tmp_path / "version"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.pad_token = "[MASK]"  # a pad id other than 0, which the old code always used
    tokenizer.save_pretrained(version_dir)
    shutil.copyfile(data_dir / LABELS_FILE, version_dir / LABELS_FILE)
    used = {}

    def fake_logits(session, split, batch_size, pad_id):
        used["pad_id"] = pad_id
        return np.zeros((len(split), 3), dtype=np.float32)

    monkeypatch.setattr(register, "cpu_session", lambda path: None)
    monkeypatch.setattr(register, "session_logits", fake_logits)
    register.score_version(version_dir, data_dir, "macro_f1")
    assert used["pad_id"] == tokenizer.convert_tokens_to_ids("[MASK]") != 0
