"""tokenize for causal_lm: a tokenizer trained on train alone, documents joined by end-of-text and cut into blocks."""

import json
import math
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from components.lib.data.contract import BLOCKS_SCHEMA, CAUSAL_LM, CORPUS_SCHEMA, REJECTS_FILE, REJECTS_SCHEMA, SPLITS, STATS_FILE, TASK_KEY
from components.lib.storage.artifacts import read_manifest, staged_output
from components.tokenize import tokenize
from tests.conftest import run_module

# \u0958 (क़), \u095a (ग़), \u095b (ज़) and \u095c (ड़) are precomposed letters that NFKC decomposes.
SENTENCES = [
    "भारत एक विशाल देश है।",
    "यहाँ अनेक भाषाएँ बोली जाती हैं।",
    "हिमालय पर्वत उत्तर में स्थित है।",
    "गंगा नदी को पवित्र माना जाता है।",
    "दिल्ली भारत की राजधानी है।",
    "मुझे सुबह चाय पीना अच्छा लगता है।",
    "बच्चे मैदान में क्रिकेट खेल रहे हैं।",
    "आज मौसम बहुत सुहावना है।",
    "किसान खेतों में मेहनत करते हैं।",
    "पुस्तकालय में बहुत सी किताबें हैं।",
    "मेरी माँ स्वादिष्ट खाना बनाती हैं।",
    "रेलगाड़ी समय पर स्टेशन पहुँची।",
    "हम कल बा\u095bार जाएँगे।",
    "विद्यार्थी परीक्षा की तैयारी कर रहे हैं।",
    "वर्षा ऋतु में हरियाली छा जाती है।",
    "ताजमहल आगरा में है।",
    "शिक्षक ने कक्षा में कहानी सुनाई।",
    "डॉक्टर ने दवा लेने की सलाह दी।",
    "पक्षी आकाश में उ\u095c रहे हैं।",
    "दीवाली रोशनी का त्योहार है।",
    "संगीत मन को शांति देता है।",
    "गाँव के लोग बहुत मिलनसार हैं।",
    "उसने एक नया कंप्यूटर खरीदा।",
    "नदी के किनारे एक पुराना मंदिर है।",
    "सूरज पूर्व दिशा में उगता है।",
    "कृपया दरवाज़ा बंद कर दीजिए।",
    "हमें पानी बचाना चाहिए।",
    "यह सड़क शहर की ओर जाती है।",
    "\u0958लम का\u095a\u095b पर चलती है।",
    "पेड़ हमें ऑक्सीजन देते हैं।",
]
TRAIN_ONLY_WORD, TEST_ONLY_WORD = "झिलमिलपुर", "टमटमगढ़"  # made up, each repeated in one split only


def repeated(word: str) -> str:
    return " ".join([word] * 40)


def word_document(word: str) -> str:
    """The word many times, and a few words built on it: the unigram trainer seeds its pieces only from
    substrings of two or more distinct words, so a word seen alone would never be a candidate."""
    return " ".join([repeated(word), *(word + suffix for suffix in ("ी", "ा", "वासी", "वाला"))])


def documents() -> dict[str, list[str]]:
    train = [" ".join(SENTENCES[start : start + 3]) for start in range(0, 18, 3)] + [word_document(TRAIN_ONLY_WORD)]
    validation = [" ".join(SENTENCES[start : start + 2]) for start in range(18, 24, 2)]
    test = [" ".join(SENTENCES[start : start + 2]) for start in range(24, 30, 2)] + [word_document(TEST_ONLY_WORD)]
    return {"train": train, "validation": validation, "test": test}


def write_corpus(folder: Path, lineage: dict, splits: dict[str, list[str]] | None = None) -> Path:
    """A folder as preprocess `--task causal_lm` writes it, of `documents()` unless `splits` are given."""
    with staged_output(str(folder), extra={"lineage": lineage}) as out:
        for split, texts in (splits or documents()).items():
            rows = {"text": texts, "source_row": [f"{split}.txt:{row}" for row in range(len(texts))]}
            pq.write_table(pa.table(rows, schema=CORPUS_SCHEMA), out / f"{split}.parquet")
        pq.write_table(REJECTS_SCHEMA.empty_table(), out / REJECTS_FILE)
        (out / STATS_FILE).write_text("{}\n")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "data", {TASK_KEY: CAUSAL_LM, "source_fingerprint": "sha256:abc"})


BLOCK_SIZE = 16


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def trained(request, corpus, tmp_path_factory):
    """(tokenizer kind, output folder, StageResult) of tokenize with a tokenizer trained here."""
    out = tmp_path_factory.mktemp(request.param) / "tokens"
    result = tokenize(
        data_uri=str(corpus), output_uri=str(out), tokenizer=request.param, vocab_size=2000, block_size=BLOCK_SIZE, batch_size=2
    )
    return request.param, out, result


def saved_tokenizer(out: Path):
    return AutoTokenizer.from_pretrained(str(out / "tokenizer"))


def blocks(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / f"{split}.parquet").to_pylist()


def expected_stream(tokenizer, texts: list[str]) -> list[int]:
    return [token for text in texts for token in [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]]


def test_the_trained_tokenizer_round_trips_the_devanagari_text_after_nfkc(trained):
    kind, out, _ = trained
    tokenizer = saved_tokenizer(out)
    texts = [text for split in SPLITS for text in documents()[split]] if kind == "bpe" else documents()["train"]
    assert any(unicodedata.normalize("NFKC", text) != text for text in texts)  # NFKC has something to do
    for text in texts:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == unicodedata.normalize("NFKC", text)
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.model_max_length == BLOCK_SIZE


def test_characters_never_seen_in_train_round_trip_with_bpe_and_are_unknown_to_unigram(trained):
    kind, out, _ = trained
    tokenizer = saved_tokenizer(out)
    unseen = "தமிழ் 😀 Ελληνικά, 123  x\ty"
    ids = tokenizer.encode(unseen, add_special_tokens=False)
    if kind == "bpe":  # byte-level: every script
        assert tokenizer.decode(ids) == unseen
    else:
        assert tokenizer.unk_token == "<unk>" and tokenizer.unk_token_id in ids


def test_the_tokenizer_learns_from_the_train_split_only(trained):
    tokenizer = saved_tokenizer(trained[1])
    assert len(tokenizer.encode(repeated(TRAIN_ONLY_WORD), add_special_tokens=False)) <= 41  # a word is one token
    assert len(tokenizer.encode(repeated(TEST_ONLY_WORD), add_special_tokens=False)) > 80  # pieces only


def test_blocks_are_each_splits_documents_with_end_of_text_cut_in_order(trained):
    _, out, _ = trained
    tokenizer = saved_tokenizer(out)
    for split, texts in documents().items():
        rows = blocks(out, split)
        assert [token for row in rows for token in row["input_ids"]] == expected_stream(tokenizer, texts)
        assert [row["length"] for row in rows] == [len(row["input_ids"]) for row in rows]
        assert all(row["length"] == BLOCK_SIZE for row in rows[:-1]) and 0 < rows[-1]["length"] <= BLOCK_SIZE
        assert pq.read_schema(out / f"{split}.parquet").remove_metadata().equals(BLOCKS_SCHEMA)


@pytest.mark.parametrize("kind, literal, decoded", [("bpe", "<|endoftext|>", "<|endoftext|>"), ("base", "[SEP]", "[ sep ]")])
def test_an_end_of_text_written_inside_a_document_is_text_not_a_boundary(kind, literal, decoded, tmp_path):
    """The base tokenizer is uncased WordPiece: the written [SEP] comes back as the text it read."""
    splits = {split: [f"{texts[0]} {literal} {texts[0]}", *texts[1:]] for split, texts in documents().items()}
    corpus = write_corpus(tmp_path / "data", {TASK_KEY: CAUSAL_LM}, splits)
    tokenize(data_uri=str(corpus), output_uri=str(tmp_path / "tokens"), tokenizer=kind, vocab_size=2000, block_size=BLOCK_SIZE)
    tokenizer = saved_tokenizer(tmp_path / "tokens")
    assert tokenizer.eos_token == literal
    for split, texts in splits.items():
        stream = [token for row in blocks(tmp_path / "tokens", split) for token in row["input_ids"]]
        assert stream.count(tokenizer.eos_token_id) == len(texts)  # one after each document, none inside
        first_document = stream[: stream.index(tokenizer.eos_token_id)]
        assert tokenizer.decode(first_document).count(decoded) == 1


def test_stats_agree_with_the_blocks_and_texts(trained):
    kind, out, result = trained
    tokenizer = saved_tokenizer(out)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["task"] == CAUSAL_LM and stats["block_size"] == BLOCK_SIZE
    assert stats["tokenizer"]["kind"] == kind and stats["tokenizer"]["vocab_size"] == len(tokenizer)
    assert stats["tokenizer"]["requested_vocab_size"] == 2000 and stats["tokenizer"]["training_seconds"] >= 0
    remainders = []
    for split, texts in documents().items():
        tokens = len(expected_stream(tokenizer, texts))
        characters = sum(len(text) for text in texts)
        assert stats["splits"][split] == {
            "documents": len(texts),
            "characters": characters,
            "tokens": tokens,
            "blocks": math.ceil(tokens / BLOCK_SIZE),
            "remainder_tokens": tokens % BLOCK_SIZE,
            "characters_per_token": round(characters / (tokens - len(texts)), 4),
        }
        remainders.append(tokens % BLOCK_SIZE)
    assert any(remainders)  # a partial last block was kept somewhere
    assert result.summary["rows"] == {split: entry["blocks"] for split, entry in stats["splits"].items()}
    assert result.parameters == {"tokenized_uri": str(out)} and result.artifact_uri_parameters == {"tokenized_uri": "tokenized"}


def test_lineage_carries_the_input_forward_and_adds_the_tokenizer(trained, corpus):
    kind, out, _ = trained
    lineage = read_manifest(str(out))["lineage"]
    assert lineage == {
        **read_manifest(str(corpus))["lineage"],
        "base_model": "bundled://all-MiniLM-L6-v2",
        "tokenizer": kind,
        "vocab_size": len(saved_tokenizer(out)),
        "block_size": BLOCK_SIZE,
    }
    assert lineage[TASK_KEY] == CAUSAL_LM


def test_the_base_models_tokenizer_ends_documents_with_sep_and_caps_the_block(corpus, tmp_path, caplog):
    out = tmp_path / "tokens"
    result = tokenize(data_uri=str(corpus), output_uri=str(out), block_size=4096, batch_size=3)
    assert "--block_size 4096 is above what bundled://all-MiniLM-L6-v2 takes; using 512, the model's limit" in caplog.text
    tokenizer = saved_tokenizer(out)
    assert tokenizer.eos_token == "[SEP]" and result.summary["block_size"] == 512
    stats = json.loads((out / "stats.json").read_text())
    assert stats["tokenizer"] == {"kind": "base", "vocab_size": len(tokenizer), "requested_vocab_size": None, "training_seconds": None}
    for split, texts in documents().items():
        rows = blocks(out, split)
        assert [token for row in rows for token in row["input_ids"]] == expected_stream(tokenizer, texts)
        assert all(row["length"] == 512 for row in rows[:-1])


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--num_folds", "2"], "error: --num_folds 2: folds are for classification; causal_lm data keeps its train/validation/test splits"),
        (
            ["--tokenizer", "bpe", "--vocab_size", "100"],
            "error: --vocab_size: must be at least 258 (256 base symbols and the special tokens), got 100",
        ),
        (["--tokenizer", "unigram", "--block_size", "4"], "error: --block_size: must be at least 8, got 4"),
    ],
    ids=["folds", "vocab too small", "block too small"],
)
def test_causal_lm_refusals_are_one_line(flags, expected, corpus, tmp_path):
    result = run_module("components.tokenize", "--data_uri", str(corpus), "--output_uri", str(tmp_path / "out"), *flags)
    assert result.returncode == 2
    assert result.stderr.strip() == expected


def test_a_trained_tokenizer_is_refused_for_classification(prepared_data, tmp_path, tiny_model):
    result = run_module("components.tokenize", "--data_uri", str(prepared_data[0]), "--output_uri", str(tmp_path / "out"),
                        "--base_model", str(tiny_model), "--tokenizer", "bpe")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --tokenizer bpe: only for causal_lm data; a classifier needs its base model's vocabulary (--tokenizer base)"
    )
