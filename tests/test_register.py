"""register: the quality gate (majority-class baseline, small test splits), the production re-score, and the lineage."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from components import register
from components.evaluate import evaluate
from components.export import export
from components.lib.data.contract import MODEL_CARD_FILE
from components.lib.data.labels import LABELS_FILE
from components.lib.errors import UserError
from components.lib.storage.artifacts import commit
from components.lib.tasks import classification_gate
from components.preprocess import preprocess
from components.tokenize import tokenize
from components.train import train
from tests.conftest import labelled_rows, train_flags, write_parquet

TWEET_DECORATIONS = [
    "see https://example.com/a?b=1",
    "@alice",
    "thanks @bob_the_builder",
    "www.drugs.example/review",
    "&amp;quot;ok&amp;quot;",
]


def tweets(count: int, seed: int) -> list[dict]:
    """Labelled rows where most texts carry a URL, a mention or a doubly escaped entity."""
    rows = labelled_rows(count, seed)
    for index, row in enumerate(rows):
        row["text"] = f"{row['text']} {TWEET_DECORATIONS[index % len(TWEET_DECORATIONS)]}"
    return rows


@pytest.fixture(scope="module")
def tweet_release(tmp_path_factory, tiny_model) -> dict:
    """A tiny model trained on tweets with --mask_urls and --mask_mentions: the inputs of register."""
    root = tmp_path_factory.mktemp("tweet-release")
    write_parquet(root / "source" / "train.parquet", tweets(90, seed=5))
    write_parquet(root / "source" / "test.parquet", tweets(45, seed=6))
    preprocess(input_uri=str(root / "source"), output_uri=str(root / "data"), mask_urls=True, mask_mentions=True)
    tokenize(data_uri=str(root / "data"), output_uri=str(root / "tokens"), base_model=str(tiny_model), max_length=32)
    train(data_uri=str(root / "tokens"), output_uri=str(root / "model"), base_model=str(tiny_model), **train_flags(epochs=4, batch_size=4))
    evaluate(model_uri=str(root / "model"), data_uri=str(root / "tokens"), output_uri=str(root / "evaluation"))
    export(model_uri=str(root / "model"), data_uri=str(root / "tokens"), output_uri=str(root / "onnx"), quantize_int8=False, latency_runs=1)
    return {
        "export_uri": str(root / "onnx"),
        "evaluation_uri": str(root / "evaluation"),
        "model_uri": str(root / "model"),
        "data_uri": str(root / "tokens"),
    }


def register_release(release: dict, folder: Path, **flags):
    return register.register(
        **release, registry_uri=str(folder / "registry"), model_name="tweets", output_uri=str(folder / "decision"), **flags
    )


def with_test_scores(release: dict, folder: Path, **scores) -> dict:
    """The release with a committed copy of its evaluation whose test scores are set to `scores`."""
    metrics = json.loads((Path(release["evaluation_uri"]) / "metrics.json").read_text())
    metrics["test"].update(scores)
    copy = folder / "evaluation-copy"
    shutil.copytree(release["evaluation_uri"], copy)
    (copy / "metrics.json").write_text(json.dumps(metrics))
    commit(copy, str(copy))
    return dict(release, evaluation_uri=str(copy))


def baseline_of(release: dict) -> dict:
    return json.loads((Path(release["evaluation_uri"]) / "metrics.json").read_text())["baseline_majority_class"]


WRONG_FOLDER = "{uri}: this is {found} output, not {producer} output; pass --{flag} the folder {producer} wrote (its --output_uri)"
RUN_FIRST = "{uri}: this is {found} output, not {producer} output: run {producer} on it first, and pass --{flag} its --output_uri"


@pytest.mark.parametrize(
    "flag, given, found, producer, words",
    [
        ("export_uri", "evaluation_uri", "evaluate", "export", WRONG_FOLDER),
        ("evaluation_uri", "export_uri", "export", "evaluate", WRONG_FOLDER),
        ("model_uri", "data_uri", "tokenize", "train", RUN_FIRST),
        ("data_uri", "model_uri", "train", "tokenize", WRONG_FOLDER),
    ],
)
def test_register_refuses_another_stages_output_in_one_line(tweet_release, tmp_path, flag, given, found, producer, words):
    """Without the check a swapped folder fails deep inside (a missing metrics.json, a model hub lookup)."""
    uri = tweet_release[given]
    with pytest.raises(UserError) as refusal:
        register_release(dict(tweet_release, **{flag: uri}), tmp_path)
    assert str(refusal.value) == words.format(uri=uri, found=found, producer=producer, flag=flag)
    assert not (tmp_path / "registry").exists()


@pytest.mark.parametrize("stage", [evaluate, export])
def test_evaluate_and_export_refuse_another_stages_output_in_one_line(tweet_release, tmp_path, stage):
    tokens, model = tweet_release["data_uri"], tweet_release["model_uri"]
    with pytest.raises(UserError) as refusal:
        stage(model_uri=tokens, data_uri=tokens, output_uri=str(tmp_path / "out"))
    assert str(refusal.value) == RUN_FIRST.format(uri=tokens, found="tokenize", producer="train", flag="model_uri")
    with pytest.raises(UserError) as refusal:
        stage(model_uri=model, data_uri=model, output_uri=str(tmp_path / "out"))
    assert str(refusal.value) == WRONG_FOLDER.format(uri=model, found="train", producer="tokenize", flag="data_uri")
    assert not (tmp_path / "out").exists()


def test_a_model_worse_than_the_majority_baseline_is_refused_by_default(tweet_release, tmp_path, caplog):
    baseline = baseline_of(tweet_release)
    # the run: a better macro-F1 than the baseline's, a worse accuracy
    worse = with_test_scores(tweet_release, tmp_path, accuracy=baseline["accuracy"] - 0.07, macro_f1=baseline["macro_f1"] + 0.1)
    result = register_release(worse, tmp_path)
    assert result.summary["registered"] is False
    refusal = result.summary["refused"]
    assert "does not beat the majority-class baseline" in refusal and "\n" not in refusal
    assert f"accuracy {baseline['accuracy'] - 0.07:.4f} against {baseline['accuracy']:.4f}" in refusal
    assert f"macro_f1 {baseline['macro_f1'] + 0.1:.4f} against {baseline['macro_f1']:.4f}" in refusal
    assert "--require_beat_baseline false" in refusal and f"not registered: {refusal}" in caplog.messages
    decision = json.loads((tmp_path / "decision" / "registration.json").read_text())
    assert decision["refused"] == refusal
    assert decision["checks"] == [  # each check of the gate in one place, in order; none after the refusal
        {"check": "gate_min", "result": "passed"},
        {"check": "require_beat_baseline", "result": "refused", "why": refusal},
        {"check": "compare_with_production", "result": "not checked"},
    ]
    assert not (tmp_path / "registry" / "tweets").exists()


def test_a_model_worse_than_the_majority_baseline_registers_with_the_check_off(tweet_release, tmp_path):
    baseline = baseline_of(tweet_release)
    worse = with_test_scores(tweet_release, tmp_path, accuracy=baseline["accuracy"] - 0.07, macro_f1=baseline["macro_f1"] + 0.1)
    result = register_release(worse, tmp_path, require_beat_baseline=False)
    assert result.summary["registered"] is True
    assert [check["result"] for check in result.summary["checks"]] == ["passed", "off", "passed"]  # no production yet: passes


@pytest.mark.parametrize("accuracy_gain, macro_f1_gain, registered", [(0.1, 0.1, True), (0.1, 0.0, False), (0.0, 0.1, False)])
def test_beating_the_baseline_takes_both_accuracy_and_macro_f1(tweet_release, tmp_path, accuracy_gain, macro_f1_gain, registered):
    baseline = baseline_of(tweet_release)
    scores = {"accuracy": baseline["accuracy"] + accuracy_gain, "macro_f1": baseline["macro_f1"] + macro_f1_gain}
    assert register_release(with_test_scores(tweet_release, tmp_path, **scores), tmp_path).summary["registered"] is registered


def test_a_test_split_too_small_to_judge_is_warned_about(tweet_release, tmp_path, caplog):
    result = register_release(tweet_release, tmp_path, require_beat_baseline=False)
    warning = result.summary["warning"]  # 15 test rows per class
    assert "too small to judge" in warning and "'negative' (15)" in warning and "45 rows in all" in warning
    assert warning in caplog.text
    per_class = {label: {"support": classification_gate.MIN_TEST_ROWS_PER_CLASS} for label in ("a", "b")}
    assert classification_gate.small_test_split_warning({"per_class": per_class}) is None


def test_the_registered_lineage_records_the_text_cleaning(tweet_release, tmp_path):
    result = register_release(tweet_release, tmp_path, require_beat_baseline=False)
    manifest = json.loads((Path(result.summary["uri"]) / "MANIFEST.json").read_text())
    assert manifest["lineage"]["text_cleaning"] == {"mask_urls": True, "mask_mentions": True}


def test_the_model_card_says_the_precision_train_chose_and_why(tweet_release, tmp_path):
    result = register_release(tweet_release, tmp_path, require_beat_baseline=False)
    card = (Path(result.summary["uri"]) / MODEL_CARD_FILE).read_text()
    assert "on cpu in float32 (auto: this CPU has no native bf16 (AVX512-BF16 or AMX); emulated bf16 is slower than fp32)." in card


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

    monkeypatch.setattr(classification_gate, "cpu_session", lambda path: None)
    monkeypatch.setattr(classification_gate, "session_logits", fake_logits)
    classification_gate.classifier_scorer(version_dir, data_dir, "macro_f1")
    assert used["pad_id"] == tokenizer.convert_tokens_to_ids("[MASK]") != 0


@pytest.mark.parametrize("swapped", ["model_uri", "evaluation_uri"])
def test_one_models_evaluation_never_registers_another_models_export(tweet_release, tmp_path, swapped):
    """evaluate and export record which commit of the model they were made from; register holds them to --model_uri."""
    other = tmp_path / "other"
    shutil.copytree(tweet_release[swapped], other)
    manifest = json.loads((other / "MANIFEST.json").read_text())
    manifest["lineage"] = {**manifest.get("lineage", {}), "run_id": "another-run"}
    if swapped == "evaluation_uri":
        manifest["model_manifest_sha256"] = "0" * 64  # made from another model
    commit(other, str(other), extra={key: value for key, value in manifest.items() if key not in ("files", "committed_at")})
    with pytest.raises(UserError, match="was made from another model than --model_uri"):
        register_release({**tweet_release, swapped: str(other)}, tmp_path)
    assert not (tmp_path / "registry").exists() and not (tmp_path / "decision").exists()
