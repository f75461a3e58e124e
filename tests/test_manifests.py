"""The Kubernetes manifests: they render, validate, and never overwrite the user's S3 keys."""

import shutil

from pipelines import manifests_check
from tests.conftest import REPO

EMPTY_SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: textclf-s3
stringData:
  AWS_ACCESS_KEY_ID: ""
  AWS_SECRET_ACCESS_KEY: ""
"""


def test_every_kustomization_renders_and_validates():
    assert manifests_check.main([str(REPO / "manifests")]) == 0


def test_a_secret_in_the_base_is_refused_because_applying_it_would_wipe_the_keys(tmp_path):
    """The README creates the S3 Secret with kubectl, then applies the base: an empty Secret there
    (as the base once held) would overwrite the keys."""
    base = tmp_path / "base"
    shutil.copytree(REPO / "manifests" / "base", base)
    (base / "s3-credentials-secret.yaml").write_text(EMPTY_SECRET)
    kustomization = base / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("resources:\n", "resources:\n  - s3-credentials-secret.yaml\n"))
    problems = manifests_check.check_folder(base)
    assert any("Secret/textclf-s3: the base must hold no Secret" in problem for problem in problems), problems
