"""Names read from storage (manifest entries, S3 keys) never lead a read or a write out of their folder.

Each hostile artifact below is otherwise valid: the escaping file exists where the name points and
its size and sha256 match, so only the name check stands between it and a write (or read) outside.
"""

import hashlib
import json
import tempfile
from pathlib import Path

import pytest

from components.lib.errors import UserError
from components.lib.modelling.sources import local_model_source
from components.lib.storage.artifacts import MANIFEST, commit, read_manifest, staged_input
from tests.conftest import run_module

ESCAPING = "../escaped.txt"
PAYLOAD = b"written outside its folder"
REFUSED = "refusing the file name"


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def commit_with_extra_name(folder: Path, name: str) -> None:
    """A committed folder with `ok.txt`, whose manifest also lists `name` (holding PAYLOAD)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ok.txt").write_text("fine")
    manifest = commit(folder, str(folder))
    manifest["files"][name] = entry(PAYLOAD)
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """This process's temporary folder, so a write that escapes a scratch folder lands where we look."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# ----- local artifacts: a read through an unsafe name is refused up front ---------------------------
def hostile_local_names(tmp_path: Path) -> dict[str, str]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "escaped.txt").write_bytes(PAYLOAD)
    (tmp_path / "escaped.txt").write_bytes(PAYLOAD)
    return {
        "dot-dot": ESCAPING,
        "absolute": str(outside / "escaped.txt"),
        "inner-dot-dot": "sub/../../escaped.txt",
        "symlink": "link/escaped.txt",
    }


@pytest.mark.parametrize("kind", ["dot-dot", "absolute", "inner-dot-dot", "symlink"])
def test_a_local_manifest_naming_a_file_outside_its_folder_is_refused(kind, tmp_path):
    name = hostile_local_names(tmp_path)[kind]
    folder = tmp_path / "artifact"
    commit_with_extra_name(folder, name)
    (folder / "link").symlink_to(tmp_path / "outside")
    (folder / "sub").mkdir()
    with pytest.raises(UserError) as refused:
        read_manifest(str(folder))
    assert str(refused.value).startswith(f"{folder / MANIFEST}: {REFUSED} {name!r}")
    with pytest.raises(UserError, match=REFUSED), staged_input(str(folder)):
        pass


# ----- S3 artifacts: a download through an unsafe name is refused before anything is written ---------
def upload_hostile(s3, prefix: str) -> None:
    """`prefix` committed with ok.txt, plus the object `prefix/../escaped.txt` (S3 keys are literal)."""
    s3.put_object(Bucket="bucket", Key=f"{prefix}/ok.txt", Body=b"fine")
    s3.put_object(Bucket="bucket", Key=f"{prefix}/{ESCAPING}", Body=PAYLOAD)
    files = {"ok.txt": entry(b"fine"), ESCAPING: entry(PAYLOAD)}
    s3.put_object(Bucket="bucket", Key=f"{prefix}/{MANIFEST}", Body=json.dumps({"manifest_version": 1, "files": files}).encode())


def test_an_s3_manifest_naming_a_file_outside_its_folder_is_refused_and_nothing_lands_outside(s3, scratch):
    upload_hostile(s3, "artifact")
    with pytest.raises(UserError) as refused, staged_input("s3://bucket/artifact"):
        pass
    assert str(refused.value).startswith(f"s3://bucket/artifact/{MANIFEST}: {REFUSED} '{ESCAPING}'")
    assert files_under(scratch) == set()


def test_a_base_model_on_s3_with_an_escaping_key_is_refused_and_nothing_lands_outside(s3, scratch):
    s3.put_object(Bucket="bucket", Key="models/evil/config.json", Body=b"{}")
    s3.put_object(Bucket="bucket", Key=f"models/evil/{ESCAPING}", Body=PAYLOAD)
    with pytest.raises(UserError) as refused, local_model_source("s3://bucket/models/evil"):
        pass
    assert str(refused.value).startswith(f"s3://bucket/models/evil/{ESCAPING}: {REFUSED} '{ESCAPING}'")
    assert files_under(scratch) == set()


def test_a_base_model_on_s3_skips_folder_markers(s3, scratch):
    """Console tools create `folder/` keys; they are not files to download."""
    for key, body in [
        ("models/tiny/", b""),
        ("models/tiny/sub/", b""),
        ("models/tiny/config.json", b"{}"),
        ("models/tiny/sub/a.txt", b"a"),
    ]:
        s3.put_object(Bucket="bucket", Key=key, Body=body)
    with local_model_source("s3://bucket/models/tiny") as folder:
        assert files_under(Path(folder)) == {"config.json", "sub/a.txt"}


# ----- the registry command: one line, exit 2, nothing written outside ------------------------------
def test_registry_fetch_refuses_a_manifest_entry_that_escapes_the_destination(tmp_path):
    registry = tmp_path / "store" / "registry"
    commit_with_extra_name(registry / "sentiment" / "1", ESCAPING)
    (registry / "sentiment" / "escaped.txt").write_bytes(PAYLOAD)  # where `1/../escaped.txt` points: the old code read it
    out = tmp_path / "out"
    out.mkdir()
    result = run_module("components.registry", "fetch", "--registry_uri", str(registry), "--model_name", "sentiment",
                        "--version", "1", "--destination", str(out / "dest"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {registry / 'sentiment' / '1' / MANIFEST}: {REFUSED} '{ESCAPING}': it is not a plain path inside its folder"
    ]
    assert files_under(out) == set()


def test_registry_show_on_s3_refuses_an_escaping_entry_and_writes_nothing_outside_its_scratch(s3, tmp_path):
    upload_hostile(s3, "registry/sentiment/1")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_module("components.registry", "show", "--registry_uri", "s3://bucket/registry", "--model_name", "sentiment",
                        "--version", "1", env={"TMPDIR": str(scratch)})  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: s3://bucket/registry/sentiment/1/{MANIFEST}: {REFUSED} '{ESCAPING}': it is not a plain path inside its folder"
    ]
    assert files_under(scratch) == set()


# ----- a manifest's entries are data too ------------------------------------------------------------
@pytest.mark.parametrize("files", [{"ok.txt": "not an entry"}, {"ok.txt": {"size": 4}}, {"ok.txt": {"size": "4", "sha256": "x"}}])
def test_a_manifest_with_malformed_entries_is_one_line(files, tmp_path):
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps({"manifest_version": 1, "files": files}))
    with pytest.raises(UserError, match=f"^{folder / MANIFEST}: the manifest is unreadable"):
        read_manifest(str(folder))


def test_registry_fetch_never_writes_through_a_symlink_out_of_the_destination(tmp_path):
    registry = tmp_path / "registry"
    version = registry / "sentiment" / "1"
    (version / "sub").mkdir(parents=True)
    (version / "sub" / "x.txt").write_text("x")
    commit(version, str(version))
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "dest").mkdir(parents=True)
    (out / "dest" / ".fetched.json").write_text("{}")  # an earlier fetch's folder, which fetch may write over
    (out / "dest" / "sub").symlink_to(elsewhere)
    result = run_module("components.registry", "fetch", "--registry_uri", str(registry), "--model_name", "sentiment",
                        "--version", "1", "--destination", str(out / "dest"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {version / MANIFEST}: {REFUSED} 'sub/x.txt': it resolves outside {out / 'dest'}"]
    assert files_under(elsewhere) == set()


def test_a_name_through_a_symlink_loop_is_one_line(tmp_path):
    folder = tmp_path / "artifact"
    commit_with_extra_name(folder, "loop/x.txt")
    (folder / "loop").symlink_to("loop")
    with pytest.raises(UserError, match=f"^{folder / MANIFEST}: {REFUSED} 'loop/x.txt': it cannot be resolved"):
        read_manifest(str(folder))


def test_registry_fetch_never_writes_its_manifest_through_a_symlink(tmp_path):
    """The manifest is written last, to <destination>/MANIFEST.json: a symlink already there is not followed."""
    registry = tmp_path / "registry"
    version = registry / "sentiment" / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_text("onnx")
    commit(version, str(version))
    outside = tmp_path / "outside.json"
    outside.write_text("the user's")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / ".fetched.json").write_text("{}")  # an earlier fetch's folder, which fetch may write over
    (tmp_path / "dest" / MANIFEST).symlink_to(outside)
    result = run_module("components.registry", "fetch", "--registry_uri", str(registry), "--model_name", "sentiment",
                        "--version", "1", "--destination", str(tmp_path / "dest"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --destination {tmp_path / 'dest'}: {REFUSED} '{MANIFEST}': it resolves outside {tmp_path / 'dest'}"
    ]
    assert outside.read_text() == "the user's"
