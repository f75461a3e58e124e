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
