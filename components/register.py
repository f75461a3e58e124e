"""register: put the exported model into the registry as a new version, behind a quality gate.

    python -m components.register --export_uri runs/x/onnx --evaluation_uri runs/x/evaluation \\
        --model_uri runs/x/model --data_uri runs/x/tokens --registry_uri runs/registry \\
        --model_name drug-review-sentiment --output_uri runs/x/registration

The gate refuses (a clear line and exit status 0, not a crash) when the test score of
`--gate_metric` is below `--gate_min`; with `--require_beat_baseline` (the default), when the model
does not beat the majority-class baseline on the test split in both accuracy and macro-F1; or,
with `--compare_with_production`, when it is more than `--max_regression` below the current
`production` version scored on the same test split. A test split with fewer than
MIN_TEST_ROWS_PER_CLASS rows of some class is judged anyway, with a warning that it is too small. A
registered version holds the ONNX files, tokenizer, labels, metrics, a model card and a manifest
with every file's sha256 and the lineage. `latest` then moves to it; `production` moves only by
`python -m components.registry promote`.

A causal language model (`--task causal_lm`, read from the evaluation's lineage) has its own gate:
it is refused above `--max_perplexity` test perplexity (0: no limit); with
`--require_beat_baseline`, unless its test perplexity is below the n-gram baseline's; with
`--compare_with_production`, when its test perplexity is more than `--max_regression` (relative:
0.01 is 1%) above the production version's. A perplexity is comparable only under the same
tokenizer: when the production version's tokenizer.json is byte-identical to this run's (and its
export takes this run's block length), its model.onnx is scored with onnxruntime on this run's test
blocks; otherwise the two versions' test bits per character (each on its own test split, as its
metrics.json records them) are compared, with the same relative margin, and the log says so.
`--gate_metric` and `--gate_min` are classification's: ignored for a language model, with a warning
when set. Its version holds the ONNX model, the tokenizer, metrics.json and a language model card;
no labels.json.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

import components
from components.lib.cli import StageResult, run_stage
from components.lib.data.batching import TokenizedSplit, sorted_batches
from components.lib.data.contract import (
    CALIBRATION_FILE,
    CAUSAL_LM,
    CLASSIFICATION,
    DECISION_FILE,
    EXPORT_REPORT_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    ONNX_FP32_FILE,
    STATS_FILE,
    TOKENIZED_SCHEMA,
    TOKENIZER_FILE,
    TRAIN_SUMMARY_FILE,
    TRAINING_ARGS_FILE,
    open_split,
    read_split,
    require_output_of,
    split_file,
    task_of,
)
from components.lib.data.labels import LABELS_FILE, read_labels
from components.lib.errors import UserError, flag_hint
from components.lib.modelling.language_model import next_token_loss_sum, predicted_tokens
from components.lib.modelling.lm_export import LOGITS_PER_BATCH
from components.lib.modelling.onnx_runtime import cpu_session, feeds, session_logits
from components.lib.modelling.sources import load_tokenizer
from components.lib.quality_gate import GATES, REFUSED, gate_checks
from components.lib.reporting.metrics import HIGHER_IS_BETTER, classification_metrics, headline
from components.lib.reporting.model_card import build_language_model_card, build_model_card
from components.lib.reporting.tracking import mlflow_run_of
from components.lib.reporting.tracking import register_version as register_in_mlflow
from components.lib.storage.artifacts import MADE_FROM, made_from, read_manifest, staged_input, staged_output
from components.lib.storage.registry import LATEST, PRODUCTION, Registry

log = logging.getLogger("components.register")
TRAINING_FILES = [TRAINING_ARGS_FILE, TRAIN_SUMMARY_FILE]
# The majority-class baseline answers the most common training label whatever the text. A model must
# beat it in accuracy AND macro-F1. Macro-F1 alone is too easy: the baseline scores at most 1/classes
# there however skewed the data, so a model that errs more often than not reading the text at all
# passes it (issue 10: accuracy 0.345 against the baseline's 0.414 was registered). Accuracy is the
# test that binds on imbalanced data; macro-F1 must beat the baseline too, so that no score the card
# shows is below it. A model trained for minority-class recall may lose to the baseline in accuracy on
# purpose: --require_beat_baseline false registers it.
BASELINE_METRICS = ("accuracy", "macro_f1")
# Per-class F1, and so macro-F1, rests on the rows of each class: with n rows a class's recall moves
# 1/n per row and its 95% interval is up to +-1/sqrt(n) wide, +-0.18 at 30 rows. Below that the
# comparison with the baseline is mostly noise, so the gate says so.
MIN_TEST_ROWS_PER_CLASS = 30
# What register reads of the tokenized data: on Kubeflow it gets URIs, not artifacts, so that the
# launcher downloads neither the weights, the predictions nor the train split (launcher_v2.go,
# downloadArtifacts, fetches every input artifact whole).
DATA_FILES = [LABELS_FILE, STATS_FILE, split_file(Path(), "test").name]
LM_HEADLINE = ("perplexity", "bits_per_character", "next_token_accuracy")  # a language model's figures in its version's manifest
# Padding follows a block's real tokens, where causal attention cannot reach them and the loss does
# not look: any id serves.
PAD_ID = 0


@dataclass(frozen=True)
class GateFlags:
    gate_metric: str
    gate_min: float
    compare_with_production: bool
    max_regression: float
    require_beat_baseline: bool
    max_perplexity: float


@dataclass(frozen=True)
class Verdict:
    metric: str  # the test metric the gate read
    candidate: float  # its value
    checks: list[dict]  # each check of the gate, in order, with its result (gate_checks)
    warning: str | None = None

    @property
    def refusal(self) -> str | None:
        """Why the model is not registered: the first check that refused it; None: it is registered."""
        return next((check["why"] for check in self.checks if check["result"] == REFUSED), None)


def register(
    *,
    export_uri: str,
    evaluation_uri: str,
    model_uri: str,
    data_uri: str,
    registry_uri: str,
    model_name: str,
    output_uri: str,
    gate_metric: str = GATES[CLASSIFICATION].metric,
    gate_min: float = 0.0,
    max_perplexity: float = 0.0,
    compare_with_production: bool = True,
    max_regression: float = 0.01,
    require_beat_baseline: bool = True,
    executor_input: str = "",
) -> StageResult:
    """Register the exported model as a new version if it passes the quality gate.

    Args:
      export_uri: Folder (local or s3://) written by export.
      evaluation_uri: Folder (local or s3://) written by evaluate.
      model_uri: Folder (local or s3://) written by train (training flags and summary are read).
      data_uri: Folder (local or s3://) written by tokenize (the test split, to score production on).
      registry_uri: Registry root (local folder or s3:// prefix); versions go to <registry>/<model_name>/<version>/.
      model_name: Registry name: letters, digits, '.', '_' and '-'.
      output_uri: Folder (local or s3://) for registration.json: the decision, and the version's URI.
      gate_metric: Test metric the gate reads: macro_f1, accuracy, weighted_f1, ...
      gate_min: Refuse to register below this value of gate_metric.
      max_perplexity: causal_lm: refuse to register above this test perplexity; 0: no limit.
      compare_with_production: Also refuse if worse than the production version on this test split.
      max_regression: How far below production the candidate may score and still register (causal_lm: how far above, relative).
      require_beat_baseline: Refuse unless the model beats the majority class in test accuracy and macro-F1 (causal_lm: n-gram perplexity).
      executor_input: Set by Kubeflow; leave empty when running by hand.
    """
    for producer, uri, flag in (
        ("export", export_uri, "--export_uri"),
        ("evaluate", evaluation_uri, "--evaluation_uri"),
        ("train", model_uri, "--model_uri"),
        ("tokenize", data_uri, "--data_uri"),
    ):
        require_output_of(producer, uri, flag)
    require_one_model(model_uri, evaluation_uri, export_uri)
    registry = Registry(registry_uri, model_name)
    flags = GateFlags(gate_metric, gate_min, compare_with_production, max_regression, require_beat_baseline, max_perplexity)
    check_flags(flags)
    with staged_input(evaluation_uri, only=[METRICS_FILE]) as (evaluation_dir, evaluation_manifest):
        metrics = json.loads((evaluation_dir / METRICS_FILE).read_text())
    task = task_of(evaluation_manifest)
    with staged_input(data_uri, only=DATA_FILES) as (data_dir, data_manifest):
        if task == CAUSAL_LM:
            verdict = language_model_verdict(registry, metrics, flags, data_dir, data_manifest, data_uri, export_uri)
        else:
            verdict = classification_verdict(registry, metrics, flags, data_dir)
        decision = {
            "model_name": model_name,
            "gate_metric": verdict.metric,
            "candidate": verdict.candidate,
            "checks": verdict.checks,
            "registered": False,
        }
        if verdict.warning:
            decision["warning"] = verdict.warning
        if verdict.refusal is None:
            version = publish(registry, export_uri, model_uri, data_dir, data_manifest, metrics, task)
            decision.update(
                registered=True,
                version=version,
                uri=registry.version_uri(version),
                aliases=[LATEST] if registry.read_alias(LATEST) == version else [],
            )
            log.info("registered %s version %d at %s", model_name, version, decision["uri"])
        else:
            decision["refused"] = verdict.refusal
            print(f"register: not registered: {verdict.refusal}")
    with staged_output(output_uri) as out:
        (out / DECISION_FILE).write_text(json.dumps(decision, indent=2) + "\n")
    return StageResult(
        summary={"stage": "register", **decision},
        artifact_metadata={
            "registration": {key: value for key, value in decision.items() if key in ("registered", "version", "uri", "refused")}
        },
        parameters={"registered": decision["registered"], "version": str(decision.get("version", ""))},
    )


def require_one_model(model_uri: str, evaluation_uri: str, export_uri: str) -> None:
    """The evaluation and the export were made from the model given, this very commit of it: one
    model's scores must not register another model's ONNX. Outputs from before evaluate and export
    recorded it cannot be checked, which is logged."""
    expected = made_from(read_manifest(model_uri))[MADE_FROM]
    for flag, uri in (("--evaluation_uri", evaluation_uri), ("--export_uri", export_uri)):
        recorded = read_manifest(uri).get(MADE_FROM)
        if recorded is None:
            log.warning("%s %s: made before outputs recorded their model; not checked against --model_uri", flag, uri)
        elif recorded != expected:
            raise UserError(f"{flag} {uri}: was made from another model than --model_uri {model_uri}; pass the folders of one run")


def check_flags(flags: GateFlags) -> None:
    if flags.gate_metric not in HIGHER_IS_BETTER or not HIGHER_IS_BETTER[flags.gate_metric]:
        choices = ", ".join(name for name, up in HIGHER_IS_BETTER.items() if up)
        raise UserError(f"--gate_metric: {flags.gate_metric!r} is not one of {choices}")
    if flags.max_perplexity < 0:
        raise UserError(f"--max_perplexity: {flags.max_perplexity} is negative; give a perplexity to refuse above, or 0 for no limit")


def classification_verdict(registry: Registry, metrics: dict, flags: GateFlags, data_dir: Path) -> Verdict:
    """--gate_min, then the majority-class baseline, then production on this test split."""
    candidate = metrics["test"][flags.gate_metric]
    warning = small_test_split_warning(metrics["test"])
    if warning:
        log.warning(warning)
    checks = gate_checks(
        [
            (GATES[CLASSIFICATION].flag, True, lambda: gate_min_refusal(candidate, flags.gate_metric, flags.gate_min)),
            ("require_beat_baseline", flags.require_beat_baseline, lambda: baseline_refusal(metrics)),
            (
                "compare_with_production",
                flags.compare_with_production,
                lambda: production_refusal(registry, candidate, flags.gate_metric, flags.max_regression, data_dir),
            ),
        ]
    )
    return Verdict(flags.gate_metric, candidate, checks, warning)


def gate_min_refusal(candidate: float, metric: str, minimum: float) -> str | None:
    """None if the candidate reaches --gate_min, else the reason it does not."""
    if candidate < minimum:
        return f"test {metric} {candidate:.4f} is below --gate_min {minimum}"
    return None


def baseline_refusal(metrics: dict) -> str | None:
    """None if the model beats the majority-class baseline in every BASELINE_METRICS, else why not, naming both scores."""
    model, baseline = metrics["test"], metrics["baseline_majority_class"]
    if all(model[name] > baseline[name] for name in BASELINE_METRICS):
        return None
    scores = ", ".join(f"{name} {model[name]:.4f} against {baseline[name]:.4f}" for name in BASELINE_METRICS)
    return (
        f"the model does not beat the majority-class baseline (always {baseline.get('predicts', '?')!r}) on the test split:"
        f" {scores}; pass {flag_hint('require_beat_baseline', 'false')} to register it anyway"
    )


def small_test_split_warning(test_metrics: dict) -> str | None:
    """A warning if the test split has too few rows of some class to judge the model by."""
    support = {label: entry["support"] for label, entry in test_metrics["per_class"].items()}
    scarce = {label: rows for label, rows in support.items() if rows < MIN_TEST_ROWS_PER_CLASS}
    if not scarce:
        return None
    shown = ", ".join(f"{label!r} ({rows})" for label, rows in scarce.items())
    return (
        f"the test split is too small to judge the model: fewer than {MIN_TEST_ROWS_PER_CLASS} rows of {shown},"
        f" {sum(support.values())} rows in all; its scores, and the gate's comparisons, are within noise"
        f" (a larger {flag_hint('test_ratio')} or test file helps)"
    )


def production_refusal(registry: Registry, candidate: float, metric: str, max_regression: float, data_dir: Path) -> str | None:
    """None if there is no production version or the candidate is not more than max_regression below it on this test split."""
    if registry.read_alias(PRODUCTION) is None:
        return None
    with registry.fetch(PRODUCTION) as (version, folder, _):
        production = score_version(folder, data_dir, metric)
    log.info("production version %d scores %s %.4f on this test split; candidate %.4f", version, metric, production, candidate)
    if candidate < production - max_regression:
        return (
            f"test {metric} {candidate:.4f} is more than --max_regression {max_regression} below production"
            f" (version {version}: {production:.4f} on the same test split)"
        )
    return None


def score_version(version_dir: Path, data_dir: Path, metric: str) -> float:
    """Score a registered version's fp32 ONNX on this run's test split, with its own tokenizer."""
    labels = read_labels(data_dir)
    if read_labels(version_dir) != labels:
        raise UserError(
            f"the production version's labels {read_labels(version_dir)} differ from this model's {labels};"
            f" register under another {flag_hint('model_name')}, or pass {flag_hint('compare_with_production', 'false')}"
        )
    tokenizer = load_tokenizer(f"production version folder {version_dir}", str(version_dir))
    encoder = tokenizer.backend_tokenizer
    encoder.no_padding()
    test_table = read_split(data_dir, "test", TOKENIZED_SCHEMA, columns=["text", "label"])
    token_lists = [encoding.ids for encoding in encoder.encode_batch_fast(test_table.column("text").to_pylist())]
    test = TokenizedSplit.from_token_lists(token_lists, test_table.column("label").to_numpy())
    logits = session_logits(cpu_session(version_dir / ONNX_FP32_FILE), test, 64, tokenizer.pad_token_id or 0)
    return classification_metrics(test.labels, logits.argmax(axis=1), labels)[metric]


def language_model_verdict(
    registry: Registry, metrics: dict, flags: GateFlags, data_dir: Path, data_manifest: dict, data_uri: str, export_uri: str
) -> Verdict:
    """--max_perplexity, then the n-gram baseline, then production (see the module's docstring)."""
    if task_of(data_manifest) != CAUSAL_LM:
        raise UserError(
            f"{data_uri}: is {task_of(data_manifest)} data, not causal_lm blocks; pass the tokenize output the model was trained on"
        )
    warn_classification_flags(flags)
    gate = GATES[CAUSAL_LM]
    candidate = metrics["test"][gate.metric]
    above_limit = f"test {gate.label} {candidate:.4f} is above --{gate.flag} {flags.max_perplexity}"
    checks = gate_checks(
        [
            (gate.flag, True, lambda: None if gate.passes(candidate, flags.max_perplexity) else above_limit),
            ("require_beat_baseline", flags.require_beat_baseline, lambda: ngram_baseline_refusal(metrics)),
            (
                "compare_with_production",
                flags.compare_with_production,
                lambda: language_model_production_refusal(registry, metrics["test"], flags.max_regression, data_dir, export_uri),
            ),
        ]
    )
    return Verdict(gate.metric, candidate, checks)


def warn_classification_flags(flags: GateFlags) -> None:
    """One warning if classification's gate flags were set away from their defaults for a language model."""
    classification = GATES[CLASSIFICATION]
    set_flags = [f"--gate_min {flags.gate_min}"] if flags.gate_min else []
    if flags.gate_metric != classification.metric:
        set_flags.append(f"--gate_metric {flags.gate_metric}")
    if set_flags:
        log.warning(
            "%s: classification's gate, not applied to a causal language model (its gate is --max_perplexity)", ", ".join(set_flags)
        )


def ngram_baseline_refusal(metrics: dict) -> str | None:
    """None if the model's test perplexity is below the n-gram baseline's, else why not, naming both."""
    model, baseline = metrics["test"]["perplexity"], metrics["baseline_ngram"]["perplexity"]
    if model < baseline:
        return None
    return (
        f"the model does not beat the {metrics['baseline_ngram'].get('order', 'n')}-gram baseline on the test split:"
        f" perplexity {model:.4f} against {baseline:.4f}; pass {flag_hint('require_beat_baseline', 'false')} to register it anyway"
    )


def language_model_production_refusal(registry: Registry, test: dict, max_regression: float, data_dir: Path, export_uri: str) -> str | None:
    """None if there is no production version or the candidate is not more than max_regression (relative) worse than it."""
    if registry.read_alias(PRODUCTION) is None:
        return None
    with staged_input(export_uri, only=[TOKENIZER_FILE]) as (export_dir, _), registry.fetch(PRODUCTION) as (version, folder, manifest):
        if task_of(manifest) != CAUSAL_LM:
            raise UserError(
                f"the production version {version} is a {task_of(manifest)} model, not a causal language model;"
                f" register under another {flag_hint('model_name')}, or pass {flag_hint('compare_with_production', 'false')}"
            )
        measure, production, where = production_figure(version, folder, export_dir / TOKENIZER_FILE, data_dir)
    candidate = test.get(measure)
    if production is None or candidate is None:
        log.info("production version %d: no test %s on both sides (it needs the characters counted); not compared", version, measure)
        return None
    log.info("production version %d: test %s %.4f %s; candidate %.4f", version, measure, production, where, candidate)
    if candidate > production * (1 + max_regression):
        return (
            f"test {measure} {candidate:.4f} is more than --max_regression {max_regression} (relative) above production"
            f" (version {version}: {production:.4f} {where})"
        )
    return None


def production_figure(version: int, folder: Path, tokenizer_file: Path, data_dir: Path) -> tuple[str, float | None, str]:
    """(metric, production's value, where it was measured): its perplexity on this run's test blocks when that
    compares, else the bits per character its metrics.json records."""
    reason = not_comparable_by_perplexity(folder, tokenizer_file, data_dir)
    if reason is None:
        return "perplexity", onnx_perplexity(folder, data_dir), "on the same test blocks"
    log.info("production version %d: %s; comparing test bits per character instead of perplexity", version, reason)
    return "bits_per_character", json.loads((folder / METRICS_FILE).read_text())["test"].get("bits_per_character"), "on its own test split"


def not_comparable_by_perplexity(version_dir: Path, tokenizer_file: Path, data_dir: Path) -> str | None:
    """Why the production version cannot be scored on this run's test blocks; None if it can."""
    theirs = version_dir / TOKENIZER_FILE
    if not tokenizer_file.is_file() or not theirs.is_file() or theirs.read_bytes() != tokenizer_file.read_bytes():
        return f"its {TOKENIZER_FILE} is not this run's, so its perplexity counts other tokens"
    exported_for = json.loads((version_dir / EXPORT_REPORT_FILE).read_text()).get("block_size")
    longest = int(TokenizedSplit.load_blocks(data_dir, "test").lengths.max(initial=0))
    if exported_for is not None and longest > exported_for:
        return f"it was exported for blocks of {exported_for} tokens and this test split's are {longest}"
    return None


def onnx_perplexity(version_dir: Path, data_dir: Path) -> float:
    """A registered language model's test perplexity with onnxruntime on this run's test blocks, as evaluate scores them."""
    session = cpu_session(version_dir / ONNX_FP32_FILE)
    test = TokenizedSplit.load_blocks(data_dir, "test")
    vocab_size = json.loads((version_dir / EXPORT_REPORT_FILE).read_text())["vocab_size"]
    rows_per_batch = max(1, LOGITS_PER_BATCH // (int(test.lengths.max(initial=1)) * vocab_size))
    loss_sum = 0.0
    for rows in sorted_batches(test.lengths, rows_per_batch):
        batch = test.collate(rows, PAD_ID)
        logits = torch.from_numpy(session.run(["logits"], feeds(batch))[0])
        loss_sum += float(next_token_loss_sum(logits, batch["input_ids"], batch["attention_mask"]))
    tokens = predicted_tokens(test.lengths)
    return math.exp(loss_sum / tokens) if tokens else math.nan


def publish(
    registry: Registry, export_uri: str, model_uri: str, data_dir: Path, data_manifest: dict, metrics: dict, task: str = CLASSIFICATION
) -> int:
    """Claim a version number, write the version folder, commit it, move `latest`."""
    with staged_input(export_uri) as (export_dir, export_manifest), staged_input(model_uri, only=TRAINING_FILES) as (model_dir, _):
        training = json.loads((model_dir / TRAINING_ARGS_FILE).read_text())
        train_summary = json.loads((model_dir / TRAIN_SUMMARY_FILE).read_text())
        export_report = json.loads((export_dir / EXPORT_REPORT_FILE).read_text())
        lineage = {
            **data_manifest.get("lineage", {}),
            **export_manifest.get("lineage", {}),
            "training": training,
            "code_version": code_version(),
        }
        version = registry.claim_next_version()
        extra = {"model_name": registry.model_name, "version": version, "metrics": headline_of(task, metrics["test"]), "lineage": lineage}
        with staged_output(registry.version_uri(version), extra=extra) as out:
            for name in export_manifest["files"]:
                shutil.copyfile(export_dir / name, out / name)
            (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
            data_stats = json.loads((data_dir / STATS_FILE).read_text()) if (data_dir / STATS_FILE).is_file() else {}
            facts = {"lineage": lineage, "training": training, "train_summary": train_summary, "metrics": metrics,
                     "export_report": export_report, "data_stats": data_stats, "code_version": lineage["code_version"]}  # fmt: skip
            card = model_card(task, registry.model_name, version, export_dir, export_manifest, facts, data_dir)
            (out / MODEL_CARD_FILE).write_text(card)
            if task != CAUSAL_LM and not (out / LABELS_FILE).is_file():
                raise UserError(f"{export_uri}: has no {LABELS_FILE}; export it again")
        registry.move_alias(LATEST, version, only_forward=True)
        with tempfile.TemporaryDirectory(prefix="register-") as scratch:
            card_file = Path(scratch) / MODEL_CARD_FILE
            card_file.write_text(card)
            files = [export_dir / name for name in export_manifest["files"]] + [card_file]
            register_in_mlflow(mlflow_run_of(train_summary), registry.model_name, version, files, lineage)
    return version


def headline_of(task: str, test: dict) -> dict:
    """The test figures a version's manifest keeps."""
    if task == CAUSAL_LM:
        return {key: round(test[key], 4) for key in LM_HEADLINE if test.get(key) is not None}
    return headline(test)


def model_card(task: str, name: str, version: int, export_dir: Path, export_manifest: dict, facts: dict, data_dir: Path) -> str:
    """The version's MODEL_CARD.md: a language model's, or a classifier's (with its labels, calibration and
    an example text of its own test split)."""
    if task == CAUSAL_LM:
        return build_language_model_card(name, version, **facts)
    calibrated = CALIBRATION_FILE in export_manifest["files"]
    return build_model_card(name, version, read_labels(export_dir), **facts, calibrated=calibrated, test_texts=first_test_texts(data_dir))


def first_test_texts(data_dir: Path, rows: int = 32) -> list[str]:
    """The first texts of the tokenized test split (a few, so that one without a credential can be picked)."""
    batch = next(open_split(data_dir, "test", TOKENIZED_SCHEMA).iter_batches(batch_size=rows, columns=["text"]), None)
    return batch.column("text").to_pylist() if batch is not None else []


def code_version() -> dict:
    """The package version, and the git commit when known (GIT_COMMIT in images, git in a checkout)."""
    commit = os.environ.get("GIT_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return {"package": components.__version__, "git_commit": commit}


if __name__ == "__main__":
    run_stage(register)
