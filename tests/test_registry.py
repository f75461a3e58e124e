"""register and the registry: versions, the quality gate, aliases, verification, concurrency."""

import json
import random
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from components.evaluate import evaluate
from components.export import export
from components.lib import storage
from components.lib.errors import UserError
from components.lib.storage.artifacts import commit, staged_input, staged_output
from components.lib.storage.registry import CLAIM, Registry, check_alias, check_model_name
from components.lib.tasks import classification_gate
from components.preprocess import preprocess
from components.register import register
from components.tokenize import tokenize
from components.train import train
from tests.conftest import FILLER, LABELS, WORDS, labelled_rows, run_module, train_flags, write_parquet


@pytest.fixture(scope="module")
def release(prepared_data, tiny_model, tmp_path_factory) -> dict:
    """A trained, evaluated and exported tiny model: the inputs of register."""
    root = tmp_path_factory.mktemp("release")
    tokens = prepared_data[1]
    train(
        data_uri=str(tokens),
        output_uri=str(root / "model"),
        base_model=str(tiny_model),
        **train_flags(epochs=5, batch_size=4, learning_rate=3e-3),
    )
    evaluate(model_uri=str(root / "model"), data_uri=str(tokens), output_uri=str(root / "evaluation"))
    export(model_uri=str(root / "model"), data_uri=str(tokens), output_uri=str(root / "onnx"), latency_runs=2)
    return {
        "export_uri": str(root / "onnx"),
        "evaluation_uri": str(root / "evaluation"),
        "model_uri": str(root / "model"),
        "data_uri": str(tokens),
    }


def register_into(release, registry: str, out: Path, **flags):
    return register(**release, registry_uri=registry, model_name=flags.pop("model_name", "sentiment"), output_uri=str(out), **flags)


def test_a_version_holds_the_model_its_card_and_a_manifest_with_lineage(release, tmp_path):
    result = register_into(release, str(tmp_path / "registry"), tmp_path / "decision")
    version = tmp_path / "registry" / "sentiment" / "1"
    assert result.summary["registered"] and result.summary["version"] == 1
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "labels.json", "metrics.json", "MODEL_CARD.md", "MANIFEST.json"} <= {
        p.name for p in version.iterdir()
    }
    manifest = json.loads((version / "MANIFEST.json").read_text())
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    lineage = manifest["lineage"]
    assert {"source_uri", "source_fingerprint", "base_model", "training", "code_version"} <= set(lineage)
    assert lineage["training"]["learning_rate"] == 3e-3 and lineage["code_version"]["package"] == "0.1.0"
    card = (version / "MODEL_CARD.md").read_text()
    for heading in ("## Intended use", "## Limits", "## Test scores", "## Training", "## Lineage", "model.int8.onnx"):
        assert heading in card
    assert json.loads((tmp_path / "decision" / "registration.json").read_text())["uri"] == str(version)


def test_versions_are_never_overwritten_and_latest_moves_forward(release, tmp_path):
    for _ in range(3):
        register_into(release, str(tmp_path / "registry"), tmp_path / "decision")
    registry = Registry(str(tmp_path / "registry"), "sentiment")
    assert registry.versions() == [1, 2, 3] and registry.read_alias("latest") == 3
    assert registry.move_alias("latest", 2, only_forward=True) is False and registry.read_alias("latest") == 3


def test_the_gate_refuses_below_the_minimum_without_crashing(release, tmp_path):
    result = run_module("components.register", *flags_of(release), "--registry_uri", str(tmp_path / "registry"), "--model_name", "sentiment",
                        "--output_uri", str(tmp_path / "decision"), "--gate_min", "1.01")  # fmt: skip
    assert result.returncode == 0
    assert "components.register: not registered: test macro_f1 " in result.stderr and "is below --gate_min 1.01" in result.stderr
    assert not (tmp_path / "registry" / "sentiment").exists()
    decision = json.loads((tmp_path / "decision" / "registration.json").read_text())
    assert decision["registered"] is False and "below --gate_min" in decision["refused"]


def flags_of(release: dict) -> list[str]:
    return [part for key, value in release.items() for part in (f"--{key}", value)]


def shifted_export(release: dict, folder: Path, shift: float) -> dict:
    """The release with its export's first-class logit bias raised by `shift`: a model that answers that class more often."""
    shutil.copytree(release["export_uri"], folder)
    graph = onnx.load(folder / "model.onnx")
    [bias] = [tensor for tensor in graph.graph.initializer if "classifier" in tensor.name and tensor.name.endswith("bias")]
    values = onnx.numpy_helper.to_array(bias).copy()
    values[0] += shift
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    onnx.save(graph, folder / "model.onnx")
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    commit(folder, str(folder), extra={key: value for key, value in manifest.items() if key not in ("files", "committed_at")})
    return {**release, "export_uri": str(folder)}


@pytest.fixture
def production_registry(release, tmp_path) -> str:
    registry = str(tmp_path / "registry")
    register_into(release, registry, tmp_path / "first")
    Registry(registry, "sentiment").move_alias("production", 1)
    return registry


def test_the_same_model_as_production_registers_with_the_comparison_on_record(release, production_registry, tmp_path):
    result = register_into(release, production_registry, tmp_path / "second", max_regression=0.0, min_slice_rows=1)
    assert result.summary["registered"]
    comparison = json.loads((tmp_path / "second" / "registration.json").read_text())["production_comparison"]
    assert comparison["version"] == 1 and comparison["candidate"] == comparison["production"]
    assert comparison["difference"] == 0.0 and comparison["interval_95"] == [0.0, 0.0] and comparison["p_value"] == 1.0
    assert comparison["slices"] and all(entry["difference"] == 0.0 and entry["p_value"] == 1.0 for entry in comparison["slices"])
    card = (Path(result.summary["uri"]) / "MODEL_CARD.md").read_text()
    assert "## Against production" in card and "Paired bootstrap of 45 rows (1000 resamples): difference +0.0000" in card
    assert "By slice of the test split (95% bootstrap intervals):" in card
    from pipelines.run_summary import gate_lines

    assert any(
        line.startswith("against production v1: macro_f1 ") and "paired bootstrap: p = 1 that it is no more than 0.0 worse" in line
        for line in gate_lines(result.summary)
    )


def test_a_candidate_significantly_worse_than_production_is_refused(release, production_registry, tmp_path):
    worse = shifted_export(release, tmp_path / "worse", 50.0)  # answers the first class whatever the text
    refused = register_into(worse, production_registry, tmp_path / "third", max_regression=0.05)
    assert refused.summary["registered"] is False
    assert "more than --max_regression 0.05 below production, significantly (version 1:" in refused.summary["refused"]
    assert refused.summary["production_comparison"]["p_value"] < 0.05 and refused.summary["production_comparison"]["difference"] < -0.05
    assert Registry(production_registry, "sentiment").versions() == [1]


def test_a_candidate_worse_within_noise_registers_by_the_bootstrap_but_not_by_its_score_alone(release, production_registry, tmp_path):
    """A candidate that errs on a row or two more than production, of 45 test rows: the paired bootstrap finds that
    within noise (p >= 0.05) and registers it; --significance 0 compares the scores alone and refuses it."""
    logits, _ = classification_gate.version_test_logits(Path(release["export_uri"]), Path(release["data_uri"]))
    room = np.sort(logits.max(axis=1) - logits[:, 0])  # how far below each row's answer the first class's logit is
    room = room[room > 0]
    candidate = shifted_export(release, tmp_path / "shifted", float(room[:2].mean()))  # turns the one closest row to the first class
    decision = register_into(candidate, production_registry, tmp_path / "decision", max_regression=0.0).summary
    assert decision["production_comparison"]["difference"] < 0, "the shift turned no row wrong"
    assert decision["registered"] is True and decision["production_comparison"]["p_value"] >= 0.05, json.dumps(decision)
    refused = register_into(candidate, production_registry, tmp_path / "point", max_regression=0.0, significance=0.0).summary
    assert refused["registered"] is False and "below production (version 1:" in refused["refused"]
    assert "p_value" not in refused["production_comparison"]


def test_eight_concurrent_registrations_get_eight_versions(release, tmp_path):
    registry = str(tmp_path / "registry")
    results, errors = [], []

    def one(index: int) -> None:
        try:
            results.append(
                register_into(release, registry, tmp_path / f"decision-{index}", compare_with_production=False).summary["version"]
            )
        except Exception as error:  # collected and shown below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and sorted(results) == list(range(1, 9))
    assert Registry(registry, "sentiment").versions() == list(range(1, 9))
    assert Registry(registry, "sentiment").read_alias("latest") == 8
    for version in range(1, 9):
        with Registry(registry, "sentiment").fetch(version):
            pass  # every file of every version verifies


def test_eight_concurrent_registrations_on_s3(release, s3, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        versions = list(
            pool.map(
                lambda index: register_into(release, "s3://bucket/registry", tmp_path / f"d{index}", compare_with_production=False).summary[
                    "version"
                ],
                range(8),
            )
        )
    assert sorted(versions) == list(range(1, 9))
    registry = Registry("s3://bucket/registry", "sentiment")
    assert registry.versions() == list(range(1, 9))
    # moto's If-Match is not atomic under races (real S3's is), so only check that latest is a real version
    assert registry.read_alias("latest") in range(1, 9)


@pytest.mark.parametrize("name", ["../escape", "a/b", "has space", "", ".hidden", "x" * 101, "a..b", "sentiment\n"])
def test_unsafe_model_names_are_refused(name, release, tmp_path):
    with pytest.raises(UserError, match="--model_name"):
        register_into(release, str(tmp_path / "registry"), tmp_path / "decision", model_name=name)
    assert not (tmp_path / "registry").exists()


@pytest.mark.parametrize(
    "check, value",
    [
        (check_model_name, "sentiment\n"),  # `$` matches before a trailing newline: every pattern ends in \Z
        (check_alias, "production\n"),
        (check_alias, "production\n\n"),
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(check, value):
    with pytest.raises(UserError):
        check(value)


def test_loading_a_version_checks_every_sha256(release, tmp_path):
    registry = str(tmp_path / "registry")
    register_into(release, registry, tmp_path / "decision")
    tokenizer = tmp_path / "registry" / "sentiment" / "1" / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    result = run_module(
        "components.registry",
        "fetch",
        "--registry_uri",
        registry,
        "--model_name",
        "sentiment",
        "--version",
        "latest",
        "--destination",
        str(tmp_path / "got"),
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'registry' / 'sentiment' / '1'}: tokenizer.json is corrupt (size or sha256 differs from MANIFEST.json); run the stage that writes it again"
    )
    assert not (tmp_path / "got").exists()


def test_the_registry_command_lists_promotes_and_fetches(release, tmp_path):
    registry = str(tmp_path / "registry")
    register_into(release, registry, tmp_path / "a")
    register_into(release, registry, tmp_path / "b")
    common = ["--registry_uri", registry, "--model_name", "sentiment"]
    promoted = run_module("components.registry", "promote", *common, "--version", "1")
    assert promoted.returncode == 0 and json.loads(promoted.stdout)["version"] == 1
    listed = run_module("components.registry", "list", *common)
    lines = listed.stdout.strip().splitlines()
    assert lines[0].split() == ["version", "registered", "at", "accuracy", "macro_f1", "aliases"]
    assert lines[1].split()[0] == "1" and lines[1].endswith("production") and lines[2].endswith("latest")
    as_json = json.loads(run_module("components.registry", "list", *common, "--as_json").stdout)
    assert [row["aliases"] for row in as_json["versions"]] == [["production"], ["latest"]]
    assert "macro_f1" in as_json["versions"][0]["metrics"]
    fetched = run_module("components.registry", "fetch", *common, "--destination", str(tmp_path / "serving"))
    assert fetched.returncode == 0 and (tmp_path / "serving" / "model.onnx").is_file()
    missing = run_module("components.registry", "promote", *common, "--version", "7")
    assert (
        missing.returncode == 2
        and missing.stderr.strip() == f"error: {storage.join(registry, 'sentiment', '7')}: no committed version 7; see the list command"
    )


# ----- registries built by hand: fast, and free to hold what a real run never writes -----------------
def add_version(registry: str, version: int, files: dict[str, bytes]) -> str:
    uri = Registry(registry, "sentiment").version_uri(version)
    with staged_output(uri) as out:
        for name, data in files.items():
            (out / name).write_bytes(data)
    return uri


def registry_root(where: str, tmp_path: Path, request) -> str:
    if where == "s3":
        request.getfixturevalue("s3")
        return "s3://bucket/registry"
    return str(tmp_path / "registry")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_claimants_that_saw_the_same_free_number_get_different_versions(where, tmp_path, request, monkeypatch):
    """Both listed the registry before either claimed: the exclusive create alone keeps them apart."""
    registry = Registry(registry_root(where, tmp_path, request), "sentiment")
    monkeypatch.setattr(Registry, "versions", lambda self, committed_only=True: [])
    assert [registry.claim_next_version() for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_claim_where_the_marker_exists_does_not_succeed_or_overwrite_it(where, tmp_path, request):
    claim = storage.join(registry_root(where, tmp_path, request), "sentiment", "1", CLAIM)
    assert storage.create_exclusive(claim, b"first") is True
    assert storage.create_exclusive(claim, b"second") is False
    assert storage.read_bytes(claim) == b"first"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_fetch_refuses_a_byte_flipped_without_changing_the_size(where, tmp_path, request):
    root = registry_root(where, tmp_path, request)
    uri = add_version(root, 1, {"model.onnx": b"\x00\x01" * 500})
    storage.write_bytes(storage.join(uri, "model.onnx"), b"\x00\x02" + b"\x00\x01" * 499)
    result = run_module("components.registry", "fetch", "--registry_uri", root, "--model_name", "sentiment", "--version", "1",
                        "--destination", str(tmp_path / "got"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {uri}: model.onnx is corrupt (size or sha256 differs from MANIFEST.json); run the stage that writes it again"
    ]
    assert not (tmp_path / "got").exists()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_fetch_gives_a_committed_copy(where, tmp_path, request):
    root = registry_root(where, tmp_path, request)
    add_version(root, 1, {"model.onnx": b"weights", "labels.json": b"[]"})
    result = run_module("components.registry", "fetch", "--registry_uri", root, "--model_name", "sentiment", "--version", "1",
                        "--destination", str(tmp_path / "got"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    with staged_input(str(tmp_path / "got")) as (folder, manifest):
        assert set(manifest["files"]) == {"model.onnx", "labels.json"} and (folder / "model.onnx").read_bytes() == b"weights"


def test_folders_and_files_that_are_no_versions_or_aliases_are_ignored(tmp_path):
    root = str(tmp_path / "registry")
    add_version(root, 1, {"a.txt": b"a"})
    for stray in ("01", "²", "1.5"):
        shutil.copytree(tmp_path / "registry" / "sentiment" / "1", tmp_path / "registry" / "sentiment" / stray)
    aliases = tmp_path / "registry" / "sentiment" / "aliases"
    aliases.mkdir()
    (aliases / "Not An Alias.json").write_text("{}")
    (aliases / "latest.json").write_text('{"version": 1}')
    registry = Registry(root, "sentiment")
    assert registry.versions() == [1] and registry.aliases() == {"latest": 1}


@pytest.mark.parametrize("version", ["²", "9" * 5000])
def test_a_version_flag_that_is_no_number_is_one_line(version, tmp_path):
    root = str(tmp_path / "registry")
    add_version(root, 1, {"a.txt": b"a"})
    result = run_module("components.registry", "show", "--registry_uri", root, "--model_name", "sentiment", "--version", version)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("body", ["garbage", '{"version": "../../x"}', '{"version": -1}', "[]"])
def test_a_corrupt_alias_file_is_one_line(body, tmp_path):
    root = str(tmp_path / "registry")
    add_version(root, 1, {"a.txt": b"a"})
    alias = tmp_path / "registry" / "sentiment" / "aliases" / "latest.json"
    alias.parent.mkdir()
    alias.write_text(body)
    result = run_module("components.registry", "show", "--registry_uri", root, "--model_name", "sentiment", "--version", "latest")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'error: {alias}: not an alias file (it must hold {{"version": N}}); delete it or fix it by hand'
    ]


@pytest.mark.parametrize("existing", [None, 1])
def test_an_alias_moved_by_another_writer_between_read_and_write_is_not_overwritten_on_s3(s3, existing):
    """The move is a conditional write (If-Match the ETag read, If-None-Match for a new alias): another writer
    landing in between, forced here before our PutObject, makes it read again and decide again."""
    registry = Registry("s3://bucket/registry", "sentiment")
    if existing:
        registry.move_alias("latest", existing)
    client, interleaved = storage.s3_client(), []

    def another_writer_first(params, **_):
        if not interleaved:
            interleaved.append(params.get("IfMatch") or params.get("IfNoneMatch"))
            body = json.dumps({"version": 5}).encode()
            s3.put_object(Bucket="bucket", Key="registry/sentiment/aliases/latest.json", Body=body)

    client.meta.events.register("before-parameter-build.s3.PutObject", another_writer_first)
    try:
        assert registry.move_alias("latest", 3, only_forward=True) is False
    finally:
        client.meta.events.unregister("before-parameter-build.s3.PutObject", another_writer_first)
    (condition,) = interleaved  # what our first PutObject was conditioned on
    assert condition == "*" if existing is None else condition.startswith('"')  # If-None-Match *, or If-Match the ETag read
    assert registry.read_alias("latest") == 5  # the other writer's newer version stands


def test_a_real_improvement_on_production_registers_with_a_positive_difference(release, tmp_path):
    registry = str(tmp_path / "registry")
    register_into(shifted_export(release, tmp_path / "worse", 50.0), registry, tmp_path / "first", require_beat_baseline=False)
    Registry(registry, "sentiment").move_alias("production", 1)
    better = register_into(release, registry, tmp_path / "second").summary
    comparison = better["production_comparison"]
    assert better["registered"] is True and comparison["difference"] > 0.5 and comparison["interval_95"][0] > 0


def ambiguous_rows(count: int, seed: int) -> list[dict]:
    """Texts with the words of two classes, labelled one of them by a coin: no model can do better than chance on
    them, and which of them a model gets right depends on its seed alone."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        first, second = rng.sample(LABELS, 2)
        words = [rng.choice(WORDS[first]), rng.choice(WORDS[second]), *rng.sample(FILLER, 4), f"{index}"]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": rng.choice((first, second))})
    return rows


def released_with_seed(tokens: Path, base_model: Path, seed: int, root: Path) -> dict:
    """One recipe, trained with `seed` (data order, head and dropout), evaluated and exported."""
    train(data_uri=str(tokens), output_uri=str(root / "model"), base_model=str(base_model),
          **train_flags(epochs=6, batch_size=4, learning_rate=1e-3, seed=seed))  # fmt: skip
    evaluate(model_uri=str(root / "model"), data_uri=str(tokens), output_uri=str(root / "evaluation"))
    export(model_uri=str(root / "model"), data_uri=str(tokens), output_uri=str(root / "onnx"), latency_runs=2)
    return {"model_uri": str(root / "model"), "evaluation_uri": str(root / "evaluation"), "export_uri": str(root / "onnx"),
            "data_uri": str(tokens)}  # fmt: skip


def test_two_seeds_of_one_recipe_differ_by_noise_that_the_gate_does_not_take_for_a_regression(tiny_model, tmp_path):
    """Two tiny models trained alike but for their seed, tested on 45 clear texts and 60 coin-flip ones: the
    worse of them, registered after the better went to production, is within noise of it (the paired bootstrap's
    interval holds 0) and registers under --max_regression 0; judged by its score alone (--significance 0) the
    same noise refuses it."""
    write_parquet(tmp_path / "source" / "train.parquet", labelled_rows(180, seed=1))
    write_parquet(tmp_path / "source" / "test.parquet", labelled_rows(45, seed=2) + ambiguous_rows(60, seed=3))
    preprocess(input_uri=str(tmp_path / "source"), output_uri=str(tmp_path / "data"), label_audit_folds=0)
    tokenize(data_uri=str(tmp_path / "data"), output_uri=str(tmp_path / "tokens"), base_model=str(tiny_model), max_length=32)
    runs = [released_with_seed(tmp_path / "tokens", tiny_model, seed, tmp_path / f"seed{seed}") for seed in (1, 2)]
    scores = [json.loads((Path(run["evaluation_uri"]) / "metrics.json").read_text())["test"]["macro_f1"] for run in runs]
    assert scores[0] != scores[1], "the two seeds scored alike: no noise to judge"
    better, worse = (runs[0], runs[1]) if scores[0] > scores[1] else (runs[1], runs[0])
    registry = str(tmp_path / "registry")
    register_into(better, registry, tmp_path / "first")
    Registry(registry, "sentiment").move_alias("production", 1)
    decision = register_into(worse, registry, tmp_path / "second", max_regression=0.0).summary
    comparison = decision["production_comparison"]
    assert comparison["difference"] < 0 and comparison["interval_95"][0] < 0 < comparison["interval_95"][1], json.dumps(comparison)
    assert decision["registered"] is True and comparison["p_value"] >= 0.05
    by_score = register_into(worse, registry, tmp_path / "third", max_regression=0.0, significance=0.0).summary
    assert by_score["registered"] is False and "below production (version 1:" in by_score["refused"]


def drifted_data(release: dict, folder: Path) -> dict:
    """The release's tokenized data, its train split's profile recorded as nine in ten rows positive."""
    shutil.copytree(release["data_uri"], folder)
    stats = json.loads((folder / "stats.json").read_text())
    stats["splits"]["train"]["class_counts"] = {"negative": 5, "neutral": 5, "positive": 90}
    (folder / "stats.json").write_text(json.dumps(stats))
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    commit(folder, str(folder), extra={key: value for key, value in manifest.items() if key not in ("files", "committed_at")})
    return {**release, "data_uri": str(folder)}


def test_a_version_keeps_its_training_data_profile_and_the_next_run_is_warned_or_refused_on_drift(release, production_registry, tmp_path):
    profile = json.loads((Path(production_registry) / "sentiment" / "1" / "data_profile.json").read_text())
    assert {"length_shares", "class_counts", "unknown_token_rate", "tokens", "language_shares"} <= set(profile)
    drifted = drifted_data(release, tmp_path / "drifted")
    warned = register_into(drifted, production_registry, tmp_path / "warned").summary
    assert warned["registered"] is True and warned["drift"][0].startswith("label balance has shifted from production's training data")
    refused = register_into(drifted, production_registry, tmp_path / "refused", drift_check="refuse").summary
    assert refused["registered"] is False and refused["refused"].startswith("data drift from production's training data: label balance")
    assert Registry(production_registry, "sentiment").versions() == [1, 2]
    assert "drift" not in register_into(release, production_registry, tmp_path / "same").summary


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--significance", "1", "--significance: must be in [0, 1), got 1.0; 0 compares the scores alone"),
        ("--min_slice_rows", "0", "--min_slice_rows: must be at least 1, got 0"),
        ("--drift_check", "sometimes", "--drift_check: 'sometimes' is not one of warn, refuse, off"),
    ],
)
def test_the_gates_new_flags_refuse_a_bad_value_in_one_line_before_any_work(release, tmp_path, flag, value, message):
    result = run_module("components.register", *flags_of(release), "--registry_uri", str(tmp_path / "registry"), "--model_name",
                        "sentiment", "--output_uri", str(tmp_path / "decision"), flag, value)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "registry").exists() and not (tmp_path / "decision").exists()
