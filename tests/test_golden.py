"""The compiled pipelines match the golden YAML kept in tests/golden (refresh: make golden-update)."""

from pathlib import Path

import pytest
import yaml

from pipelines.compile import OUTPUT_NAMES, compile_pipeline
from pipelines.config import load_config

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("variant", sorted(OUTPUT_NAMES))
def test_compiled_pipeline_matches_golden(variant, tmp_path, monkeypatch):
    monkeypatch.delenv("REGISTRY", raising=False)
    monkeypatch.delenv("TAG", raising=False)
    config = load_config(str(GOLDEN / "config.yaml"))
    compiled = compile_pipeline(config.kubeflow, tmp_path / OUTPUT_NAMES[variant], variant)
    golden = GOLDEN / OUTPUT_NAMES[variant]
    # Parsed, as kfp's own test_data compares: the header comment prints dict defaults in no fixed order.
    assert list(yaml.safe_load_all(compiled.read_text())) == list(yaml.safe_load_all(golden.read_text())), (
        f"{variant} pipeline differs from {golden}; if the change is intended, run make golden-update and review the diff"
    )
