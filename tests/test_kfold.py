"""K-fold cross-validation: stratified folds, tokenize's fold splits, the report's tests, the pipeline."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.evaluate import evaluate
from components.kfold_report import kfold_report
from components.lib.data.folds import stratified_folds
from components.lib.errors import UserError
from components.tokenize import tokenize
from components.train import train
from pipelines.config import KfoldSettings
from pipelines.kfold import expand_kfold
from tests.conftest import run_module, train_flags
from tests.test_local_run import common_parameters, write_config


def test_stratified_folds_balance_every_class_and_follow_the_seed():
    labels = np.repeat([0, 1, 2], [50, 31, 19])
    folds = stratified_folds(labels, 5, seed=3)
    for label in range(3):
        counts = np.bincount(folds[labels == label], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=3)) and not np.array_equal(folds, stratified_folds(labels, 5, seed=4))


def test_tokenize_writes_a_fold_that_partitions_train_and_validation(prepared_data, tiny_model, tmp_path):
    data = str(prepared_data[0])
    pooled = {
        row
        for split in ("train", "validation")
        for row in pq.read_table(prepared_data[1] / f"{split}.parquet").column("source_row").to_pylist()
    }
    held_out = []
    for fold in range(3):
        out = tmp_path / f"fold{fold}"
        tokenize(data_uri=data, output_uri=str(out), base_model=str(tiny_model), max_length=32, num_folds=3, fold=fold)
        train_rows = set(pq.read_table(out / "train.parquet").column("source_row").to_pylist())
        validation_rows = set(pq.read_table(out / "validation.parquet").column("source_row").to_pylist())
        assert not train_rows & validation_rows and train_rows | validation_rows == pooled
        assert pq.read_table(out / "test.parquet").equals(pq.read_table(prepared_data[1] / "test.parquet"))
        held_out.append(validation_rows)
    assert set().union(*held_out) == pooled and sum(len(rows) for rows in held_out) == len(pooled)


def test_a_fold_outside_the_folds_is_refused(prepared_data, tiny_model, tmp_path):
    with pytest.raises(UserError, match=r"--fold: must be in 0\.\.2 for --num_folds 3, got 3"):
        tokenize(data_uri=str(prepared_data[0]), output_uri=str(tmp_path / "t"), base_model=str(tiny_model), num_folds=3, fold=3)


def test_the_config_section_expands_to_one_item_per_configuration_and_fold():
    items = expand_kfold(KfoldSettings(folds=2, configurations={"fast": {"learning_rate": 1e-3}, "slow": {"learning_rate": 1e-5}}), {})
    assert [item["trial_id"] for item in items] == ["fast.fold0", "fast.fold1", "slow.fold0", "slow.fold1"]
    assert items[2]["learning_rate"] == 1e-5 and items[3]["fold"] == 1 and items[0]["num_folds"] == 2
    with pytest.raises(UserError, match=r"kfold.configurations.fast.max_length: cannot vary"):
        expand_kfold(KfoldSettings(configurations={"fast": {"max_length": 64}}), {})


def test_the_report_tabulates_each_configuration_and_tests_the_first_two(prepared_data, tiny_model, tmp_path):
    evaluations = []
    for name, rate in (("good", 5e-3), ("poor", 1e-6)):
        for fold in range(3):
            tokens, model = tmp_path / f"tokens{fold}", tmp_path / f"{name}.fold{fold}"
            if not tokens.exists():
                tokenize(
                    data_uri=str(prepared_data[0]),
                    output_uri=str(tokens),
                    base_model=str(tiny_model),
                    max_length=32,
                    num_folds=3,
                    fold=fold,
                )
            train(data_uri=str(tokens), output_uri=str(model), base_model=str(tiny_model), trial=model.name, model_type="cnn",
                  **train_flags(epochs=3, learning_rate=rate * 2))  # fmt: skip
            evaluate(model_uri=str(model), data_uri=str(tokens), output_uri=str(model) + "-evaluation")
            evaluations.append(str(model) + "-evaluation")
    kfold_report(evaluation_uris=evaluations, report_uri=str(tmp_path / "report"))
    results = json.loads((tmp_path / "report" / "kfold_results.json").read_text())
    good, poor = results["configurations"]["good"], results["configurations"]["poor"]
    assert len(good["held_out_macro_f1"]["folds"]) == 3 and good["held_out_macro_f1"]["mean"] > poor["held_out_macro_f1"]["mean"] + 0.3
    t_test, mcnemar_test, bootstrap = results["comparison"]["tests"]
    assert t_test["test"] == "paired t-test" and t_test["p_value"] < 0.05
    assert mcnemar_test["test"].startswith("McNemar") and mcnemar_test["p_value"] < 0.05
    assert bootstrap["test"] == "paired bootstrap of test accuracy" and bootstrap["p_value"] < 0.05 and bootstrap["interval_95"][0] > 0
    assert (tmp_path / "report" / "kfold_scores.png").stat().st_size > 1000
    with pytest.raises(UserError, match=r"configuration poor has folds \[0, 1\], good has \[0, 1, 2\]"):
        kfold_report(evaluation_uris=evaluations[:5], report_uri=str(tmp_path / "report2"))


def test_make_kfold_runs_locally(sample_source, tiny_model, tmp_path):
    """The compiled kfold pipeline through kfp.local: a ParallelFor of folds, then one report."""
    parameters = {**common_parameters(tiny_model), "epochs": 1, "source_uri": str(sample_source), "model_type": "cnn", "registry_uri": "unused",
                  "checkpoint_root": str(tmp_path / "checkpoints")}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", parameters, tmp_path / "runs")
    text = config.read_text() + "kfold: {folds: 2, configurations: {a: {learning_rate: 1.0e-2}, b: {learning_rate: 1.0e-3}}}\n"
    config.write_text(text)
    result = run_module("pipelines.local_run", "--config", str(config), "--pipeline", "kfold", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "a: held-out macro-F1 " in result.stdout and "over 2 folds" in result.stdout
    assert "a against b: paired t-test p = " in result.stdout
