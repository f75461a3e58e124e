"""`make run`: execute the compiled pipeline on this machine, each task as a host subprocess or in its image.

    python -m pipelines.local_run --config configs/default.yaml [--pipeline sweep] [--runner docker] [key=value ...]
    python -m pipelines.local_run --help        # also lists every config key, its default and help

It compiles the pipeline (kept in the run folder as pipeline.yaml), loads that YAML back and runs it with KFP's own
local executor, `kfp.local`: the same DAG, the same command lines, the same quality gate as on a
cluster, minus the Kubernetes placement (no GPU request, no Secret: the S3 environment is this
shell's). Six adjustments to kfp.local 2.17 (pipelines/kfp_local_patches.py) make it run what the
backend runs and fit it to a user at a terminal: container components run as host subprocesses, a
`dsl.If` on a named task output and a ParallelFor body that reads an earlier task's output work as on
a cluster, a stage's user error (exit status 2) is not retried and is the run's last line, the tasks
write straight into the run folder, <local.run_root>/<date-time>/<task>/, and the engine's own
chatter is left out. The summary at the end (pipelines/run_summary.py) is also kept in the run
folder as summary.txt.

`--runner docker` runs each task in the image the compiled pipeline names, with
`kfp.local.DockerRunner` set up as component-run sets up a container, and the local paths among the
parameters mounted at the same paths (pipelines/docker_runner.py).
"""

from __future__ import annotations

import argparse
import builtins
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from components.lib import storage
from components.lib.cli import configure_logging
from components.lib.data.readers import installed_data_path
from components.lib.errors import FLAG_STYLE_ENV, KEY_VALUE_STYLE, USER_ERROR_EXIT_CODE, UserError
from pipelines.compile import OUTPUT_NAMES, compile_variant
from pipelines.config import REMOTE_SCHEMES, STORAGE_PARAMETERS, RunConfig, describe_keys, load_config
from pipelines.docker_runner import DockerMounts, docker_runner
from pipelines.fan_out import resolved_parameters
from pipelines.kfp_local_patches import (
    StageClock,
    loops_keep_upstream_outputs,
    no_retry_of_user_errors,
    quiet_engine,
    resolve_named_task_outputs,
    run_in_folder,
    timed_handlers,
)
from pipelines.run_summary import SUMMARY_NAME as SUMMARY_NAME  # benchmarks/ read it from here
from pipelines.run_summary import gate_outcome, read_evaluation, report

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ("host", "docker")
# `make run`'s exit status when the run finished but the quality gate kept the model out of the
# registry (README, "The quality gate"); 2 stays a user's mistake, 1 anything else.
NOT_REGISTERED_EXIT_CODE = 3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--config", default="configs/default.yaml", help="the run configuration (YAML)")
    parser.add_argument(
        "--pipeline", choices=sorted(OUTPUT_NAMES), default="training", help="training, sweep or kfold (the config's section of that name)"
    )
    parser.add_argument("--runner", choices=RUNNERS, default="host", help="host: tasks as subprocesses here; docker: each in its image")
    parser.add_argument("overrides", nargs="*", help="key=value to override a parameter, or section.key=value (listed below)")
    if {"-h", "--help"} & set(argv):
        parser.epilog = keys_help(parser.parse_known_args([word for word in argv if word not in ("-h", "--help")])[0].config)
    arguments, unknown = parser.parse_known_args(argv)
    configure_logging()
    try:
        refuse_flags(unknown, argv)
        config = load_config(arguments.config, arguments.overrides)
        return run(config, arguments.pipeline, arguments.runner)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE


def keys_help(config_path: str) -> str:
    """The config keys, for --help: each with its default, and the value `config_path` gives it."""
    try:
        given = load_config(config_path).parameters
    except UserError:
        given = {}  # the run itself says what is wrong with the file
    return 'config keys (override with key=value; in `make run`, ARGS="key=value ..."):\n' + describe_keys(given, config_path)


def refuse_flags(unknown: list[str], argv: list[str]) -> None:
    """A stage's `--key value` spelling is refused with the `key=value` spelling it means."""
    if not unknown:
        return
    flag = unknown[0]
    name, _, value = flag.lstrip("-").partition("=")
    following = argv[argv.index(flag) + 1 :]
    if not value and following and not following[0].startswith("-") and "=" not in following[0]:
        value = following[0]
    raise UserError(f"{flag}: overrides are key=value, not flags: write {name}={value or '...'} (--help lists the keys)")


def run(config: RunConfig, variant: str = "training", runner: str = "host") -> int:
    parameters = local_parameters(resolved_parameters(config, variant))
    with tempfile.TemporaryDirectory(prefix="local-run-") as scratch:  # compiled before any run folder is made
        compiled_here = compile_variant(config, Path(scratch) / OUTPUT_NAMES[variant], variant)
        if runner == "docker":
            DockerMounts.share(parameters)
        run_dir = new_run_folder(Path(config.local.run_root).resolve())
        # The run keeps the pipeline it ran; two runs at once never share one file.
        compiled = Path(shutil.copy(compiled_here, run_dir / OUTPUT_NAMES[variant]))
    print(f"run folder: {run_dir}\ncompiled pipeline: {compiled}")
    try:
        timings = execute(compiled, parameters, run_dir, runner)
    except BaseException:
        if not any(path.is_file() and path != compiled for path in run_dir.rglob("*")):
            compiled.unlink()  # no stage wrote anything: the run folder goes, its pipeline with it
        remove_empty_folders(run_dir)
        raise
    status = report(run_dir, timings, parameters, variant)
    if status or variant == "kfold":
        return status
    return unregistered_status(run_dir, parameters, config.local.allow_unregistered)


def remove_empty_folders(run_dir: Path) -> None:
    """A failed run keeps what its stages wrote, and no empty folder (the run's, or a task's that wrote nothing)."""
    for folder in sorted((path for path in [run_dir, *run_dir.rglob("*")] if path.is_dir()), key=lambda path: -len(path.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not run_dir.exists():
        print(f"run folder {run_dir} removed: no stage wrote anything")


def unregistered_status(run_dir: Path, parameters: dict, allowed: bool) -> int:
    """NOT_REGISTERED_EXIT_CODE, with the refusal as the run's last line, when the gate kept the model
    out of the registry, unless the user allowed that (`make run && make serve` must not serve an older version)."""
    decision, _ = gate_outcome(run_dir, *read_evaluation(run_dir), parameters)
    if decision["registered"]:
        return 0
    refusal = decision["refused"]
    if allowed:
        print(f"allow_unregistered=true: exit status 0 although the model was not registered ({refusal})")
        return 0
    print(f"error: not registered: {refusal} (exit status {NOT_REGISTERED_EXIT_CODE}; allow_unregistered=true exits 0)", file=sys.stderr)
    return NOT_REGISTERED_EXIT_CODE


def new_run_folder(run_root: Path) -> Path:
    """run_root/<date-time>, made here (the engine would make a missing mount source as root); never an earlier run's."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", *(f"-{count}" for count in range(1, 100))):
        try:
            (run_root / f"{stamp}{suffix}").mkdir(parents=True)
            return run_root / f"{stamp}{suffix}"
        except FileExistsError:
            continue
    raise UserError(f"{run_root}: 100 runs started within this second; wait a second")


def local_parameters(parameters: dict) -> dict:
    """Make local paths absolute and fingerprint the source, as pipeline-submit does."""
    resolved = dict(parameters)
    for name in STORAGE_PARAMETERS:
        value = resolved.get(name, "")
        if value and not value.startswith(REMOTE_SCHEMES):
            resolved[name] = str(Path(value).resolve())
    if not resolved.get("source_fingerprint") and not resolved["source_uri"].startswith("hf://"):
        resolved["source_fingerprint"] = storage.fingerprint(installed_data_path(resolved["source_uri"]))
    if resolved.get("gpu_count", "") != "":
        logging.getLogger(__name__).info("gpu_count %s: not applied locally; train uses the GPUs this machine has", resolved["gpu_count"])
    resolved["gpu_count"] = ""  # no pod asks for GPUs here, so train checks none
    return resolved


def execute(compiled: Path, parameters: dict, run_dir: Path, runner: str = "host") -> dict[str, float]:
    """Run the compiled pipeline with kfp.local; return the wall time of each stage."""
    import kfp.components
    from kfp import local

    timed_handlers()
    no_retry_of_user_errors()
    resolve_named_task_outputs()
    loops_keep_upstream_outputs()
    quiet_engine()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ[FLAG_STYLE_ENV] = KEY_VALUE_STYLE  # the stages' hints say key=value, as the user types here
    chosen = docker_runner() if runner == "docker" else local.SubprocessRunner(use_venv=False)
    run_in_folder(run_dir)
    local.init(runner=chosen, pipeline_root=str(run_dir.parent), raise_on_error=True)
    pipeline = kfp.components.load_component_from_file(str(compiled))
    original_print = builtins.print  # kfp.local's parallel logging can leave print swapped
    try:
        pipeline(**parameters)
    except RuntimeError as error:  # kfp.local: "Pipeline ... finished with status FAILURE", after the task's own log
        if StageClock.user_error:  # repeated as the run's last line, where it is seen first
            stage, message = StageClock.user_error
            raise UserError(f"the local run stopped: stage {stage} failed: {message}") from None
        failed = [name for name, status in StageClock.outcomes.items() if status != "SUCCESS"]
        where = f"stage {', '.join(failed)} failed" if failed else str(error).splitlines()[0]
        raise UserError(f"the local run stopped: {where}; the error is printed above (run folder: {run_dir})") from None
    except Exception as error:
        if not type(error).__module__.startswith("docker."):
            raise
        # the engine refused: no such image and none to pull, no daemon, ...
        raise UserError(f"the container engine refused: {str(error).splitlines()[0]}") from None
    finally:
        builtins.print = original_print
    return StageClock.timings


if __name__ == "__main__":
    sys.exit(main())
