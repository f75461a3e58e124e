"""`make compile`: write the pipelines' compiled IR YAML: build/pipeline.yaml, build/sweep.yaml and build/kfold.yaml.

    python -m pipelines.compile --config configs/default.yaml [--output build/pipeline.yaml] [section.key=value ...]

Compile-time settings (images, pipeline root, S3 endpoint, resources) come from the config's
`kubeflow` section; REGISTRY and TAG in the environment override the image registry and tag, so
`make images` and `make compile` always agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from kfp import compiler

from components.lib.cli import configure_logging
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from pipelines.config import KubeflowSettings, RunConfig, load_config
from pipelines.pipeline import build_pipeline
from pipelines.sweep import sweep_rounds

DEFAULT_OUTPUT = Path("build/pipeline.yaml")
OUTPUT_NAMES = {"training": "pipeline.yaml", "sweep": "sweep.yaml", "kfold": "kfold.yaml"}


def with_image_environment(settings: KubeflowSettings) -> KubeflowSettings:
    return dataclasses.replace(
        settings,
        image_registry=os.environ.get("REGISTRY") or settings.image_registry,
        image_tag=os.environ.get("TAG") or settings.image_tag,
    )


def compile_pipeline(settings: KubeflowSettings, output: Path, variant: str = "training", rounds: tuple = ()) -> Path:
    """`rounds`: a halving sweep's rounds (pipelines/sweep.py, sweep_rounds); the sweep variant trains in them."""
    settings = with_image_environment(settings)
    if settings.image_tag in ("", "latest"):
        raise UserError(f"image tag {settings.image_tag!r}: pin a version (TAG=0.1.0), never latest")
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(settings, variant, rounds), str(output))
    return output


def compile_variant(config: RunConfig, output: Path, variant: str) -> Path:
    """The variant compiled from the whole config: the sweep's rounds, when it halves, come from its sweep section."""
    return compile_pipeline(config.kubeflow, output, variant, sweep_rounds(config) if variant == "sweep" else ())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile the pipeline to KFP IR YAML.")
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument(
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="the training pipeline's YAML; sweep.yaml and kfold.yaml go beside it",
    )
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        config = load_config(arguments.config, arguments.overrides)
        output = Path(arguments.output)
        for variant, name in OUTPUT_NAMES.items():
            print(compile_variant(config, output if variant == "training" else output.with_name(name), variant))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
