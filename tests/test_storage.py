"""S3 against a real S3-compatible server on loopback (moto), committed artifacts, and storage faults."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from components.lib import storage
from components.lib.errors import UserError
from components.lib.storage import artifacts
from components.lib.storage.artifacts import MANIFEST, staged_input, staged_output
from tests.conftest import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, run_module, upload_folder
from tests.fault_proxy import FaultProxy


def test_round_trip_on_s3(s3):
    storage.write_text("s3://bucket/a/b.txt", "hello")
    assert storage.read_text("s3://bucket/a/b.txt") == "hello"
    assert storage.exists("s3://bucket/a/b.txt") and not storage.exists("s3://bucket/a/missing")
    assert storage.list_files("s3://bucket/a") == {"b.txt": 5}
    assert storage.create_exclusive("s3://bucket/a/once", b"1") is True
    assert storage.create_exclusive("s3://bucket/a/once", b"2") is False
    assert storage.read_bytes("s3://bucket/a/once") == b"1"
    storage.delete_tree("s3://bucket/a")
    assert storage.list_files("s3://bucket/a") == {}


def test_the_launchers_minio_uris_are_read_over_s3_and_gs_is_refused_in_one_line(s3, tmp_path, monkeypatch):
    """A KFP launcher hands out minio:// artifact URIs (its in-cluster store); select_best reads them."""
    storage.write_text("s3://bucket/pipeline-root/run/train/model/a.txt", "hello")
    assert storage.read_text("minio://bucket/pipeline-root/run/train/model/a.txt") == "hello"
    assert storage.list_files("minio://bucket/pipeline-root/run") == {"train/model/a.txt": 5}
    with staged_output("minio://bucket/models/m") as out:
        (out / "w.bin").write_bytes(b"weights")
    with staged_input("minio://bucket/models/m") as (folder, manifest):
        assert (folder / "w.bin").read_bytes() == b"weights" and "w.bin" in manifest["files"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with pytest.raises(
        UserError, match=r"minio://bucket/x: a minio:// artifact lives in the cluster's KFP object store; set kubeflow.s3_endpoint"
    ):
        storage.read_text("minio://bucket/x")
    with pytest.raises(UserError, match=r"gs://bucket/x: gs:// storage cannot be read here; give the run an S3 or MinIO pipeline root"):
        storage.read_text("gs://bucket/x")


def test_retries_are_standard_mode_with_a_cap(s3, monkeypatch):
    retries = storage.s3_client().meta.config.retries
    assert retries == {"mode": "standard", "total_max_attempts": 8}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    storage.s3_client.cache_clear()
    assert storage.s3_client().meta.config.retries["total_max_attempts"] == 3


def test_the_endpoint_comes_from_aws_endpoint_url(s3, s3_server):
    assert storage.s3_client().meta.endpoint_url == s3_server


def test_committed_artifacts_are_verified_on_read(s3, tmp_path):
    with staged_output("s3://bucket/artifact") as folder:
        (folder / "data.bin").write_bytes(b"x" * 1000)
        (folder / "sub").mkdir()
        (folder / "sub" / "more.txt").write_text("more")
    with staged_input("s3://bucket/artifact") as (local, manifest):
        assert (local / "sub" / "more.txt").read_text() == "more" and set(manifest["files"]) == {"data.bin", "sub/more.txt"}
    s3.put_object(Bucket="bucket", Key="artifact/data.bin", Body=b"x" * 999 + b"y")
    with pytest.raises(UserError, match="data.bin is corrupt"), staged_input("s3://bucket/artifact"):
        pass
    s3.delete_object(Bucket="bucket", Key=f"artifact/{MANIFEST}")
    with pytest.raises(UserError, match="not a committed artifact"), staged_input("s3://bucket/artifact"):
        pass


def test_a_failed_write_leaves_nothing_committed(s3):
    with staged_output("s3://bucket/out") as folder:
        (folder / "first.txt").write_text("one")
    with pytest.raises(RuntimeError), staged_output("s3://bucket/out") as folder:
        (folder / "second.txt").write_text("two")
        raise RuntimeError("the stage crashed")
    assert not storage.exists(f"s3://bucket/out/{MANIFEST}")  # the old commit is gone too, never mixed with new files


def test_s3_listing_skips_folder_markers(s3):
    """Console tools create `folder/` keys; they are not files, and no name is '' or ends in '/'."""
    for key in ("a/", "a/sub/", "a/b.txt", "a/sub/c.txt"):
        s3.put_object(Bucket="bucket", Key=key, Body=b"" if key.endswith("/") else b"xy")
    assert storage.list_files("s3://bucket/a") == {"b.txt": 2, "sub/c.txt": 2}


def test_s3_delete_tree_removes_every_key_as_listed_and_nothing_beside(s3):
    for key in ("a/", "a/b.txt", "a//doubled.txt", "a/x/../y", "ab/keep.txt", "doubled.txt"):
        s3.put_object(Bucket="bucket", Key=key, Body=b"1")
    storage.delete_tree("s3://bucket/a")
    assert sorted(item["Key"] for item in s3.list_objects_v2(Bucket="bucket")["Contents"]) == ["ab/keep.txt", "doubled.txt"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_byte_flipped_without_changing_the_size_is_refused(where, request, tmp_path):
    uri = str(tmp_path / "artifact") if where == "local" else "s3://bucket/artifact"
    if where == "s3":
        request.getfixturevalue("s3")
    with staged_output(uri) as folder:
        (folder / "data.bin").write_bytes(b"abcdef" * 100)
    storage.write_bytes(storage.join(uri, "data.bin"), b"abcdeF" + b"abcdef" * 99)
    with pytest.raises(UserError, match="data.bin is corrupt"), staged_input(uri):
        pass


def test_a_local_rerun_that_writes_fewer_files_leaves_none_of_the_old_ones(tmp_path):
    uri = str(tmp_path / "out")
    with staged_output(uri) as folder:
        for name in ("model.onnx", "model.int8.onnx", "sub/old.txt"):
            (folder / name).parent.mkdir(exist_ok=True)
            (folder / name).write_text(name)
    with staged_output(uri) as folder:
        (folder / "model.onnx").write_text("new")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [MANIFEST, "model.onnx"]
    with staged_input(uri) as (local, manifest):
        assert set(manifest["files"]) == {"model.onnx"} and (local / "model.onnx").read_text() == "new"


def test_a_local_rerun_that_fails_commits_nothing_and_leaves_no_staging_behind(tmp_path):
    uri = str(tmp_path / "out")
    with staged_output(uri) as folder:
        (folder / "first.txt").write_text("one")
    with pytest.raises(RuntimeError), staged_output(uri) as folder:
        (folder / "second.txt").write_text("two")
        raise RuntimeError("the stage crashed")
    # old and uncommitted, with the claim that lets the stage's rerun finish (storage/artifacts.py, claim_output)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [artifacts.CLAIM, "first.txt"]
    with pytest.raises(UserError, match="not a committed artifact"), staged_input(uri):
        pass


def test_a_local_output_keeps_its_hidden_bookkeeping_and_its_folder(tmp_path):
    """The registry claims a version by `<version>/.claim` before it writes the version there."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".claim").write_text("token")
    with staged_output(str(out)) as folder:
        (folder / "a.txt").write_text("a")
    assert (out / ".claim").read_text() == "token" and sorted(path.name for path in out.iterdir()) == [".claim", MANIFEST, "a.txt"]


def test_a_local_output_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(UserError, match=f"^{tmp_path / 'out'}: is a file"), staged_output(str(tmp_path / "out")):
        pass


def test_a_local_listing_skips_what_another_writer_removes_meanwhile(tmp_path):
    """A registry or checkpoint root is listed while other processes commit and delete folders in it."""
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            staging = tmp_path / "version" / ".staging" / "sub"
            staging.mkdir(parents=True, exist_ok=True)
            for index in range(20):
                (staging / f"{index}.bin").write_bytes(b"x")
            shutil.rmtree(tmp_path / "version" / ".staging")

    (tmp_path / "kept.txt").write_text("kept")
    writer = threading.Thread(target=churn)
    writer.start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert storage.list_files(str(tmp_path))["kept.txt"] == 4
    finally:
        stop.set()
        writer.join()


def test_every_stage_runs_alone_from_s3_uris(s3, sample_source, tiny_model, tmp_path, caplog):
    caplog.set_level("INFO")
    from components.evaluate import evaluate
    from components.export import export
    from components.preprocess import preprocess
    from components.register import register
    from components.tokenize import tokenize
    from components.train import train

    source = upload_folder(s3, sample_source, "bucket", "raw")
    base = upload_folder(s3, tiny_model, "bucket", "models/tiny")
    preprocess(input_uri=source, output_uri="s3://bucket/run/data")
    tokenize(data_uri="s3://bucket/run/data", output_uri="s3://bucket/run/tokens", base_model=base, max_length=32)
    train(data_uri="s3://bucket/run/tokens", output_uri="s3://bucket/run/model", base_model=base, epochs=2, batch_size=8, learning_rate=5e-3,
          report_to="none", checkpoint_uri="s3://bucket/checkpoints", run_id="run-1", checkpoint_every_steps=10)  # fmt: skip
    evaluate(model_uri="s3://bucket/run/model", data_uri="s3://bucket/run/tokens", output_uri="s3://bucket/run/evaluation")
    export(model_uri="s3://bucket/run/model", data_uri="s3://bucket/run/tokens", output_uri="s3://bucket/run/onnx", latency_runs=3)
    result = register(export_uri="s3://bucket/run/onnx", evaluation_uri="s3://bucket/run/evaluation", model_uri="s3://bucket/run/model",
                      data_uri="s3://bucket/run/tokens", registry_uri="s3://bucket/registry", model_name="tiny", output_uri="s3://bucket/run/registration")  # fmt: skip
    assert result.summary["registered"] and result.summary["uri"] == "s3://bucket/registry/tiny/1"
    assert storage.exists("s3://bucket/registry/tiny/1/model.onnx")
    # train checkpointed on S3, then removed the checkpoints once the model was committed
    assert (
        "removed the checkpoints of this finished run from s3://bucket/checkpoints/run-1 (best, step-00000030, step-00000040)"
        in caplog.text
    )
    assert not storage.list_files("s3://bucket/checkpoints/run-1")
    assert json.loads(storage.read_text("s3://bucket/registry/tiny/aliases/latest.json"))["version"] == 1
    manifest = json.loads(storage.read_text("s3://bucket/registry/tiny/1/MANIFEST.json"))
    assert manifest["lineage"]["source_uri"] == source and manifest["lineage"]["base_model"] == base


def preprocess_cli(source: str, out: str, env: dict):
    return run_module("components.preprocess", "--input_uri", source, "--output_uri", out, env=env)


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "s3://no-such-bucket/data",
            "error: s3://no-such-bucket/data: the bucket 'no-such-bucket' does not exist; create it or fix the URI",
        ),
        ("s3://bucket/no/such/key.csv", "error: s3://bucket/no/such/key.csv: no such object or prefix; check the URI"),
    ],
)
def test_missing_bucket_or_key_is_one_line(source, expected, s3, tmp_path):
    result = preprocess_cli(source, str(tmp_path / "out"), env=dict(os.environ))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [expected]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_wrong_credentials_are_one_line(tmp_path):
    """A second S3 server that checks credentials from its first request on."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
               "AWS_REGION": "us-east-1", "HOME": str(tmp_path)}  # fmt: skip
        result = preprocess_cli("s3://bucket/data", str(tmp_path / "out"), env=env)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: s3://bucket/data: access denied (") and "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line
    assert FAKE_SECRET_KEY not in result.stderr


def test_unreachable_endpoint_is_one_line(tmp_path):
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_MAX_ATTEMPTS": "2",
        "HOME": str(tmp_path),
    }
    result = preprocess_cli("s3://bucket/data", str(tmp_path / "out"), env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: s3://bucket/data: cannot reach the S3 endpoint {env['AWS_ENDPOINT_URL']} after retries")


FAULT_RATES = {"error": 0.06, "reset": 0.04, "lost_response": 0.04, "truncate": 0.04, "corrupt": 0.04, "delay": 0.02}


def test_stages_under_storage_faults_never_accept_a_corrupt_artifact(s3, s3_server, sample_source, tiny_model, monkeypatch, tmp_path):
    """Preprocess and tokenize, S3 to S3, many times through a proxy that breaks a share of requests.

    Every run must either succeed, with output identical to a fault-free run, or fail with a
    UserError; a corrupt artifact accepted by the next stage would count against the test.
    """
    from components.preprocess import preprocess
    from components.tokenize import tokenize

    source = upload_folder(s3, sample_source, "bucket", "raw")
    base = upload_folder(s3, tiny_model, "bucket", "models/tiny")
    preprocess(input_uri=source, output_uri="s3://bucket/reference/data")
    tokenize(data_uri="s3://bucket/reference/data", output_uri="s3://bucket/reference/tokens", base_model=base, max_length=32)
    reference = read_tokens("s3://bucket/reference/tokens")

    from botocore.retries import standard

    # Same retries, shorter waits: botocore's backoff (up to seconds per retry) scaled down 20x.
    original_delay = standard.ExponentialBackoff.delay_amount
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: original_delay(self, context) / 20)
    proxy = FaultProxy(s3_server, FAULT_RATES, seed=1234)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")  # few attempts, so that some runs do fail
    storage.s3_client.cache_clear()
    outcomes = {"succeeded": 0, "failed_cleanly": 0, "corrupt_accepted": 0}
    runs = 30
    try:
        for run in range(runs):
            try:
                preprocess(input_uri=source, output_uri=f"s3://bucket/faulty/{run}/data")
                tokenize(
                    data_uri=f"s3://bucket/faulty/{run}/data", output_uri=f"s3://bucket/faulty/{run}/tokens", base_model=base, max_length=32
                )
                tokens = read_tokens(f"s3://bucket/faulty/{run}/tokens")  # the next stage's read, also through the faults
            except UserError:
                outcomes["failed_cleanly"] += 1
                continue
            outcomes["succeeded" if tokens == reference else "corrupt_accepted"] += 1
    finally:
        proxy.enabled = False
        storage.s3_client.cache_clear()
        proxy.stop()
    report = {"runs": runs, **outcomes, "requests": sum(proxy.fates.values()), "faulted": proxy.faulted, "by_fault": dict(proxy.fates)}
    print(f"\nfault injection: {json.dumps(report)}")
    assert outcomes["corrupt_accepted"] == 0
    assert outcomes["succeeded"] > 0 and proxy.faulted > 50
    assert outcomes["succeeded"] + outcomes["failed_cleanly"] == runs


def read_tokens(uri: str) -> dict:
    with staged_input(uri) as (folder, _):
        return {split: pq.read_table(folder / f"{split}.parquet").to_pylist() for split in ("train", "validation", "test")}
