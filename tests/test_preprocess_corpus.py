"""preprocess --task causal_lm: an unlabelled corpus (records or .txt files) into document-level splits."""

import json
import random

import pyarrow.parquet as pq
import pytest

from components.lib.data.contract import CAUSAL_LM, CORPUS_SCHEMA, task_of
from components.lib.data.corpus import minhash, shingle_hashes
from components.lib.errors import UserError
from components.lib.storage.artifacts import read_manifest
from components.preprocess import preprocess
from tests.conftest import run_module

SPLITS = ("train", "validation", "test")
HINDI = [
    "भारत एक विशाल देश है जहाँ अनेक भाषाएँ बोली जाती हैं।",
    "गंगा नदी हिमालय से निकलकर बंगाल की खाड़ी में गिरती है।",
    "मेरे दादाजी हर सुबह बगीचे में टहलने जाते हैं।",
    "बच्चों ने विद्यालय के वार्षिक उत्सव में नाटक प्रस्तुत किया।",
    "वर्षा ऋतु में खेतों में हरियाली छा जाती है।",
    "पुस्तकालय में शांति बनाए रखना सभी का कर्तव्य है।",
    "रसोई में माँ ने स्वादिष्ट पराठे और आलू की सब्जी बनाई।",
    "दिल्ली की सर्दियों में कोहरा अक्सर रेलगाड़ियों को देर करा देता है।",
    "वैज्ञानिकों ने चंद्रमा पर पानी के अंश खोजे हैं।",
    "किसान ने बाजार में अपनी फसल अच्छे दाम पर बेची।",
    "हमारे गाँव के मेले में हर साल कठपुतली का खेल होता है।",
    "संगीत की कक्षा में विद्यार्थी तबला और सितार सीखते हैं।",
]


def hindi_document(index: int) -> str:
    """Three sentences in two paragraphs; documents next to each other share two sentences (similar, not near-duplicates)."""
    first, second, third = (HINDI[(index + offset) % len(HINDI)] for offset in range(3))
    return f"{first} {second}\n\n{third}"


def random_documents(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(400)]
    return [" ".join(rng.choice(words) for _ in range(30)) + ".\n" + " ".join(rng.choice(words) for _ in range(20)) for _ in range(count)]


def write_jsonl(path, texts: list[str], column: str = "body"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({column: text, "id": index}) + "\n" for index, text in enumerate(texts)))
    return path


def write_txt_folder(folder, documents: dict[str, str | bytes]):
    for name, content in documents.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return folder


def corpus(tmp_path, source, **flags) -> tuple[dict, dict[str, list[dict]]]:
    out = tmp_path / "out"
    preprocess(input_uri=str(source), output_uri=str(out), task="causal_lm", **{"text_column": "body", **flags})
    splits = {split: pq.read_table(out / f"{split}.parquet").to_pylist() for split in SPLITS}
    return json.loads((out / "stats.json").read_text()), splits


def rejects_of(tmp_path) -> list[dict]:
    return pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()


def test_every_document_lands_whole_in_exactly_one_split(tmp_path):
    documents = {f"hi/{index:02d}.txt": hindi_document(index) for index in range(len(HINDI))}
    documents |= {f"en-{index:02d}.txt": text for index, text in enumerate(random_documents(28))}
    stats, splits = corpus(tmp_path, write_txt_folder(tmp_path / "docs", documents), validation_ratio=0.2, test_ratio=0.2)
    where = [(row["source_row"], split) for split in SPLITS for row in splits[split]]
    assert sorted(name for name, _ in where) == sorted(documents)  # each file once: no document split up, none lost
    kept = {row["source_row"]: row["text"] for split in SPLITS for row in splits[split]}
    assert kept["hi/00.txt"] == f"{HINDI[0]} {HINDI[1]}\n{HINDI[2]}"  # whole, its paragraph break kept
    assert all(stats["splits"][split]["documents"] == len(splits[split]) > 0 for split in SPLITS)
    assert stats["splits"]["train"]["characters"] == sum(len(row["text"]) for row in splits["train"])
    assert stats["rows_in"] == stats["rows_kept"] + stats["rows_rejected"] == len(documents)
    assert stats["split_method"] == "random by document"


def test_the_split_is_seeded(tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", random_documents(40))
    assignments = []
    for run, seed in enumerate((7, 7, 8)):
        _, splits = corpus(tmp_path / str(run), source, seed=seed)
        assignments.append({split: sorted(row["source_row"] for row in rows) for split, rows in splits.items()})
    assert assignments[0] == assignments[1] != assignments[2]


def test_the_source_files_splits_are_kept_and_no_label_column_is_needed(tmp_path):
    texts = random_documents(30)
    for split, part in (("train", texts[:20]), ("validation", texts[20:25]), ("test", texts[25:])):
        write_jsonl(tmp_path / "src" / f"{split}.jsonl", part)
    stats, splits = corpus(tmp_path, tmp_path / "src")
    assert stats["split_method"] == "source files"
    assert {split: {row["source_row"].split(".")[0] for row in rows} for split, rows in splits.items()} == {
        split: {split} for split in SPLITS
    }


def near_duplicate_corpus(tmp_path):
    """Hindi documents and an English one, then a copy of the English one in capitals, and two Hindi ones with one word changed."""
    english = random_documents(1, seed=3)[0]
    texts = [hindi_document(index) for index in range(len(HINDI))] + [english, english.upper()]
    texts += [hindi_document(0).replace("विशाल", "बड़ा"), hindi_document(4).replace("हरियाली", "घास")]
    return write_jsonl(tmp_path / "corpus.jsonl", texts)


def test_exact_and_near_duplicates_are_quarantined_counted_and_do_not_count_as_bad_rows(tmp_path):
    stats, splits = corpus(tmp_path, near_duplicate_corpus(tmp_path))  # 2 near of 16: over the default --max_reject_share 0.1
    assert stats["rejected_by_reason"] == {"duplicate_text": 1, "near_duplicate": 2}
    assert (stats["exact_duplicates"], stats["near_duplicates"]) == (1, 2)
    rejects = {row["position"]: row for row in rejects_of(tmp_path)}
    assert rejects["line 14"]["reason"] == "duplicate_text"
    assert [rejects[line]["reason"] for line in ("line 15", "line 16")] == ["near_duplicate"] * 2
    assert rejects["line 15"]["detail"].startswith("estimated Jaccard similarity 0.")
    assert rejects["line 15"]["detail"].endswith("to corpus.jsonl:line 1, which is kept")
    assert rejects["line 16"]["detail"].endswith("to corpus.jsonl:line 5, which is kept")
    kept = {row["source_row"] for rows in splits.values() for row in rows}
    assert {f"corpus.jsonl:line {line}" for line in range(1, 14)} == kept  # line 2 shares two of line 1's three sentences: kept
    assert stats["rows_in"] == 16 == stats["rows_kept"] + stats["rows_rejected"]


def test_a_near_duplicate_threshold_of_zero_keeps_near_duplicates(tmp_path):
    stats, _ = corpus(tmp_path, near_duplicate_corpus(tmp_path), near_duplicate_threshold=0)
    assert stats["rejected_by_reason"] == {"duplicate_text": 1}


def true_jaccard(first: str, second: str) -> float:
    first_shingles, second_shingles = set(shingle_hashes(first).tolist()), set(shingle_hashes(second).tolist())
    return len(first_shingles & second_shingles) / len(first_shingles | second_shingles)


def test_minhash_estimates_the_jaccard_similarity_of_character_5_grams():
    changed = hindi_document(0).replace("विशाल", "बड़ा")
    assert shingle_hashes("ab  cd\nef").tolist() == shingle_hashes("AB CD EF").tolist()  # casefolded, whitespace as one space
    assert len(shingle_hashes("abcdefg")) == 3 and len(shingle_hashes("ab")) == 1
    for first, second in ((hindi_document(0), changed), (hindi_document(0), hindi_document(1)), (hindi_document(0), hindi_document(6))):
        estimate = (minhash(first) == minhash(second)).mean()
        assert abs(estimate - true_jaccard(first, second)) < 0.1
    assert true_jaccard(hindi_document(0), changed) > 0.8 > true_jaccard(hindi_document(0), hindi_document(1))


def test_cleaning_applies_nfkc_to_devanagari_and_keeps_line_breaks(tmp_path):
    raw = "\u0958िला  &amp;\x07 महल\r\n\r\n\r\n   \n दूसरा   अनुच्छेद\nतीसरी पंक्ति"
    documents = {"fort.txt": raw} | {f"other-{index}.txt": hindi_document(index) for index in range(1, 6)}
    _, splits = corpus(tmp_path, write_txt_folder(tmp_path / "docs", documents))
    [text] = [row["text"] for rows in splits.values() for row in rows if row["source_row"] == "fort.txt"]
    assert text == "\u0915\u093cिला & महल\nदूसरा अनुच्छेद\nतीसरी पंक्ति"
    assert "\u0958" not in text


def test_the_output_is_a_committed_causal_lm_corpus(tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", [hindi_document(index) for index in range(len(HINDI))])
    result = preprocess(input_uri=str(source), output_uri=str(tmp_path / "out"), task="causal_lm", text_column="body")
    manifest = read_manifest(str(tmp_path / "out"))
    assert task_of(manifest) == CAUSAL_LM
    assert manifest["lineage"]["source_uri"] == str(source) and len(manifest["lineage"]["source_fingerprint"]) == 64
    assert manifest["lineage"]["text_cleaning"] == {"mask_urls": False, "mask_mentions": False}
    assert set(manifest["files"]) == {"train.parquet", "validation.parquet", "test.parquet", "rejects.parquet", "stats.json"}
    for split in SPLITS:
        assert pq.read_schema(tmp_path / "out" / f"{split}.parquet").remove_metadata().equals(CORPUS_SCHEMA)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["task"] == CAUSAL_LM and "labels" not in stats
    assert {"documents", "characters", "document_chars"} <= set(stats["splits"]["test"])
    assert result.summary == {
        "stage": "preprocess",
        "output_uri": str(tmp_path / "out"),
        "rows_in": 12,
        "rows_kept": 12,
        "rows_rejected": 0,
    }
    assert result.artifact_metadata["dataset"]["task"] == CAUSAL_LM


def test_files_that_do_not_decode_or_are_empty_too_long_or_binary_are_quarantined(tmp_path):
    documents = {f"ok-{index}.txt": hindi_document(index) for index in range(6)}
    documents |= {"cp1252.txt": "café crème".encode("cp1252"), "empty.txt": "", "blank.txt": " \n\t\n", "long.txt": "क" * 300}
    documents |= {"report.txt": b"%PDF-1.7\n" + bytes(range(256)) * 4}
    stats, splits = corpus(tmp_path, write_txt_folder(tmp_path / "docs", documents), max_chars=200, max_reject_share=1)
    reasons = {row["source"]: row["reason"] for row in rejects_of(tmp_path)}
    assert reasons == {
        "blank.txt": "empty_text",
        "cp1252.txt": "undecodable_text",
        "empty.txt": "empty_text",
        "long.txt": "text_too_long",
        "report.txt": "unreadable_file",
    }
    assert stats["rows_in"] == 11 == stats["rows_kept"] + stats["rows_rejected"]
    assert sum(len(rows) for rows in splits.values()) == 6


def test_a_file_in_another_encoding_reads_with_the_flag(tmp_path):
    documents = {"cp1252.txt": "café crème brûlée".encode("cp1252")}
    documents |= {f"latin-{index}.txt": text.encode("cp1252") for index, text in enumerate(random_documents(4))}
    _, splits = corpus(tmp_path, write_txt_folder(tmp_path / "docs", documents), encoding="cp1252")
    assert "café crème brûlée" in [row["text"] for rows in splits.values() for row in rows]


def test_a_corpus_too_small_for_three_splits_fails_saying_how_many_documents(tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", [hindi_document(0), hindi_document(5)])
    with pytest.raises(UserError, match=r"the (validation|test) split is empty: 2 documents read, 2 kept \(0 rejected\)"):
        corpus(tmp_path, source)


def test_classification_still_refuses_txt_files(tmp_path):
    folder = write_txt_folder(tmp_path / "docs", {"a.txt": "some text"})
    with pytest.raises(UserError, match=r"a.txt: unsupported file type; use CSV, TSV, JSON, JSON Lines or Parquet \(optionally"):
        preprocess(input_uri=str(folder), output_uri=str(tmp_path / "out"))


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--augment_factor", "1"], "error: --augment_factor: EDA augmentation is for labelled texts; with --task causal_lm pass 0"),
        (["--rating_buckets", "neg:1-4,pos:5-10"], "error: --rating_buckets: maps ratings to labels, and --task causal_lm reads no labels"),
        (
            ["--text_column", "content"],
            "error: {source}: no column 'content' (columns: 'body', 'id'); pass --text_column with the right name",
        ),
        (["--near_duplicate_threshold", "1"], "error: --near_duplicate_threshold: must be at least 0 (off) and below 1, got 1.0"),
        (["--near_duplicate_threshold", "-0.1"], "error: --near_duplicate_threshold: must be at least 0 (off) and below 1, got -0.1"),
        (
            ["--task", "causal"],
            "error: --task: must be one of sequence_classification, causal_lm, multi_label_classification; got 'causal'",
        ),
    ],
)
def test_refusals_are_one_line_and_exit_status_2(flags, expected, tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", [hindi_document(index) for index in range(len(HINDI))])
    defaults = {"--task": "causal_lm", "--text_column": "body"}
    arguments = ["--input_uri", str(source), "--output_uri", str(tmp_path / "out"), *flags]
    arguments += [part for flag, value in defaults.items() if flag not in flags for part in (flag, value)]
    result = run_module("components.preprocess", *arguments)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(expected.format(source=source))
