"""preprocess: formats, label mapping, cleaning, deduplication, splits and the stats it writes."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.lib.data.labels import LabelMapper, parse_rating_buckets
from components.lib.data.readers import split_from_name
from components.lib.data.textclean import clean_text
from components.lib.errors import UserError
from components.preprocess import preprocess
from tests.conftest import LABELS, labelled_rows, run_module, write_parquet

SPLITS = ("train", "validation", "test")


def read_splits(out) -> dict[str, list[dict]]:
    return {split: pq.read_table(out / f"{split}.parquet").to_pylist() for split in SPLITS}


def stats_of(out) -> dict:
    return json.loads((out / "stats.json").read_text())


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet", "csv.gz"])
def test_every_format_reads_the_same_rows(fmt, tmp_path):
    rows = labelled_rows(60)
    path = tmp_path / f"reviews.{fmt}"
    if fmt == "parquet":
        write_parquet(path, rows)
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    else:
        separator = "\t" if fmt == "tsv" else ","
        text = "text" + separator + "label\n" + "".join(f'"{row["text"]}"{separator}{row["label"]}\n' for row in rows)
        if fmt.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    preprocess(input_uri=str(path), output_uri=str(tmp_path / "out"))
    splits = read_splits(tmp_path / "out")
    assert sorted(row["text"] for split in splits.values() for row in split) == sorted(row["text"] for row in rows)
    assert stats_of(tmp_path / "out")["split_method"] == "stratified"


def test_a_folder_of_shards_with_named_splits_keeps_the_source_splits(tmp_path):
    source = tmp_path / "shards"
    write_parquet(source / "train-00000.parquet", labelled_rows(60, seed=1)[:30])
    write_parquet(source / "train-00001.parquet", labelled_rows(60, seed=1)[30:])
    write_parquet(source / "dev.parquet", labelled_rows(15, seed=2))
    write_parquet(source / "test.parquet", labelled_rows(15, seed=3))
    preprocess(input_uri=str(source), output_uri=str(tmp_path / "out"))
    stats = stats_of(tmp_path / "out")
    assert stats["split_method"] == "source files"
    assert {split: stats["splits"][split]["rows"] for split in SPLITS} == {"train": 60, "validation": 15, "test": 15}
    assert read_splits(tmp_path / "out")["train"][0]["source_row"].startswith("train-00000.parquet:row ")


def test_split_names_are_read_from_file_names():
    assert split_from_name("drugsComTrain.tsv") == "train"
    assert split_from_name("drugsComTest.tsv") == "test"
    assert split_from_name("dev-00001.jsonl.gz") == "validation"
    assert split_from_name("validation.parquet") == "validation"
    assert split_from_name("reviews.csv") is None
    assert split_from_name("contest.csv") is None


def test_the_stratified_split_is_seeded_and_keeps_class_balance(tmp_path):
    path = write_parquet(tmp_path / "all.parquet", labelled_rows(300))
    preprocess(input_uri=str(path), output_uri=str(tmp_path / "a"), seed=7, validation_ratio=0.2, test_ratio=0.2)
    preprocess(input_uri=str(path), output_uri=str(tmp_path / "b"), seed=7, validation_ratio=0.2, test_ratio=0.2)
    preprocess(input_uri=str(path), output_uri=str(tmp_path / "c"), seed=8, validation_ratio=0.2, test_ratio=0.2)
    a, b, c = (read_splits(tmp_path / name) for name in "abc")
    assert a == b and a != c
    for split, share in (("validation", 0.2), ("test", 0.2), ("train", 0.6)):
        counts = stats_of(tmp_path / "a")["splits"][split]["class_counts"]
        assert counts == {label: int(100 * share) for label in LABELS}


def test_rating_buckets_map_numbers_to_labels(tmp_path):
    rows = [{"text": f"review {index}", "stars": stars} for index, stars in enumerate([1, 2, 4, 5, 6, 7, 9, 10, 3, 8, 6.5, 11] * 4)]
    path = write_parquet(tmp_path / "ratings.parquet", rows)
    preprocess(
        input_uri=str(path),
        output_uri=str(tmp_path / "out"),
        label_column="stars",
        rating_buckets="negative:1-4,neutral:5-6,positive:7-10",
        max_reject_share=1,  # a sixth of the rows fits no bucket, on purpose
    )
    stats = stats_of(tmp_path / "out")
    assert stats["labels"] == LABELS
    assert stats["rejected_by_reason"] == {"unknown_label": 8}  # 6.5 and 11 fit no bucket
    assert stats["label_rule"] == "labels are ratings mapped by --rating_buckets (negative 1-4, neutral 5-6, positive 7-10)"
    assert pq.read_table(tmp_path / "out" / "rejects.parquet").column("detail").to_pylist()[0] == (
        "'6.5' is in none of the --rating_buckets ranges (negative:1-4, neutral:5-6, positive:7-10)"
    )
    kept = [row for split in read_splits(tmp_path / "out").values() for row in split]
    by_text = {row["text"]: row["label"] for row in kept}
    assert by_text["review 0"] == 0 and by_text["review 3"] == 1 and by_text["review 7"] == 2


def test_rating_buckets_are_checked():
    assert [bucket.name for bucket in parse_rating_buckets("neg:1-4, pos:5-10")] == ["neg", "pos"]
    with pytest.raises(UserError, match="overlap"):
        parse_rating_buckets("neg:1-5,pos:5-10")
    with pytest.raises(UserError, match="cannot read"):
        parse_rating_buckets("neg=1..4")


def test_label_names_auto_and_case_insensitive_matching(tmp_path):
    rows = [{"text": f"text {index}", "label": label} for index, label in enumerate(["Spam", "ham", "HAM", "spam"] * 9)]
    path = write_parquet(tmp_path / "spam.parquet", rows)
    preprocess(input_uri=str(path), output_uri=str(tmp_path / "auto"), label_names="auto")
    assert json.loads((tmp_path / "auto" / "labels.json").read_text()) == {"labels": ["HAM", "Spam", "ham", "spam"]}
    preprocess(input_uri=str(path), output_uri=str(tmp_path / "named"), label_names="ham,spam")
    assert stats_of(tmp_path / "named")["rows_rejected"] == 0
    assert LabelMapper.from_flags("ham,spam", "").to_id(" SPAM ") == 1


def test_cleaning():
    assert clean_text("I&#039;m  fine&amp;#039;s\n\n ok ") == "I'm fine's ok"
    assert clean_text("ﬁne Ｆｕｌｌ\u00a0width") == "fine Full width"
    assert (
        clean_text("see https://x.co/a?b=1 and www.y.org @bob_1 says hi bob@mail.com", mask_urls=True, mask_mentions=True)
        == "see http and http @user says hi bob@mail.com"
    )
    assert clean_text("keep @bob and http://x.y") == "keep @bob and http://x.y"
    assert clean_text("\x00bell\x07 ok") == "bell ok"


def test_duplicates_are_dropped_and_counted(tmp_path):
    rows = labelled_rows(30) + [{"text": "  " + labelled_rows(30)[0]["text"].upper() + " ", "label": "positive"}]
    path = write_parquet(tmp_path / "dups.parquet", rows)
    preprocess(input_uri=str(path), output_uri=str(tmp_path / "out"))
    stats = stats_of(tmp_path / "out")
    assert stats["rejected_by_reason"] == {"duplicate_text": 1}
    assert stats["rows_in"] == 31 == stats["rows_kept"] + stats["rows_rejected"]


def test_stats_hold_lengths_balance_and_lineage(tmp_path, sample_source):
    preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "out"))
    stats = stats_of(tmp_path / "out")
    assert set(stats["splits"]["train"]["text_chars"]) == {"p50", "p90", "p95", "p99", "max"}
    assert sum(stats["splits"]["train"]["class_counts"].values()) == stats["splits"]["train"]["rows"]
    assert stats["source_uri"] == str(sample_source) and len(stats["source_fingerprint"]) == 64
    manifest = json.loads((tmp_path / "out" / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {
        "train.parquet",
        "validation.parquet",
        "test.parquet",
        "labels.json",
        "stats.json",
        "rejects.parquet",
        "label_issues.parquet",
    }
    assert manifest["lineage"]["source_fingerprint"] == stats["source_fingerprint"]


def test_a_changed_source_is_refused_when_its_fingerprint_was_pinned(tmp_path, sample_source):
    result = run_module(
        "components.preprocess",
        "--input_uri",
        str(sample_source),
        "--output_uri",
        str(tmp_path / "out"),
        "--expected_source_fingerprint",
        "f" * 64,
    )
    assert result.returncode == 2
    assert "the data changed since the run was set up" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_hugging_face_ids_fail_with_one_line_offline(tmp_path):
    result = run_module(
        "components.preprocess",
        "--input_uri",
        "hf://imdb",
        "--output_uri",
        str(tmp_path / "out"),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: hf://imdb: cannot load it from the Hugging Face Hub (")
    assert line.endswith("check the id and the network, or download it and pass a path")


def test_bad_ratios_are_refused(tmp_path, sample_source):
    with pytest.raises(UserError, match="validation_ratio plus --test_ratio"):
        preprocess(input_uri=str(sample_source), output_uri=str(tmp_path / "out"), validation_ratio=0.5, test_ratio=0.45)


def test_help_lists_every_flag():
    result = run_module("components.preprocess", "--help")
    assert result.returncode == 0
    for flag in ("--input_uri", "--output_uri", "--text_column", "--label_column", "--rating_buckets", "--mask_urls", "--seed"):
        assert flag in result.stdout + result.stderr  # Fire writes help to stderr when not on a terminal


def test_wrong_flag_value_is_one_line(tmp_path, sample_source):
    result = run_module("components.preprocess", "--input_uri", str(sample_source), "--output_uri", str(tmp_path), "--max_chars", "lots")
    assert result.returncode == 2 and result.stderr.strip() == "error: --max_chars: expected an integer, got 'lots'"


def test_rows_with_unicode_and_arrow_types_survive_the_round_trip(tmp_path):
    rows = [{"text": f"émoji 😀 {index}", "label": LABELS[index % 3]} for index in range(30)]
    table = pa.Table.from_pylist(rows).cast(pa.schema([("text", pa.large_string()), ("label", pa.string())]))
    pq.write_table(table, tmp_path / "large.parquet")
    preprocess(input_uri=str(tmp_path / "large.parquet"), output_uri=str(tmp_path / "out"))
    assert stats_of(tmp_path / "out")["rows_kept"] == 30


def test_a_byte_order_mark_inside_a_text_is_removed():
    """Joined files (`cat a.csv b.csv`) leave the second file's mark inside a text: invisible, and a different string."""
    assert clean_text("\ufeffgreat relief") == "great relief"
    assert clean_text("great\ufeff relief") == "great relief"


def test_the_first_label_decides_between_names_and_indices():
    by_index = LabelMapper.from_flags("negative,neutral,positive", "")
    assert [by_index.to_id(raw) for raw in ("2", "0", "1.0", "3", "positive")] == [2, 0, 1, None, None]
    by_name = LabelMapper.from_flags("negative,neutral,positive", "")
    assert [by_name.to_id(raw) for raw in ("Positive", "1", "negative")] == [2, None, 0]
    assert "by name" in by_name.rule() and "indices" in by_index.rule()
