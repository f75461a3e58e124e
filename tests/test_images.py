"""images/build.py: after a push, the digests to pin the images by, in the settings compile reads."""

import sys

from pipelines.config import load_config
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "images"))
from build import DIGEST_IN_PUSH_OUTPUT, pin_lines  # noqa: E402

CPU = "sha256:" + "1" * 64
CUDA = "sha256:" + "2" * 64


def test_the_digest_is_read_from_what_docker_push_prints():
    printed = f"The push refers to repository [registry.example.com/ml/textclf-cpu]\n0.1.0: digest: {CPU} size: 2207\n"
    assert DIGEST_IN_PUSH_OUTPUT.search(printed).group(1) == CPU


def test_the_pin_lines_are_settings_compile_takes():
    lines = pin_lines({"cpu": CPU, "cuda": CUDA})
    assert lines == [
        "images: to pin them by content, add to your config's kubeflow section:",
        f"  cpu_image_digest: {CPU}",
        f"  cuda_image_digest: {CUDA}",
    ]
    overrides = [f"kubeflow.{line.strip().replace(': ', '=')}" for line in lines[1:]]
    settings = load_config(str(REPO / "configs" / "default.yaml"), overrides).kubeflow
    assert settings.cpu_image == f"ghcr.io/textclf/textclf-cpu:0.1.0@{CPU}"
    assert settings.cuda_image == f"ghcr.io/textclf/textclf-cuda:0.1.0@{CUDA}"
    assert pin_lines({"cpu": ""}) == []
