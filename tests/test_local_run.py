"""`make run`'s engine end to end: the compiled pipeline, executed by kfp.local, with a tiny model.

Once with everything on this machine, once as a sweep with the data, checkpoints and registry on
S3 (the loopback server).
"""

import json
import os
from pathlib import Path

import pytest
import yaml

from components.lib.common_flags import REGISTRY_URI
from components.lib.data.contract import CAUSAL_LM, CLASSIFICATION, TASK_KEY
from components.lib.storage.artifacts import staged_output
from components.lib.storage.registry import Registry
from pipelines.config import load_config
from tests.conftest import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, REPO, run_module, upload_folder


def write_config(path, parameters: dict, run_root, sweep: dict | None = None):
    config = {"parameters": parameters, "local": {"run_root": str(run_root)}}
    if sweep:
        config["sweep"] = sweep
    path.write_text(yaml.safe_dump(config))
    return path


def common_parameters(tiny_model) -> dict:
    return {"base_model": str(tiny_model), "max_length": 32, "epochs": 3, "batch_size": 4, "learning_rate": 3e-3, "num_workers": 0,
            "report_to": "none", "model_name": "tiny-sentiment", "checkpoint_every_steps": 20}  # fmt: skip


PLANTED = {
    "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY, "AWS_SESSION_TOKEN": "planted-session-token-5f3a9c",
    "HF_TOKEN": "hf_plantedTokenAbCdEf0123456789", "KFP_TOKEN": "planted-kfp-token-77d2e1", "WANDB_API_KEY": "planted0wandb0key0123456789abcdef",
}  # fmt: skip


def test_the_whole_pipeline_runs_locally_registers_a_model_and_leaks_no_secret(sample_source, tiny_model, tmp_path):
    parameters = {**common_parameters(tiny_model), "source_uri": str(sample_source), "registry_uri": str(tmp_path / "registry"),
                  "checkpoint_root": str(tmp_path / "checkpoints"), "min_macro_f1": 0.3, "deploy": True}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", parameters, tmp_path / "runs")
    no_cluster = {"KUBECONFIG": str(tmp_path / "no-kubeconfig")}  # deploy renders its InferenceService and applies nothing
    result = run_module("pipelines.local_run", "--config", str(config), env={**PLANTED, **no_cluster}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout[result.stdout.index("=== local run finished ===") :]
    for stage in ("preprocess", "tokenize", "train", "evaluate", "export", "register"):
        assert f"{stage} " in summary.splitlines()[1]
    assert "registered: tiny-sentiment version 1 at " in summary
    assert "deploy: InferenceService default/tiny-sentiment version 1: rendered (no cluster configured" in summary
    assert Registry(str(tmp_path / "registry"), "tiny-sentiment").read_alias("latest") == 1
    [run_dir] = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "evaluate" / "evaluation" / "metrics.json").read_text())  # <run folder>/<task>/<output>
    assert (run_dir / "summary.txt").read_text() in summary  # kept, as printed
    assert "Dataset(" not in result.stdout and "UserWarning" not in result.stderr  # kfp.local's dumps and warnings left out
    assert metrics["test"]["macro_f1"] > metrics["baseline_majority_class"]["macro_f1"]
    # train checkpointed under <checkpoint_root>/<run id> and, the model committed, removed them
    assert f"removed the checkpoints of this finished run from {tmp_path / 'checkpoints'}/" in result.stdout + result.stderr
    assert not list(tmp_path.glob("checkpoints/*/step-*"))

    # Known fake credentials were in the environment of every stage: none may appear in any output.
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path.name != "config.yaml"]
    assert (run_dir / "pipeline.yaml").is_file()  # the run keeps the pipeline it ran
    written += [*(REPO / "manifests").rglob("*.yaml")]
    assert len(written) > 50 and any(path.name == "MODEL_CARD.md" for path in written)
    for secret in PLANTED.values():
        assert secret not in result.stdout + result.stderr
        leaked = [str(path) for path in written if secret.encode() in path.read_bytes()]
        assert not leaked, f"{secret} found in {leaked}"


def test_the_quality_gate_skips_register(sample_source, tiny_model, tmp_path):
    parameters = {**common_parameters(tiny_model), "epochs": 1, "source_uri": str(sample_source), "registry_uri": str(tmp_path / "registry"),
                  "checkpoint_root": str(tmp_path / "checkpoints"), "min_macro_f1": 1.01, "quantize_int8": False}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", parameters, tmp_path / "runs")
    result = run_module("pipelines.local_run", "--config", str(config), timeout=900)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]  # `make run && make serve` stops here
    assert "quality gate: gate_min refused\n" in result.stdout
    refusal = "is below min_macro_f1 1.01 (the pipeline's quality gate)"
    assert refusal in result.stdout and refusal in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "registry").exists()


@pytest.mark.usefixtures("s3")
def test_a_sweep_runs_locally_with_the_store_on_s3(s3, sample_source, tiny_model, tmp_path):
    source = upload_folder(s3, sample_source, "bucket", "raw")
    parameters = {**common_parameters(tiny_model), "source_uri": source, "registry_uri": "s3://bucket/registry",
                  "checkpoint_root": "s3://bucket/checkpoints", "quantize_int8": False,
                  "keep_checkpoints_after_training": True}  # kept, to see where each trial checkpointed  # fmt: skip
    sweep = {"method": "grid", "space": {"learning_rate": [3e-3, 1e-5]}}
    config = write_config(tmp_path / "config.yaml", parameters, tmp_path / "runs", sweep)
    result = run_module("pipelines.local_run", "--config", str(config), "--pipeline", "sweep", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sweep (macro_f1 on validation, best first): trial 0: " in result.stdout
    run_dir = next((tmp_path / "runs").iterdir())
    tuning = json.loads((run_dir / "select-best" / "tuning" / "tuning_results.json").read_text())
    assert [trial["config"]["learning_rate"] for trial in tuning["trials"]] == [3e-3, 1e-5]  # the better one first
    assert Registry("s3://bucket/registry", "tiny-sentiment").versions() == [1]
    # The best trial's own model is released (select_best points its Model there), not a copy that select_best wrote.
    assert not (run_dir / "select-best" / "model").exists()
    with Registry("s3://bucket/registry", "tiny-sentiment").fetch(1) as (_, _, manifest):
        assert manifest["lineage"]["training"]["learning_rate"] == 3e-3
    assert {
        key.split("/")[2] for key in (item["Key"] for item in s3.list_objects_v2(Bucket="bucket", Prefix="checkpoints/")["Contents"])
    } == {"trial-0", "trial-1"}


def test_a_halving_sweep_stops_the_worse_trials_after_the_first_round_and_releases_the_best(sample_source, tiny_model, tmp_path):
    """Three trials, eta 3: all pause after one epoch of three; only the best resumes from its checkpoint and trains to the end."""
    parameters = {**common_parameters(tiny_model), "source_uri": str(sample_source), "registry_uri": str(tmp_path / "registry"),
                  "checkpoint_root": str(tmp_path / "checkpoints"), "quantize_int8": False}  # fmt: skip
    sweep = {"method": "grid", "space": {"learning_rate": [1e-6, 3e-3, 1e-5]}, "strategy": "halving", "eta": 3, "min_epochs": 1}
    config = write_config(tmp_path / "config.yaml", parameters, tmp_path / "runs", sweep)
    result = run_module("pipelines.local_run", "--config", str(config), "--pipeline", "sweep", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run_dir] = (tmp_path / "runs").iterdir()
    [record] = [json.loads(path.read_text()) for path in run_dir.glob("select-survivors*/round_results/round_results.json")]
    assert record["kept"] == ["trial-1"] and sorted(record["stopped"]) == ["trial-0", "trial-2"]
    assert {trial["epochs_completed"] for trial in record["trials"]} == {1}
    assert "halving round 0 (macro_f1 on validation after 1 epoch(s)): kept trial-1 " in result.stdout
    tuning = json.loads((run_dir / "select-best" / "tuning" / "tuning_results.json").read_text())
    [finalist] = tuning["trials"]
    assert finalist["trial_id"] == "trial-1" and finalist["epochs_completed"] == 3 and finalist["config"]["learning_rate"] == 3e-3
    assert json.loads((Path(finalist["model_uri"]) / "train_summary.json").read_text())["resumed_from_checkpoint"] is True
    with Registry(str(tmp_path / "registry"), "tiny-sentiment").fetch(1) as (_, _, manifest):
        assert manifest["lineage"]["trial"] == "trial-1"
    assert not list((tmp_path / "checkpoints").rglob("step-*"))  # the stopped trials' by select_survivors, the finalist's by train


@pytest.mark.skipif(os.getuid() != 0, reason="as a non-root user the containers run as you, and read what you read")
def test_docker_runner_mounts_local_storage_and_refuses_an_input_its_user_cannot_read(tmp_path):
    """`make run RUNNER=docker` as root: the containers run as the image's user in group 0."""
    from components.lib.errors import UserError
    from pipelines.docker_runner import DockerMounts

    model = tmp_path / "model"
    model.mkdir(mode=0o755)
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "model.safetensors").chmod(0o600)  # as safetensors writes it
    registry = tmp_path / "registry"
    (registry / "old-run").mkdir(parents=True, mode=0o755)
    parameters = {"source_uri": "s3://bucket/source", "base_model": str(model), "registry_uri": str(registry), "checkpoint_root": ""}
    with pytest.raises(UserError, match=r"parameters.base_model: .*model.safetensors is not readable by the containers' user \(mode 600\)"):
        DockerMounts.share(parameters)
    (model / "model.safetensors").chmod(0o640)
    DockerMounts.share(parameters)
    assert DockerMounts.volumes[str(model)] == {"bind": str(model), "mode": "ro"}
    assert DockerMounts.volumes[str(registry)] == {"bind": str(registry), "mode": "rw"}
    assert (registry / "old-run").stat().st_mode & 0o020  # earlier runs' folders made group-writable


def write_finished_run(run_dir, metrics: dict, export: dict, task: str = CLASSIFICATION) -> None:
    """The two reports `make run` reads at the end, as evaluate and export write them; no register."""
    with staged_output(str(run_dir / "evaluate" / "evaluation"), extra={"lineage": {TASK_KEY: task}}) as evaluation:
        (evaluation / "metrics.json").write_text(json.dumps(metrics))
    onnx = run_dir / "export" / "onnx"
    onnx.mkdir(parents=True)
    (onnx / "export_report.json").write_text(json.dumps(export))


CLASSIFIER_RUN = (
    {"test": {"accuracy": 0.6, "macro_f1": 0.5}, "baseline_majority_class": {"accuracy": 0.5, "macro_f1": 0.2}},
    {"parity": {"max_abs_logit_diff": 1e-6, "argmax_agreement": 1.0, "rows": 9}, "models": {}},
)
LANGUAGE_MODEL_RUN = (
    {"test": {"perplexity": 76.0, "bits_per_character": 2.49, "next_token_accuracy": 0.15},
     "baseline_ngram": {"perplexity": 64.3, "bits_per_character": 2.4}},
    {"parity": {}, "models": {}},
)  # fmt: skip


@pytest.mark.parametrize(
    "run, task, threshold, status, line",
    [
        (CLASSIFIER_RUN, CLASSIFICATION, {"min_macro_f1": 0.6}, 0,
         "not registered: test macro-F1 0.5000 is below min_macro_f1 0.6 (the pipeline's quality gate)"),
        (CLASSIFIER_RUN, CLASSIFICATION, {"min_macro_f1": 0.4}, 1,
         "error: register did not run, yet test macro-F1 0.5000 passes min_macro_f1 0.4: the quality gate did not evaluate as it should"),
        (LANGUAGE_MODEL_RUN, CAUSAL_LM, {"max_perplexity": 50}, 0,
         "not registered: test perplexity 76.0000 is above max_perplexity 50.0 (the pipeline's quality gate)"),
        (LANGUAGE_MODEL_RUN, CAUSAL_LM, {"max_perplexity": 0}, 1,
         "error: register did not run, yet test perplexity 76.0000 passes max_perplexity 0.0: the quality gate did not evaluate as it should"),
    ],
)  # fmt: skip
def test_the_report_says_why_register_did_not_run_from_the_numbers(run, task, threshold, status, line, tmp_path, capsys):
    from pipelines.run_summary import report

    write_finished_run(tmp_path, *run, task=task)
    assert report(tmp_path, {}, threshold) == status
    captured = capsys.readouterr()
    assert line in captured.out + captured.err
    saved = (tmp_path / "summary.txt").read_text()
    assert line in saved and f"run folder: {tmp_path}" in saved  # the summary, kept in the run folder
    assert captured.out.strip().splitlines()[-1] == f"this summary is saved as {tmp_path / 'summary.txt'}"
    if task == CAUSAL_LM:
        assert "test perplexity 76.00, bits per character 2.4900" in saved and "n-gram baseline: perplexity 64.30" in saved


def write_decision(run_dir, decision: dict) -> None:
    registration = run_dir / "register" / "registration"
    registration.mkdir(parents=True)
    (registration / "registration.json").write_text(json.dumps(decision))


REFUSED_BY_BASELINE = {
    "registered": False, "refused": "the model does not beat the majority-class baseline",
    "checks": [{"check": "gate_min", "result": "passed"}, {"check": "require_beat_baseline", "result": "refused", "why": "the model does not beat the majority-class baseline"},
               {"check": "compare_with_production", "result": "not checked"}],
}  # fmt: skip


@pytest.mark.parametrize("allowed, status", [(False, 3), (True, 0)])
def test_a_run_whose_model_was_not_registered_exits_3_with_the_refusal_last(allowed, status, tmp_path, capsys):
    from pipelines.local_run import NOT_REGISTERED_EXIT_CODE, unregistered_status
    from pipelines.run_summary import report

    write_finished_run(tmp_path, *CLASSIFIER_RUN)
    write_decision(tmp_path, REFUSED_BY_BASELINE)
    assert report(tmp_path, {}, {}) == 0  # the summary itself is fine
    assert unregistered_status(tmp_path, {}, allowed) == status
    captured = capsys.readouterr()
    assert "quality gate: gate_min passed, require_beat_baseline refused, compare_with_production not checked" in captured.out
    if not allowed:
        assert status == NOT_REGISTERED_EXIT_CODE
        assert captured.err.strip().splitlines()[-1] == (
            "error: not registered: the model does not beat the majority-class baseline (exit status 3; allow_unregistered=true exits 0)"
        )
    else:
        assert "allow_unregistered=true: exit status 0 although the model was not registered" in captured.out


def test_a_run_held_back_by_evaluates_check_exits_3_and_a_registered_one_0(tmp_path, capsys):
    from pipelines.local_run import unregistered_status

    write_finished_run(tmp_path / "held", *CLASSIFIER_RUN)
    assert unregistered_status(tmp_path / "held", {"min_macro_f1": 0.6}, False) == 3
    assert "is below min_macro_f1 0.6 (the pipeline's quality gate)" in capsys.readouterr().err.strip().splitlines()[-1]
    write_finished_run(tmp_path / "registered", *CLASSIFIER_RUN)
    write_decision(tmp_path / "registered", {"registered": True, "model_name": "m", "version": 1, "uri": "x/m/1", "checks": []})
    assert unregistered_status(tmp_path / "registered", {}, False) == 0


def test_the_summary_says_when_export_dropped_the_int8_model(tmp_path, capsys):
    from pipelines.run_summary import report

    latency = {"batch_1": {"p50_ms": 1.0}}
    export = {**CLASSIFIER_RUN[1], "int8_macro_f1_drop": 0.0367,
              "models": {"fp32": {"file": "model.onnx", "test": {"macro_f1": 0.71}, "latency": latency},
                         "int8": {"file": None, "test": {"macro_f1": 0.6761}, "latency": latency}}}  # fmt: skip
    write_finished_run(tmp_path, CLASSIFIER_RUN[0], export)
    report(tmp_path, {}, {})
    out = capsys.readouterr().out
    assert "onnxruntime int8: test macro-F1 0.6761, latency batch 1 p50 1.0 ms; dropped: 0.0367 below fp32" in out
    assert "onnxruntime fp32: test macro-F1 0.7100, latency batch 1 p50 1.0 ms\n" in out


def test_a_typo_on_the_command_line_is_blamed_on_the_command_line_not_the_config():
    result = run_module("pipelines.local_run", "--config", "configs/default.yaml", "text_colum=tweet")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: text_colum=tweet: unknown key (did you mean text_column, label_column, slice_columns?)"
    ]
    assert "configs/default.yaml" not in result.stderr


def test_a_failed_run_leaves_no_empty_folder(tmp_path):
    from pipelines.local_run import remove_empty_folders

    run_dir = tmp_path / "20261207-101010"
    (run_dir / "preprocess" / "dataset").mkdir(parents=True)
    remove_empty_folders(run_dir)
    assert not run_dir.exists()
    (run_dir / "preprocess" / "dataset").mkdir(parents=True)
    (run_dir / "tokenize" / "tokenized").mkdir(parents=True)
    (run_dir / "preprocess" / "dataset" / "rejects.parquet").write_text("kept")
    remove_empty_folders(run_dir)
    assert [str(path.relative_to(run_dir)) for path in run_dir.rglob("*")] == [
        "preprocess",
        "preprocess/dataset",
        "preprocess/dataset/rejects.parquet",
    ]


def test_a_user_error_stops_the_run_at_once_and_is_its_last_line(sample_source, tmp_path):
    """A stage that exits with status 2 (a user's mistake) is not retried: the same mistake would fail again."""
    parameters = {"source_uri": str(sample_source), "text_column": "review_text", "model_name": "m", "registry_uri": str(tmp_path / "registry"),
                  "checkpoint_root": str(tmp_path / "checkpoints")}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", parameters, tmp_path / "runs")
    result = run_module("pipelines.local_run", "--config", str(config), timeout=900)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    stage_error = [line.strip() for line in result.stdout.splitlines() if "no column 'review_text'" in line]
    assert len(stage_error) == 1, result.stdout  # one attempt
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"error: the local run stopped: stage preprocess failed: {stage_error[0].removeprefix('error: ')}"
    assert last.endswith("; pass text_column=... with the right name")  # as make run takes it, not --text_column
    assert "UserWarning" not in result.stderr  # kfp.local's warning about resources, which a local run leaves out by design
    assert not list((tmp_path / "runs").iterdir())  # preprocess wrote nothing: no empty run folder is left
    assert "removed: no stage wrote anything" in result.stdout


def test_a_stage_style_flag_gets_the_key_value_spelling():
    result = run_module("pipelines.local_run", "--config", "configs/default.yaml", "epochs=2", "--learning_rate", "3e-5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --learning_rate: overrides are key=value, not flags: write learning_rate=3e-5 (--help lists the keys)"
    ]


def test_help_lists_every_config_key_with_its_default_help_and_the_configs_value(tmp_path):
    from pipelines.parameters import pipeline_parameters

    config = write_config(tmp_path / "config.yaml", {"epochs": 7}, tmp_path / "runs")
    result = run_module("pipelines.local_run", "--config", str(config), "--help")
    assert result.returncode == 0, result.stderr
    declared, help_texts = pipeline_parameters()
    for parameter in declared:
        assert f"\n  {parameter.name} (" in result.stdout
        assert " ".join(help_texts[parameter.name].split()[:4]) in result.stdout
    [epochs] = [parameter for parameter in declared if parameter.name == "epochs"]
    assert f"  epochs (int, default {epochs.default}; {config}: 7)\n      {help_texts['epochs']}" in result.stdout
    assert "  kubeflow.cpu_resources.memory_limit=8Gi\n" in result.stdout and "  local.run_root=runs\n" in result.stdout


def test_a_missing_required_parameter_is_one_line(tmp_path):
    config = write_config(tmp_path / "config.yaml", {"source_uri": "data/sample/drugscom"}, tmp_path / "runs")
    result = run_module("pipelines.local_run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: parameters.registry_uri: required, and the config does not set it ({REGISTRY_URI.help.rstrip('.')});"
        " set it there or add registry_uri=..."
    ]


def test_make_clean_keeps_the_registry(tmp_path):
    """The registry holds the registered models; run folders, checkpoints and build outputs can go."""
    import shutil
    import subprocess

    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    kept = tmp_path / "runs" / "registry" / "tiny-sentiment" / "1"
    removed = [tmp_path / "runs" / "20260101-120000" / "train", tmp_path / "runs" / "20260101-120000-1", tmp_path / "runs" / "checkpoints" / "x",
               tmp_path / "build"]  # fmt: skip
    for folder in [kept, *removed]:
        folder.mkdir(parents=True)
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True)
    assert kept.is_dir()
    assert not [folder for folder in removed if folder.exists()]


def test_numbers_written_without_a_dot_are_numbers():
    """YAML 1.1 (PyYAML) reads `3e-5` as text: the README's `learning_rate=3e-5` was refused as "expected float"."""
    config = load_config("configs/default.yaml", ["learning_rate=3e-5", "sweep.space={learning_rate: [1e-5, 2E-5]}", "model_name=1e5x"])
    assert config.parameters["learning_rate"] == 3e-5
    assert config.sweep.space == {"learning_rate": [1e-5, 2e-5]}
    assert config.parameters["model_name"] == "1e5x"


def test_when_register_did_not_run_the_gate_line_names_evaluates_refusing_check(tmp_path, capsys):
    from pipelines.run_summary import report

    write_finished_run(tmp_path, *CLASSIFIER_RUN)
    report(tmp_path, {}, {"min_macro_f1": 0.6})
    assert "quality gate: gate_min refused\n" in capsys.readouterr().out


def test_a_kept_int8_model_is_not_called_dropped(tmp_path, capsys):
    from pipelines.run_summary import report

    latency = {"batch_1": {"p50_ms": 1.0}}
    export = {**CLASSIFIER_RUN[1], "int8_macro_f1_drop": 0.001,
              "models": {"fp32": {"file": "model.onnx", "test": {"macro_f1": 0.71}, "latency": latency},
                         "int8": {"file": "model.int8.onnx", "test": {"macro_f1": 0.709}, "latency": latency}}}  # fmt: skip
    write_finished_run(tmp_path, CLASSIFIER_RUN[0], export)
    report(tmp_path, {}, {})
    assert "dropped" not in capsys.readouterr().out


def test_local_keys_may_be_given_bare_and_a_sections_mistake_is_blamed_where_it_was_typed():
    from components.lib.errors import UserError

    assert load_config("configs/default.yaml", ["allow_unregistered=true"]).local.allow_unregistered is True
    with pytest.raises(UserError, match=r"^local\.allow_unregistered=maybe: expected bool"):
        load_config("configs/default.yaml", ["local.allow_unregistered=maybe"])
    with pytest.raises(UserError, match=r"^local\.run_roo=x: unknown key"):
        load_config("configs/default.yaml", ["local.run_roo=x"])


def test_the_docker_runner_tells_the_stages_to_write_hints_as_make_run_takes_them(monkeypatch):
    from kfp import local

    from components.lib.errors import FLAG_STYLE_ENV, KEY_VALUE_STYLE
    from pipelines.docker_runner import docker_runner

    monkeypatch.setattr(local, "DockerRunner", lambda **settings: settings)
    assert docker_runner()["environment"][FLAG_STYLE_ENV] == KEY_VALUE_STYLE
