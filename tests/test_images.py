"""images/build.py: after a push, the digests to pin the images by, in the settings compile reads."""

import sys

from pipelines.config import load_config
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "images"))
from build import digest_of, pin_line  # noqa: E402

CPU = "sha256:" + "1" * 64
CUDA = "sha256:" + "2" * 64


def test_the_pushed_images_digest_is_the_one_of_its_repository():
    listed = f"docker.io/library/other@sha256:{'9' * 64}\nregistry.example.com:5000/ml/textclf-cpu@{CPU}\n"
    assert digest_of("registry.example.com:5000/ml/textclf-cpu:0.1.0", listed) == CPU
    assert digest_of("registry.example.com:5000/ml/textclf-cuda:0.1.0", listed) == ""


def test_the_pin_line_is_what_compile_takes(tmp_path):
    line = pin_line({"cpu": CPU, "cuda": CUDA})
    assert line == f'images: to pin them by content: make compile ARGS="kubeflow.cpu_image_digest={CPU} kubeflow.cuda_image_digest={CUDA}"'
    overrides = line.split('ARGS="')[1].rstrip('"').split()
    settings = load_config(str(REPO / "configs" / "default.yaml"), overrides).kubeflow
    assert settings.cpu_image == f"ghcr.io/textclf/textclf-cpu:0.1.0@{CPU}"
    assert settings.cuda_image == f"ghcr.io/textclf/textclf-cuda:0.1.0@{CUDA}"
    assert pin_line({"cpu": ""}) == ""
