"""`make pipeline-submit` against a stub of the KFP REST API on loopback."""

import hashlib
import shutil
import socket
import time
from pathlib import Path

import pytest
import yaml

from pipelines.parameters import store_scope
from tests.conftest import REPO, run_module
from tests.kfp_stub import KfpStub

CONFIG = REPO / "tests" / "golden" / "config.yaml"
FINGERPRINT = "0" * 64
NO_S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true"}


def version_name(package_text: str, qualifier: str = "") -> str:
    """What the version uploaded from that YAML is called: the golden config's image tag, then the content hash."""
    return f"0.1.0{qualifier}-{hashlib.sha256(package_text.encode()).hexdigest()[:12]}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    result = run_module("pipelines.compile", "--config", str(CONFIG), "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def stub():
    server = KfpStub(expected_token="test-token-abc")
    yield server
    server.stop()


def submit(compiled: Path, tmp_path, env: dict, *extra: str, fingerprint: str | None = FINGERPRINT):
    return run_module(
        "pipelines.submit",
        "--config",
        str(CONFIG),
        "--package",
        str(compiled),
        *([f"source_fingerprint={fingerprint}"] if fingerprint else []),
        *extra,
        env={"HOME": str(tmp_path), **env},
    )


def test_submit_uploads_a_named_version_and_runs_it_with_the_configs_parameters(compiled, stub, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc"}, "epochs=2")
    assert result.returncode == 0, result.stderr
    run = stub.runs[0]
    # Short, and the run's URL last: no kfp FutureWarning, no kfp "details" links.
    assert result.stdout.strip().splitlines()[-2:] == [f"run id: {run['run_id']}", f"run: {stub.url}/#/runs/details/{run['run_id']}"]
    assert result.stderr == ""
    (pipeline,) = stub.pipelines.values()
    (version,) = stub.versions.values()
    assert pipeline["display_name"] == "textclf-training" and pipeline["namespace"] == "team-nlp"
    assert version["display_name"] == version_name(compiled.read_text()) and version["pipeline_id"] == pipeline["pipeline_id"]
    assert stub.packages[version["pipeline_version_id"]] == compiled.read_text()
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert f"pipeline: textclf-training, version {version['display_name']} (uploaded)" in result.stdout
    config = yaml.safe_load(CONFIG.read_text())
    # The store the run writes to is in every task's cache key (the backend's key leaves out the pipeline root).
    scope = store_scope(config["kubeflow"]["pipeline_root"], config["kubeflow"].get("s3_endpoint", ""), "textclf-s3")
    expected = {**config["parameters"], "epochs": 2, "source_fingerprint": FINGERPRINT, "cache_scope": scope}
    assert run["runtime_config"]["parameters"] == expected
    assert run["display_name"] == "golden-run"
    # The backend ignores the compiled pipeline root; the run must carry it, and the service account.
    assert run["runtime_config"]["pipeline_root"] == yaml.safe_load(CONFIG.read_text())["kubeflow"]["pipeline_root"]
    assert run["service_account"] == "default-editor"
    experiment = next(iter(stub.experiments.values()))
    assert experiment["display_name"] == "golden" and run["experiment_id"] == experiment["experiment_id"]
    assert all(request["authorization"] == "Bearer test-token-abc" for request in stub.requests)
    assert "test-token-abc" not in result.stdout + result.stderr


def test_token_is_read_from_the_service_account_file(compiled, stub, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("test-token-abc\n")
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KF_PIPELINES_SA_TOKEN_PATH": str(token_file), "KFP_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    assert stub.runs


def test_refused_token_is_one_clear_line(compiled, stub, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "wrong-token"})
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"pipeline-submit: {stub.url} refused the credentials (HTTP 401); set KFP_TOKEN or check the service account"
    )
    assert "Traceback" not in result.stderr and "wrong-token" not in result.stdout + result.stderr


def test_a_login_page_for_an_answer_is_one_clear_line(compiled, stub, tmp_path):
    """Without the check, kfp followed the redirect, read the page as an empty answer and failed in a traceback."""
    stub.behind_login = True
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pipeline-submit: {stub.url} answered with a web page (/dex/auth?client_id=kubeflow-oidc-authservice: a login?), not the"
        " Kubeflow Pipelines API; set KFP_HOST to a port-forward of the Pipelines UI (kubectl port-forward -n kubeflow"
        " svc/ml-pipeline-ui 8080:80) and KFP_TOKEN to a service-account token (kubectl create token <account> -n <namespace>"
        " --audience pipelines.kubeflow.org)"
    ]
    assert len(stub.requests) == 2  # the first API request and the login page it was sent to: nothing after it


def test_an_identical_version_is_reused_and_a_changed_one_added_to_the_same_pipeline(compiled, stub, tmp_path):
    environment = {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc"}
    assert submit(compiled, tmp_path, environment).returncode == 0
    again = submit(compiled, tmp_path, environment)
    assert again.returncode == 0, again.stderr
    assert f"version {version_name(compiled.read_text())} (already there)" in again.stdout
    changed = tmp_path / "changed.yaml"
    changed.write_text(compiled.read_text() + "# changed\n")
    assert submit(changed, tmp_path, environment).returncode == 0
    assert len(stub.pipelines) == 1 and len(stub.runs) == 3
    assert sorted(v["display_name"] for v in stub.versions.values()) == sorted(
        map(version_name, [compiled.read_text(), changed.read_text()])
    )
    first, second, third = (run["pipeline_version_reference"]["pipeline_version_id"] for run in stub.runs)
    assert first == second != third


def test_a_version_uploaded_by_a_concurrent_submit_is_reused(compiled, stub, tmp_path):
    stub.concurrent_upload = True
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc"})
    assert result.returncode == 0, result.stderr
    (version,) = stub.versions.values()
    assert stub.runs[0]["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
    assert "(already there)" in result.stdout


def test_unreachable_host_is_one_clear_line(compiled, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": "http://127.0.0.1:9", "KFP_TOKEN": "x"})
    assert result.returncode == 2
    # one line: no kfp FutureWarning, no urllib3 "Retrying ..." lines
    assert result.stderr.strip().splitlines() == [
        "pipeline-submit: cannot reach the Kubeflow Pipelines API at http://127.0.0.1:9 (NewConnectionError: [Errno 111] Connection refused);"
        " check KFP_HOST (else the config's submit.host) or the port-forward"
    ]


def test_a_host_that_never_accepts_fails_within_the_bounded_retries(tmp_path, monkeypatch):
    from components.lib.errors import UserError
    from pipelines import kfp_connection
    from pipelines import submit as module

    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    queued = socket.create_connection(listener.getsockname())  # fills the backlog: later connects hang unanswered
    host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setattr(kfp_connection, "CONNECT_TIMEOUT_S", 0.3)
    monkeypatch.setenv("KFP_TOKEN", "x")
    monkeypatch.setenv("HOME", str(tmp_path))
    submission = module.Submission(host, "team-nlp", "golden", "run", "textclf-training", "0.1.0-0", "", {}, "s3://root", "")
    started = time.monotonic()
    try:
        with pytest.raises(UserError, match=r"timed out\. \(connect timeout=0\.3\)\); check KFP_HOST"):
            module.send(submission)
    finally:
        queued.close()
        listener.close()
    # two tries of 0.3 s and a 0.5 s back-off; kfp's own client tries four times
    assert time.monotonic() - started < 2


def test_dry_run_prints_what_would_be_submitted_and_sends_nothing(compiled, stub, tmp_path):
    # no token, no S3 credentials, no fingerprint given: none is needed
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, **NO_S3_CREDENTIALS}, "epochs=2", "--dry-run", "seed=7", fingerprint=None)
    assert result.returncode == 0, result.stderr
    assert not stub.requests
    lines = result.stdout.splitlines()
    for expected in (
        f"host: {stub.url}",
        "namespace: team-nlp",
        "experiment: golden",
        "pipeline: textclf-training",
        f"pipeline version: {version_name(compiled.read_text())}",
        "run name: golden-run",
        "pipeline root: s3://textclf-pipelines/pipeline-root",
        "service account: default-editor",
        "  source_uri: s3://textclf-data/drugscom",
        "  epochs: 2",
        "  seed: 7",
        "  source_fingerprint: (taken from the source when submitting)",
    ):
        assert expected in lines, f"{expected!r} not in:\n{result.stdout}"
    assert lines[-1] == "dry run: nothing was sent"


def test_without_s3_access_the_fingerprint_error_says_how_to_pass_it(compiled, stub, tmp_path):
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc", **NO_S3_CREDENTIALS}, fingerprint=None)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("pipeline-submit: cannot fingerprint the source from here (s3://textclf-data/drugscom: no S3 credentials found")
    assert 'ARGS=--print-fingerprint` and pass ARGS="source_fingerprint=<sha256>"' in line and "--no-fingerprint" in line
    assert not stub.requests


def test_print_fingerprint_prints_what_preprocess_checks(s3, tmp_path):
    from components.lib import storage
    from tests.conftest import upload_folder

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("review,rating\ngood,9\n")
    uri = upload_folder(s3, tmp_path / "data", "bucket", "reviews")
    result = run_module("pipelines.submit", "--config", str(CONFIG), "--print-fingerprint", f"source_uri={uri}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{storage.fingerprint(uri)}\n"


def test_no_fingerprint_runs_a_version_whose_preprocess_is_never_cached(compiled, stub, tmp_path):
    environment = {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc", **NO_S3_CREDENTIALS}
    result = submit(compiled, tmp_path, environment, "--no-fingerprint", fingerprint=None)
    assert result.returncode == 0, result.stderr
    assert "--no-fingerprint: s3://textclf-data/drugscom is not fingerprinted; preprocess runs uncached" in result.stderr
    (version,) = stub.versions.values()
    uploaded = stub.packages[version["pipeline_version_id"]]
    assert version["display_name"] == version_name(uploaded, "-uncached")
    tasks = next(yaml.safe_load_all(uploaded))["root"]["dag"]["tasks"]
    assert tasks["preprocess"]["cachingOptions"] == {"enableCache": False}
    assert tasks["tokenize"]["cachingOptions"] == {"enableCache": True}  # its input is then always new
    assert "source_fingerprint" not in stub.runs[0]["runtime_config"]["parameters"]
    both = submit(compiled, tmp_path, environment, "--no-fingerprint")
    assert both.returncode == 2
    assert (
        both.stderr.strip() == f"pipeline-submit: source_fingerprint={FINGERPRINT} cannot be used with --no-fingerprint; drop one of them"
    )


def test_schedule_creates_a_recurring_run_of_the_uncached_version(compiled, stub, tmp_path):
    environment = {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc", **NO_S3_CREDENTIALS}
    result = submit(compiled, tmp_path, environment, "--schedule", "0 3 * * *", "--max-concurrency", "2", fingerprint=None)
    assert result.returncode == 0, result.stderr
    (recurring,) = stub.recurring_runs
    assert not stub.runs
    # KFP's cron has seconds first: sent as is, "0 3 * * *" would run at minute 3 of every hour
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert "'0 3 * * *': a crontab line; sent to KFP, whose cron has seconds first, as '0 0 3 * * *'" in result.stderr
    assert int(recurring["max_concurrency"]) == 2 and recurring["no_catchup"] is True and recurring["mode"] == "ENABLE"
    (version,) = stub.versions.values()
    assert "-uncached-" in version["display_name"]
    assert recurring["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
    assert recurring["experiment_id"] in stub.experiments and recurring["service_account"] == "default-editor"
    assert result.stdout.strip().splitlines()[-1] == f"recurring run: {stub.url}/#/recurringrun/details/{recurring['recurring_run_id']}"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--schedule", "0 3 * *"], "--schedule '0 3 * *': a cron expression has 5 fields (minute hour day month weekday"),
        (["--schedule", "0 3 * * *", "--max-concurrency", "11"], "--max-concurrency 11: the KFP API server accepts 1 to 10"),
        (
            ["--schedule", "@daily", f"source_fingerprint={FINGERPRINT}"],
            f"source_fingerprint={FINGERPRINT} cannot be used with --schedule: a recurring run reads the source anew each time",
        ),
        # The KFP driver refuses an empty Secret name and fails every task.
        (["s3_secret_name="], "parameters.s3_secret_name: '' is not the name of a Kubernetes object in the run's namespace"),
        # A run's parameters are stored and shown: a credential inside one is refused before anything is sent.
        (["base_model=https://user:password@models.example.com/bert"], "parameters.base_model: holds a URL with a password in it"),
    ],
)
def test_a_bad_schedule_is_one_line_before_anything_is_sent(compiled, stub, tmp_path, flags, message):
    result = submit(compiled, tmp_path, {"KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc"}, *flags, fingerprint=None)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"pipeline-submit: {message}")
    assert not stub.requests


def test_make_pipeline_submit_compiles_then_submits(stub, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    import os
    import subprocess

    environment = {**os.environ, "KFP_HOST": stub.url, "KFP_TOKEN": "test-token-abc", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["make", "--no-print-directory", "pipeline-submit", f"CONFIG={CONFIG}", f"ARGS=source_fingerprint={FINGERPRINT}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run id: " in result.stdout and stub.runs


def test_submit_and_the_local_run_read_a_config_one_way(tmp_path):
    """Both resolve parameters through pipelines/fan_out.py: a missing required parameter is refused by
    each with the same line, before any work (submit used to send it on to the server)."""
    from components.lib.errors import UserError
    from pipelines import local_run
    from pipelines import submit as submit_module
    from pipelines.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text("parameters: {source_uri: s3://bucket/data, model_name: m}\nkfold: {folds: 2, configurations: {a: {}, b: {seed: 1}}}\n")
    config = load_config(str(path))
    for resolve in (lambda: submit_module.run_parameters(config, "kfold", dry_run=True), lambda: local_run.run(config, "kfold")):
        with pytest.raises(UserError, match=r"^parameters.registry_uri: required, and the config does not set it"):
            resolve()
