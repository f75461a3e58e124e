"""`make pipeline-retry` and `make cluster-check` against the stub of the KFP REST API on loopback."""

import pytest

from pipelines import cluster_check, runs
from tests.conftest import REPO, run_module
from tests.kfp_stub import KfpStub

CONFIG = REPO / "tests" / "golden" / "config.yaml"
TOKEN = "test-token-abc"


@pytest.fixture
def stub(monkeypatch, tmp_path):
    server = KfpStub(expected_token=TOKEN)
    monkeypatch.setenv("KFP_HOST", server.url)
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(runs, "POLL_SECONDS", 0.01)
    yield server
    server.stop()


def test_pod_names_are_argos(stub):
    """argo-workflows workflow/util/pod_name.go, GeneratePodName: <workflow>-<template>-<FNV-1a 32 of the node name>."""
    node = {"id": "wf-1234", "name": "wf.root.train.executor", "templateName": "system-container-impl"}
    # 2754039865: FNV-1a 32 of "wf.root.train.executor", from a C implementation of the reference algorithm
    assert runs.pod_name({}, "wf", node) == "wf-system-container-impl-2754039865"
    assert runs.pod_name({"metadata": {"annotations": {"workflows.argoproj.io/pod-name-format": "v1"}}}, "wf", node) == "wf-1234"


def check(capsys, *flags: str) -> tuple[int, list[str], str]:
    """make cluster-check with the golden config: its exit status, its lines, and what it wrote to stderr."""
    status = cluster_check.main(["--config", str(CONFIG), *flags])
    captured = capsys.readouterr()
    return status, captured.out.strip().splitlines(), captured.err


def test_every_path_passing_is_one_line_each_and_status_0(stub, capsys):
    stub.reads_to_finish = 3  # pending, running, then done: the check waits for all three
    stub.unavailable_reads = 1  # and the API server answers 503 once while it waits
    status, lines, progress = check(capsys, "--deploy")
    assert status == 0, lines
    # The progress while it waits goes to stderr, past kfp's quieted stdout.
    assert all(f"{path}: SUCCEEDED after" in progress for path in ("training", "sweep", "kfold")), progress
    report = [line for line in lines if ": passed" in line or ": FAILED" in line]
    assert [line.split(":")[0] for line in report] == ["training", "deploy", "sweep", "kfold"]
    assert all(": passed" in line for line in report)
    runs_by_name = {run["display_name"].split("-20")[0]: run for run in stub.runs}
    assert set(runs_by_name) == {"textclf-cluster-check-training", "textclf-cluster-check-sweep", "textclf-cluster-check-kfold"}
    training = runs_by_name["textclf-cluster-check-training"]["runtime_config"]["parameters"]
    assert training["model_name"] == "textclf-cluster-check" and training["deploy"] is True
    assert training["source_uri"] == cluster_check.CHECK_SOURCE and training["epochs"] == 1
    sweep = runs_by_name["textclf-cluster-check-sweep"]["runtime_config"]["parameters"]
    assert [trial["learning_rate"] for trial in sweep["sweep_configs"]] == [1e-4, 3e-5]
    kfold = runs_by_name["textclf-cluster-check-kfold"]["runtime_config"]["parameters"]
    assert [item["trial_id"] for item in kfold["kfold_configs"]] == ["lr-1e-4.fold0", "lr-1e-4.fold1"]


def test_a_failing_path_names_its_task_and_error_and_fails_the_check(stub, capsys):
    error = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    stub.failures = {"textclf-sweep": ("train", error)}
    status, lines, _ = check(capsys)
    assert status == 1
    (sweep,) = [line for line in lines if line.startswith("sweep: FAILED")]
    run_id = next(run["run_id"] for run in stub.runs if "sweep" in run["display_name"])
    workflow = stub.workflows[run_id]
    (pod,) = [node for node in workflow["status"]["nodes"].values() if node["phase"] == "Failed"]
    pod_name = runs.pod_name(workflow, workflow["metadata"]["name"], pod)
    assert pod_name.startswith(f"{workflow['metadata']['name']}-retry-system-container-impl-")
    log = f"kubectl logs -n team-nlp {pod_name} -c main"
    assert sweep.startswith(f"sweep: FAILED FAILED at train: {error}; its log: {log} (run "), sweep
    assert any(line.startswith("training: passed") for line in lines) and not any(line.startswith("deploy") for line in lines)


def test_a_deploy_that_never_ran_fails_the_deploy_line(stub, capsys):
    stub.failures = {"textclf-training": ("register", "not registered: below the gate")}
    status, lines, _ = check(capsys, "--deploy")
    assert status == 1
    assert "deploy: FAILED did not run (the run failed before it)" in lines


def test_an_unreachable_host_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:1")
    monkeypatch.setenv("HOME", str(tmp_path))
    status, _, errors = check(capsys)
    assert status == 2
    (line,) = errors.strip().splitlines()
    assert line.startswith("cluster-check: cannot reach the Kubeflow Pipelines API at http://127.0.0.1:1")


def failed_run(stub, capsys) -> str:
    stub.failures = {"textclf-training": ("train", "pod deleted")}
    check(capsys)
    run = next(run for run in stub.runs if "training" in run["display_name"])
    assert run["state"] == "FAILED"
    return run["run_id"]


def test_a_failed_run_is_retried_in_place(stub, capsys, tmp_path):
    run_id = failed_run(stub, capsys)
    result = run_module("pipelines.runs", "retry", run_id, "--config", str(CONFIG), env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert stub.retried == [run_id]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"retrying run {run_id} (FAILED at train: pod deleted; its log: kubectl logs -n team-nlp ")
    assert lines[-1] == f"run: {stub.url}/#/runs/details/{run_id}"


def test_a_run_that_did_not_fail_is_not_retried(stub, capsys, tmp_path):
    run_id = failed_run(stub, capsys)
    next(run for run in stub.runs if run["run_id"] == run_id)["state"] = "SUCCEEDED"
    result = run_module("pipelines.runs", "retry", run_id, "--config", str(CONFIG), env={"HOME": str(tmp_path)})
    assert result.returncode == 2 and stub.retried == []
    assert result.stderr.strip() == f"pipeline-retry: run {run_id} is SUCCEEDED: only a FAILED or CANCELED run can be retried"


def test_make_pipeline_retry_needs_a_run_id(tmp_path):
    result = run_module("pipelines.runs", "retry", " ", "--config", str(CONFIG), env={"HOME": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("pipeline-retry: RUN_ID: empty")
