"""Benchmark 15: dropping the label audit's suspects, and slices by a source column (issue 30), with `make run`.

    python -m benchmarks.label_noise

Tweets: two runs of the default config on the bundled tweets into one registry, alike but for
drop_label_issues: the first (nothing dropped) registered and promoted to production, the second (the
audit's suspect train rows dropped; validation and test as they were) compared with it by register's
paired bootstrap of macro-F1 on the same test rows. Drug reviews: one run on the bundled Drugs.com
reviews with slice_columns=condition, its test accuracy by condition.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import machine, markdown_table
from benchmarks.evaluation_checks import MODEL_NAME, make_local_run, promote
from components.lib.data.contract import DECISION_FILE, LABEL_ISSUES_KEY, METRICS_FILE, STATS_FILE
from components.lib.stage_outputs import DATASET_ARTIFACT, EVALUATION_ARTIFACT, REGISTRATION_ARTIFACT

DRUG_REVIEWS = ["source_uri=data/sample/drugscom", "text_column=review", "label_column=rating", "mask_urls=false", "mask_mentions=false",
                "slice_columns=condition", f"model_name={MODEL_NAME}-drugs", "allow_unregistered=true"]  # fmt: skip


def tweet_run(scratch: Path, drop: bool) -> dict:
    run = make_local_run(scratch, f"drop-{drop}", [f"drop_label_issues={str(drop).lower()}", "allow_unregistered=true"])
    test = json.loads((run / "evaluate" / EVALUATION_ARTIFACT / METRICS_FILE).read_text())["test"]
    stats = json.loads((run / "preprocess" / DATASET_ARTIFACT / STATS_FILE).read_text())
    decision = json.loads((run / "register" / REGISTRATION_ARTIFACT / DECISION_FILE).read_text())
    comparison = decision.get("production_comparison", {})
    return {
        "train_rows": stats["splits"]["train"]["rows"],
        "test_rows": stats["splits"]["test"]["rows"],
        "flagged": stats[LABEL_ISSUES_KEY]["found"],
        "dropped": stats[LABEL_ISSUES_KEY].get("dropped_from_train", 0),
        "accuracy": round(test["accuracy"], 4),
        "macro_f1": round(test["macro_f1"], 4),
        "registered": decision["registered"],
        "comparison": {key: value for key, value in comparison.items() if key != "slices"},
    }


def drug_slices(scratch: Path) -> dict:
    run = make_local_run(scratch, "drugs", DRUG_REVIEWS)
    test = json.loads((run / "evaluate" / EVALUATION_ARTIFACT / METRICS_FILE).read_text())["test"]
    slices = [{key: entry[key] for key in ("slice", "rows", "accuracy", "accuracy_95", "small")} for entry in test["slices"]]
    return {"accuracy": round(test["accuracy"], 4), "macro_f1": round(test["macro_f1"], 4), "slices": slices,
            "languages": test.get("languages", {})}  # fmt: skip


def main() -> int:
    described = machine()  # now, not after the runs: the figures are of this code
    with tempfile.TemporaryDirectory(prefix="label-noise-bench-") as folder:
        scratch = Path(folder)
        drugs = drug_slices(scratch)  # first: the shorter run
        kept = tweet_run(scratch, drop=False)
        promote(scratch / "registry", 1)
        dropped = tweet_run(scratch, drop=True)
    print(json.dumps({"machine": described, "tweets": {"kept": kept, "dropped": dropped}, "drug_reviews": drugs}))
    return 0


def markdown(result: dict) -> str:
    kept, dropped = result["tweets"]["kept"], result["tweets"]["dropped"]
    comparison = dropped["comparison"]
    runs = [[name, run["train_rows"], run["test_rows"], run["accuracy"], run["macro_f1"]]
            for name, run in (("all train rows", kept), (f"{dropped['dropped']} suspect train rows dropped", dropped))]  # fmt: skip
    conditions = [[entry["slice"], entry["rows"], f"{entry['accuracy']:.4f}", f"{entry['accuracy_95'][0]:.3f}-{entry['accuracy_95'][1]:.3f}",
                   "small" if entry["small"] else ""] for entry in result["drug_reviews"]["slices"]
                  if entry["slice"].startswith("condition = ")]  # fmt: skip
    return (
        f"On {result['machine']}.\n\n**Dropping the label audit's suspects** (bundled tweets, the default config, two `make run`s alike"
        f" but for drop_label_issues; the audit flagged {kept['flagged']} rows of all splits, {dropped['dropped']} of them in train;"
        " validation and test untouched):\n\n"
        + markdown_table(["train split", "train rows", "test rows", "test accuracy", "test macro-F1"], runs)
        + f"\n\nregister's paired bootstrap of test macro-F1, dropped minus kept: difference {comparison['difference']:+.4f},"
        f" 95% interval {comparison['interval_95'][0]:+.4f} to {comparison['interval_95'][1]:+.4f} ({comparison['rows']} rows).\n\n"
        f"**Slices by a source column** (bundled Drugs.com reviews, the default config with slice_columns=condition): test accuracy"
        f" {result['drug_reviews']['accuracy']}, macro-F1 {result['drug_reviews']['macro_f1']}; detected languages of the test rows:"
        f" {result['drug_reviews']['languages']}.\n\n" + markdown_table(["slice", "test rows", "accuracy", "95% interval", ""], conditions)
    )


if __name__ == "__main__":
    sys.exit(main())
