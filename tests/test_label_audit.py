"""preprocess's label audit: planted wrong labels are ranked first in label_issues.parquet, and evaluate's report
shows the most suspect."""

import json

import pyarrow.parquet as pq
import pytest

from components.lib.data.contract import LABEL_ISSUES_FILE, STATS_FILE
from components.preprocess import preprocess
from tests.conftest import LABELS, labelled_rows, run_module, write_parquet

PLANTED = 15


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> dict:
    """300 labelled texts, 15 of them given another class's label, preprocessed."""
    root = tmp_path_factory.mktemp("audit")
    rows = labelled_rows(300, seed=11)
    flipped = set()
    for index in range(0, 300, 20):  # every 20th row, of every class in turn
        rows[index]["label"] = LABELS[(LABELS.index(rows[index]["label"]) + 1) % 3]
        flipped.add(rows[index]["text"])
    write_parquet(root / "reviews.parquet", rows)
    preprocess(input_uri=str(root / "reviews.parquet"), output_uri=str(root / "data"))
    return {"root": root, "flipped": flipped}


def test_planted_wrong_labels_are_ranked_first(audited):
    issues = pq.read_table(audited["root"] / "data" / LABEL_ISSUES_FILE).to_pylist()
    top = [row["text"] for row in issues[:20]]
    assert len(audited["flipped"] & set(top)) >= 10, f"{len(audited['flipped'] & set(top))} of {PLANTED} planted in the top 20"
    assert set(top[:10]) <= audited["flipped"]  # the ten most suspect were all planted (measured: 11 found, all planted)
    assert [row["rank"] for row in issues] == list(range(1, len(issues) + 1))
    assert {row["split"] for row in issues} <= {"train", "validation", "test"} and all(
        row["label"] != row["suggested"] for row in issues[:10]
    )
    stats = json.loads((audited["root"] / "data" / STATS_FILE).read_text())["label_issues"]
    assert stats["found"] == len(issues) and stats["rows_audited"] == 300 and len(stats["top"]) == 10


def test_the_audit_is_off_at_zero_folds_and_one_fold_is_refused(audited, tmp_path):
    preprocess(input_uri=str(audited["root"] / "reviews.parquet"), output_uri=str(tmp_path / "data"), label_audit_folds=0)
    assert not (tmp_path / "data" / LABEL_ISSUES_FILE).exists()
    assert "label_issues" not in json.loads((tmp_path / "data" / STATS_FILE).read_text())
    result = run_module("components.preprocess", "--input_uri", str(audited["root"] / "reviews.parquet"), "--output_uri",
                        str(tmp_path / "refused"), "--label_audit_folds", "1")  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().endswith("--label_audit_folds: must be 0 (no audit) or at least 2, got 1")
    assert not (tmp_path / "refused").exists()


def test_a_class_with_fewer_rows_than_folds_skips_the_audit_and_says_so(tmp_path, caplog):
    rows = labelled_rows(60, seed=2)[:42] + [{"text": "okay fine plain text", "label": "neutral"}]
    rows = [row for row in rows if row["label"] != "neutral"] + rows[-1:]  # one neutral row
    write_parquet(tmp_path / "few.parquet", rows)
    preprocess(input_uri=str(tmp_path / "few.parquet"), output_uri=str(tmp_path / "data"), allow_missing_classes=True)
    assert not (tmp_path / "data" / LABEL_ISSUES_FILE).exists()
    assert "label audit: fewer rows than its 5 folds of 'neutral' (1); not run" in caplog.text


def test_above_the_cap_a_seeded_sample_is_audited_and_the_log_says_so(audited, tmp_path, monkeypatch, caplog):
    from components.lib.data import label_audit

    monkeypatch.setattr(label_audit, "MAX_AUDITED_ROWS", 120)
    preprocess(input_uri=str(audited["root"] / "reviews.parquet"), output_uri=str(tmp_path / "data"))
    stats = json.loads((tmp_path / "data" / STATS_FILE).read_text())["label_issues"]
    assert 80 <= stats["rows_audited"] <= 160 and "label audit: 300 rows; auditing a random 40% of them, about 120 (seed 42)" in caplog.text
    issues = pq.read_table(tmp_path / "data" / LABEL_ISSUES_FILE)
    assert issues.num_rows == stats["found"] and len(set(issues.column("source_row").to_pylist())) == issues.num_rows


def test_dropping_label_issues_moves_the_train_suspects_to_the_rejects_and_keeps_validation_and_test_whole(audited, tmp_path, monkeypatch):
    monkeypatch.setattr("components.lib.data.label_audit.READ_BATCH_ROWS", 40)  # rows are found by their index across batches
    kept = audited["root"] / "data"
    preprocess(input_uri=str(audited["root"] / "reviews.parquet"), output_uri=str(tmp_path / "data"), drop_label_issues=True)
    issues = pq.read_table(tmp_path / "data" / LABEL_ISSUES_FILE).to_pylist()
    in_train = {row["source_row"] for row in issues if row["split"] == "train"}
    assert in_train and len(in_train) < len(issues)  # some suspects are in validation or test, and stay there
    before, after = (pq.read_table(folder / "train.parquet").column("source_row").to_pylist() for folder in (kept, tmp_path / "data"))
    assert after == [row for row in before if row not in in_train]  # only the suspects left, in the same order
    for split in ("validation", "test"):
        assert pq.read_table(tmp_path / "data" / f"{split}.parquet").equals(pq.read_table(kept / f"{split}.parquet"))
    rejected = [row for row in pq.read_table(tmp_path / "data" / "rejects.parquet").to_pylist() if row["reason"] == "label_issue"]
    assert {f"{row['source']}:{row['position']}" for row in rejected} == in_train  # nothing lost: each is in the rejects
    assert all("the cross-fit suggests" in row["detail"] for row in rejected)
    stats = json.loads((tmp_path / "data" / STATS_FILE).read_text())
    assert stats["label_issues"]["dropped_from_train"] == len(in_train) and stats["rejected_by_reason"]["label_issue"] == len(in_train)
    assert stats["splits"]["train"]["rows"] == len(after) == sum(stats["splits"]["train"]["class_counts"].values())
    assert stats["rows_in"] == stats["rows_kept"] + stats["rows_rejected"]


def test_dropping_label_issues_without_the_audit_is_refused_in_one_line(audited, tmp_path):
    result = run_module("components.preprocess", "--input_uri", str(audited["root"] / "reviews.parquet"), "--output_uri",
                        str(tmp_path / "refused"), "--label_audit_folds", "0", "--drop_label_issues")  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --drop_label_issues: drops the rows the label audit finds; it needs --label_audit_folds 2 or more, not 0"
    ]
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("multi_label_classification", "--drop_label_issues: the label audit ranks single labels; multi-label data is not audited"),
        ("causal_lm", "--drop_label_issues: the label audit judges labels, and --task causal_lm reads none; leave it off"),
    ],
)
def test_dropping_label_issues_for_a_task_the_audit_does_not_judge_is_refused(audited, tmp_path, task, message):
    result = run_module("components.preprocess", "--input_uri", str(audited["root"] / "reviews.parquet"), "--output_uri",
                        str(tmp_path / "refused"), "--task", task, "--drop_label_issues")  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not list((tmp_path / "refused").glob("*.parquet"))
