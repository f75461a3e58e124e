"""`registry show`: a short summary a person reads (scores beside the baseline, lineage, files and
sizes, no digests), the whole manifest with --as_json, and every file checked first."""

import json
import re

import pytest

from components.lib.data.contract import CAUSAL_LM, TASK_KEY
from components.lib.storage import artifacts
from components.lib.storage.artifacts import read_manifest, staged_output
from components.lib.storage.registry import LATEST, PRODUCTION, Registry
from tests.conftest import run_module

LINEAGE = {
    "source_uri": "s3://bucket/reviews",
    "source_fingerprint": "f" * 64,
    "base_model": "prajjwal1/bert-tiny",
    "max_length": 128,
    "text_cleaning": {"mask_urls": True, "mask_mentions": False},
    "code_version": {"package": "0.1.0", "git_commit": "750b7a30551f0aee0c2610cf4e7b99a1258d87d8"},
    "training": {"learning_rate": 3e-05, "epochs": 3},
}
CLASSIFIER_METRICS = {
    "test": {"accuracy": 0.8123, "macro_f1": 0.7456, "weighted_f1": 0.8001},
    "baseline_majority_class": {"accuracy": 0.6012, "macro_f1": 0.2503, "weighted_f1": 0.4514, "predicts": "positive"},
}
LM_LINEAGE = {**LINEAGE, TASK_KEY: CAUSAL_LM, "lm_size": "tiny", "training": {"lm_size": "tiny"}}
LM_METRICS = {
    "test": {"perplexity": 63.01, "bits_per_character": 1.9123, "next_token_accuracy": 0.3141},
    "baseline_ngram": {"order": 3, "perplexity": 64.3, "bits_per_character": 1.9456},
}
SHA256 = re.compile(r"[0-9a-f]{64}")


def register_version(root, name: str, lineage: dict, metrics: dict, files: dict[str, bytes]) -> None:
    """A version as register writes it: the files, and a manifest with the headline test figures and the lineage."""
    registry = Registry(str(root), name)
    version = registry.claim_next_version()
    extra = {"model_name": name, "version": version, "metrics": metrics["test"], "lineage": lineage}
    token = artifacts.WRITER.set("components.register")
    try:
        with staged_output(registry.version_uri(version), extra=extra) as folder:
            for file_name, body in {**files, "metrics.json": json.dumps(metrics).encode()}.items():
                (folder / file_name).write_bytes(body)
    finally:
        artifacts.WRITER.reset(token)
    registry.move_alias(LATEST, version)


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "registry"
    files = {"model.onnx": b"\0" * 3 * 1024 * 1024, "labels.json": b'{"labels": ["negative", "positive"]}', "MODEL_CARD.md": b"# card"}
    register_version(root, "reviews", LINEAGE, CLASSIFIER_METRICS, files)
    Registry(str(root), "reviews").move_alias(PRODUCTION, 1)
    register_version(root, "corpus-lm", LM_LINEAGE, LM_METRICS, {"model.onnx": b"\0" * 2048})
    return root


def show(registry, model_name: str, *flags: str):
    return run_module("components.registry", "show", "--registry_uri", str(registry), "--model_name", model_name, *flags)


def summary_facts(stdout: str) -> dict[str, str]:
    """The summary's `name  value` lines, by name."""
    return dict(re.match(r"  (\w+) +(.*)", line).groups() for line in stdout.splitlines() if re.match(r"  \w", line))


def file_sizes(stdout: str) -> dict[str, str]:
    """The summary's file lines: name, then size."""
    return dict(line.split(None, 1) for line in stdout.splitlines() if line.startswith("    "))


def test_show_summarises_a_classifier_without_digests(registry):
    result = show(registry, "reviews", "--version", "production")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "reviews version 1"
    facts = summary_facts(result.stdout)
    assert facts["aliases"] == "latest, production"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ by components\.register", facts["registered"])
    assert facts["task"] == "sequence_classification: negative, positive"
    assert facts["test"] == "accuracy 0.8123, macro_f1 0.7456, weighted_f1 0.8001"
    assert facts["baseline"] == "accuracy 0.6012, macro_f1 0.2503, weighted_f1 0.4514 (always the majority class 'positive')"
    assert facts["model"] == "fine-tuned from `prajjwal1/bert-tiny`"
    assert facts["data"] == "s3://bucket/reviews; text cleaning mask_mentions=False, mask_urls=True; texts cut at 128 tokens"
    assert facts["code"] == "0.1.0, commit 750b7a30551f"
    assert facts["card"] == str(registry / "reviews" / "1" / "MODEL_CARD.md")
    sizes = file_sizes(result.stdout)
    assert sizes == {
        "MODEL_CARD.md": "6 B",
        "labels.json": "36 B",
        "metrics.json": f"{len(json.dumps(CLASSIFIER_METRICS))} B",
        "model.onnx": "3.0 MiB",
    }
    assert len(result.stdout.splitlines()) == 1 + len(facts) + len(sizes)
    assert not SHA256.search(result.stdout) and "learning_rate" not in result.stdout


def test_show_summarises_a_language_model_against_its_ngram_baseline(registry):
    result = show(registry, "corpus-lm")
    assert result.returncode == 0, result.stderr
    facts = summary_facts(result.stdout)
    assert facts["task"] == CAUSAL_LM and facts["card"] == "none"
    assert facts["test"] == "bits_per_character 1.9123, next_token_accuracy 0.3141, perplexity 63.0100"
    assert facts["baseline"] == "bits_per_character 1.9456, next_token_accuracy -, perplexity 64.3000 (3-gram model)"
    assert facts["model"] == "a GPT-2 'tiny' (2 layers of width 128, 4 heads) trained from scratch"


def test_show_as_json_prints_the_whole_manifest(registry):
    result = show(registry, "reviews", "--as_json")
    assert result.returncode == 0, result.stderr
    manifest_text, summary_line = result.stdout.rsplit("\n", 2)[0], result.stdout.splitlines()[-1]
    assert json.loads(manifest_text) == read_manifest(str(registry / "reviews" / "1"))
    assert json.loads(summary_line) == {"model_name": "reviews", "version": 1, "verified": True}


def test_show_help_says_what_as_json_adds(registry):
    help_lines = run_module("components.registry", "show", "--help").stdout.splitlines()
    flag = next(index for index, line in enumerate(help_lines) if line.startswith("  --as_json "))
    assert "sha256" in help_lines[flag + 1]


def test_show_checks_every_file_before_it_summarises(registry):
    (registry / "reviews" / "1" / "labels.json").write_text('{"labels": ["negative", "positivE"]}')
    result = show(registry, "reviews")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {registry / 'reviews' / '1'}: labels.json is corrupt (size or sha256 differs from MANIFEST.json); run the stage that writes it again"
    ]
