"""The registry command line on a wrong name, path or destination: one line and exit 2, never an
empty table with exit 0."""

import json

import pytest

from components.lib.storage.artifacts import staged_output
from tests.conftest import run_module


@pytest.fixture
def registry(tmp_path):
    """Two models with one committed version each (the files do not matter here)."""
    root = tmp_path / "registry"
    for model in ("sentiment", "topics"):
        with staged_output(str(root / model / "1")) as folder:
            (folder / "labels.json").write_text("[]")
    return root


def registry_command(*args: str):
    return run_module("components.registry", *args)


def assert_one_line(result, line: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {line}"]


def test_models_lists_the_registered_models(registry):
    result = registry_command("models", "--registry_uri", str(registry))
    assert result.returncode == 0 and json.loads(result.stdout)["models"] == ["sentiment", "topics"]


@pytest.mark.parametrize("command", ["list", "show", "promote"])
def test_an_unknown_model_is_one_line_naming_those_there(command, registry):
    extra = ["--version", "1"] if command == "promote" else []
    result = registry_command(command, "--registry_uri", str(registry), "--model_name", "sentimnet", *extra)
    assert_one_line(result, f"{registry}: no model 'sentimnet' is registered there; it holds sentiment, topics")


def test_a_mistyped_registry_path_is_one_line(tmp_path):
    result = registry_command("list", "--registry_uri", str(tmp_path / "registy"), "--model_name", "sentiment")
    assert_one_line(
        result, f"{tmp_path / 'registy'}: no model 'sentiment' is registered there; it holds no registered model; check --registry_uri"
    )
    assert_one_line(
        registry_command("models", "--registry_uri", str(tmp_path / "registy")),
        f"{tmp_path / 'registy'}: no registered model there; check --registry_uri",
    )


def test_fetch_into_a_file_is_one_line(registry, tmp_path):
    (tmp_path / "file").write_text("x")
    result = registry_command("fetch", "--registry_uri", str(registry), "--model_name", "sentiment", "--version", "1",
                              "--destination", str(tmp_path / "file"))  # fmt: skip
    assert_one_line(result, f"--destination {tmp_path / 'file'}: is a file; give a folder (new or existing)")


def test_promote_refuses_a_version_whose_files_changed_and_moves_no_alias(registry):
    """A byte flipped in a registered file (same size): promote checks every sha256 before the alias moves."""
    (registry / "sentiment" / "1" / "labels.json").write_text("{}")
    result = registry_command("promote", "--registry_uri", str(registry), "--model_name", "sentiment", "--version", "1")
    assert_one_line(result, f"{registry / 'sentiment' / '1'}: labels.json is corrupt (size or sha256 differs from MANIFEST.json);"
                            " run the stage that writes it again")  # fmt: skip
    assert not (registry / "sentiment" / "aliases" / "production.json").exists()


def test_fetch_writes_over_nothing_it_did_not_fetch(registry, tmp_path):
    """A --destination holding other files is refused with nothing touched; an earlier fetch is replaced."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "labels.json").write_text("the user's own")
    fetch = ["fetch", "--registry_uri", str(registry), "--model_name", "sentiment", "--version", "1"]
    assert_one_line(registry_command(*fetch, "--destination", str(project)),
                    f"--destination {project}: holds files no fetch put there (labels.json); nothing was touched: give an empty or a new folder")  # fmt: skip
    assert (project / "labels.json").read_text() == "the user's own" and len(list(project.iterdir())) == 1
    fetched = tmp_path / "fetched"
    for _ in range(2):  # into a new folder, then again over its own earlier fetch
        result = registry_command(*fetch, "--destination", str(fetched))
        assert result.returncode == 0, result.stderr
    assert (fetched / "labels.json").read_text() == "[]"


@pytest.mark.parametrize(
    "word, line",
    [
        ("lst", "registry: no command 'lst'; did you mean 'list'? (commands: models, list, show, fetch, promote)"),
        ("shwo", "registry: no command 'shwo'; did you mean 'show'? (commands: models, list, show, fetch, promote)"),
        ("frobnicate", "registry: no command 'frobnicate' (commands: models, list, show, fetch, promote)"),
        ("--registry_uri", "registry: give a command before --registry_uri (commands: models, list, show, fetch, promote)"),
    ],
)
def test_an_unknown_command_is_one_line_naming_the_nearest(registry, word, line):
    result = registry_command(word, "--registry_uri", str(registry), "--model_name", "sentiment")
    assert_one_line(result, line)
    assert result.stdout == ""
