"""`make run`: execute the compiled pipeline on this machine, each task as a host subprocess or in its image.

    python -m pipelines.local_run --config configs/default.yaml [--pipeline sweep] [--runner docker] [key=value ...]
    python -m pipelines.local_run --help        # also lists every config key, its default and help

It compiles the pipeline (build/pipeline.yaml), loads that YAML back and runs it with KFP's own
local executor, `kfp.local`: the same DAG, the same command lines, the same quality gate as on a
cluster, minus the Kubernetes placement (no GPU request, no Secret: the S3 environment is this
shell's). Three adjustments to kfp.local 2.17 make it run what the backend runs (see `timed_handlers`,
`resolve_named_task_outputs` and `loops_keep_upstream_outputs`): it refuses container components,
it reads a `dsl.If` on a named task output as false, and it hands a ParallelFor body the loop item
in place of an earlier task's output. Three more fit it to a user at a terminal: a stage's user error (exit
status 2) is not retried and is the run's last line (`no_retry_of_user_errors`); the tasks write
straight into the run folder, <local.run_root>/<date-time>/<task>/ (`run_in_folder`); and the
engine's own chatter is left out (`quiet_engine`). The summary at the end is also kept in the run
folder as summary.txt.

`--runner docker` runs each task in the image the compiled pipeline names, with
`kfp.local.DockerRunner`: read-only root filesystem, a tmpfs /tmp, never root, host networking
(so an S3 endpoint on loopback is reachable) and the S3 environment passed in. Besides the run
folder, the local paths among the parameters are mounted at the same paths: the source and a base
model folder read-only, the registry and checkpoint roots read-write.
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from components.lib import storage
from components.lib.cli import configure_logging
from components.lib.data.contract import (
    CAUSAL_LM,
    DECISION_FILE,
    DEPLOYMENT_FILE,
    EXPORT_REPORT_FILE,
    KFOLD_RESULTS_FILE,
    METRICS_FILE,
    TUNING_RESULTS_FILE,
    task_of,
)
from components.lib.data.readers import installed_data_path
from components.lib.errors import FLAG_STYLE_ENV, KEY_VALUE_STYLE, USER_ERROR_EXIT_CODE, USER_ERROR_PREFIX, UserError
from components.lib.quality_gate import GATES, REFUSED
from components.lib.storage.artifacts import read_manifest
from pipelines import gate
from pipelines.compile import OUTPUT_NAMES, compile_pipeline
from pipelines.component_run import PASSED_ENVIRONMENT, TMPFS, TRAIN_SHM_SIZE, container_user
from pipelines.config import REMOTE_SCHEMES, STORAGE_PARAMETERS, RunConfig, describe_keys, load_config
from pipelines.fan_out import resolved_parameters
from pipelines.parameters import pipeline_parameters

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ("host", "docker")
# `make run`'s exit status when the run finished but the quality gate kept the model out of the
# registry (README, "The quality gate"); 2 stays a user's mistake, 1 anything else.
NOT_REGISTERED_EXIT_CODE = 3
SUMMARY_NAME = "summary.txt"


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
    compiled = compile_pipeline(config.kubeflow, REPO_ROOT / "build" / OUTPUT_NAMES[variant], variant)
    if runner == "docker":
        DockerMounts.share(parameters)
    run_dir = new_run_folder(Path(config.local.run_root).resolve())
    print(f"run folder: {run_dir}\ncompiled pipeline: {compiled}")
    try:
        timings = execute(compiled, parameters, run_dir, runner)
    except BaseException:
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


def docker_runner():
    """kfp.local.DockerRunner with the containers set up as component-run sets them up."""
    from kfp import local

    tmpfs_path, _, tmpfs_options = TMPFS.partition(":")
    environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ} | {FLAG_STYLE_ENV: KEY_VALUE_STYLE}
    return local.DockerRunner(
        user=container_user(), read_only=True, tmpfs={tmpfs_path: tmpfs_options}, network_mode="host",
        shm_size=TRAIN_SHM_SIZE, environment=environment,
    )  # fmt: skip


class DockerMounts:
    """The local paths among the parameters, mounted into every task's container at the same path."""

    volumes: dict[str, dict[str, str]] = {}
    READ_WRITE = ("registry_uri", "checkpoint_root")

    @classmethod
    def share(cls, parameters: dict) -> None:
        # The run folder and kfp.local's task folders are made from this process; as root they must
        # stay writable for the image's user in group 0 (component_run.container_user).
        os.umask(0o002)
        for name in (*STORAGE_PARAMETERS, "base_model"):
            value = parameters.get(name, "")
            if not value or value.startswith(REMOTE_SCHEMES) or (name == "base_model" and not Path(value).exists()):
                continue  # remote, a hub id or a bundled model: nothing to mount
            path = Path(value).resolve()
            if name in cls.READ_WRITE:
                path.mkdir(parents=True, exist_ok=True)
                if os.getuid() == 0:
                    cls.let_group_write(path)
            elif os.getuid() == 0:
                cls.require_group_read(name, path)
            cls.volumes[str(path)] = {"bind": str(path), "mode": "rw" if name in cls.READ_WRITE else "ro"}

    @staticmethod
    def require_group_read(name: str, root: Path) -> None:
        """Refuse, in one line, a read-only input the containers' user (group 0) could not read."""
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            needed = 0o050 if path.is_dir() else 0o040
            if path.stat().st_mode & needed != needed:
                raise UserError(
                    f"parameters.{name}: {path} is not readable by the containers' user (mode {path.stat().st_mode & 0o777:o});"
                    f" run chmod -R g+rX {root}"
                )

    @staticmethod
    def let_group_write(root: Path) -> None:
        """As root, the containers run as the image's user in group 0 (component_run.container_user):
        the folders they write into must be group-writable, earlier runs' folders included."""
        changed = 0
        for folder in [root, *(path for path in root.rglob("*") if path.is_dir())]:
            if not folder.stat().st_mode & 0o020:
                folder.chmod(folder.stat().st_mode | 0o070)
                changed += 1
        if changed:
            logging.getLogger(__name__).info("%s: %d folder(s) made group-writable for the containers' user", root, changed)


class StageClock:
    """The wall time and outcome of each stage, as kfp.local's task handlers run them."""

    timings: dict[str, float] = {}
    outcomes: dict[str, str] = {}
    user_error: tuple[str, str] | None = None  # (stage, its one line) of a stage that exited with a user error

    @classmethod
    def record(cls, full_command: list[str], run: Callable[[], tuple[int, str]]) -> object:
        """Run one attempt; a user error is raised as `StageUserError`, past kfp.local's retry loop."""
        from kfp.local import status

        stage = full_command[2].rsplit(".", 1)[-1] if len(full_command) > 2 else "?"
        started = time.perf_counter()
        exit_code, error_line = run()
        cls.timings[stage] = cls.timings.get(stage, 0.0) + time.perf_counter() - started
        outcome = status.Status.SUCCESS if exit_code == 0 else status.Status.FAILURE
        cls.outcomes[stage] = outcome.name
        if exit_code == USER_ERROR_EXIT_CODE:
            cls.user_error = (stage, error_line or f"exit status {exit_code} (a user error); its output is above")
            raise StageUserError(stage)
        return outcome


class StageUserError(Exception):
    """A stage exited with status 2: the user's mistake, which a second attempt would repeat."""


def stream(lines: Iterable[str]) -> str:
    """Print a stage's output as it comes; return its last `error: ` line without the prefix ("" if none)."""
    error_line = ""
    for line in lines:
        print(line, end="")
        if line.startswith(USER_ERROR_PREFIX):
            error_line = line.removeprefix(USER_ERROR_PREFIX).strip()
    return error_line


def timed_handlers() -> None:
    """Time kfp.local's task handlers, let its subprocess handler run container components, and
    have both read a stage's exit status and its error line (kfp.local keeps neither)."""
    from kfp.local import docker_task_handler, subprocess_task_handler

    if getattr(subprocess_task_handler.SubprocessTaskHandler, "timed", False):
        return

    class HostHandler(subprocess_task_handler.SubprocessTaskHandler):
        timed = True

        def validate_image(self, image: str) -> None:
            """The image does not matter: the command runs in this environment."""

        def validate_not_container_component(self, full_command: list[str]) -> None:
            """Container components are exactly what this runner is for."""

        def run(self):
            return StageClock.record(self.full_command, self.run_and_wait)

        def run_and_wait(self) -> tuple[int, str]:
            """kfp.local's own subprocess run (use_venv=False: this interpreter), keeping the exit status."""
            command = subprocess_task_handler.replace_python_executable(self.full_command, sys.executable)
            environment = {**os.environ, **self.env_vars}
            output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "bufsize": 1}
            with subprocess.Popen(command, env=environment, **output) as process:
                error_line = stream(process.stdout)
                return process.wait(), error_line

    class DockerHandler(docker_task_handler.DockerTaskHandler):
        timed = True

        def run(self):
            return StageClock.record(self.full_command, self.run_and_wait)

        def get_volumes_to_mount(self, client=None):
            return {**DockerMounts.volumes, **super().get_volumes_to_mount(client)}

        def run_and_wait(self) -> tuple[int, str]:
            """kfp.local's own run, but the container is removed only after its exit status is read.

            kfp.local starts it with auto_remove and takes a vanished container for success; under
            podman's Docker API the container is gone before `wait`, so every failed stage passed.
            """
            import docker

            client = docker.from_env()
            try:
                arguments = {**self.runner.container_run_args, **({"environment": self.env_vars} if self.env_vars else {})}
                container = client.containers.run(
                    image=self.image, command=self.full_command, volumes=self.get_volumes_to_mount(client), detach=True, **arguments
                )
                try:
                    error_line = stream(line.decode(errors="replace") for line in container.logs(stream=True, follow=True))
                    exit_code = container.wait()["StatusCode"]
                finally:
                    container.remove(force=True)
            finally:
                client.close()
            return exit_code, error_line

    # kfp.local's dispatcher looks these names up at call time, so rebinding them is enough.
    subprocess_task_handler.SubprocessTaskHandler = HostHandler
    docker_task_handler.DockerTaskHandler = DockerHandler


def no_retry_of_user_errors() -> None:
    """End a task at its first user error: kfp.local retries every failure as the compiled retry
    policy says (task_executor.execute_single_task), but the same mistake fails the same way.

    `StageUserError` leaves that retry loop; here, one level up, it becomes the task's failure.
    """
    from kfp.local import status
    from kfp.local.orchestrator import task_executor

    original = task_executor.execute_single_task
    if getattr(original, "stops_on_user_error", False):
        return

    def execute_single_task(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        except StageUserError as error:
            logging.getLogger(__name__).error("stage %s: a user error, not retried", error)
            return {}, status.Status.FAILURE

    execute_single_task.stops_on_user_error = True
    # The orchestrators call it as task_executor.execute_single_task, so rebinding it is enough.
    task_executor.execute_single_task = execute_single_task


def quiet_engine() -> None:
    """Leave out kfp.local's lines that say nothing to a `make run` user; every stage's own output stays.

    - "Task 'x': settings ['cpu_limit', ...] have no effect in the current local runner": the
      resources, GPU request and node placement are the cluster's (the `kubeflow` section), and a
      local run leaves them out by design (see the module docstring).
    - "Task 'x' outputs:" with a dump of every artifact and its metadata, and "Streamed logs:":
      the stage prints its own summary line, and the run's summary names the folders.
    """
    warnings.filterwarnings("ignore", message=r"Task '.*': settings \[.*\] have no effect in the current local", category=UserWarning)
    root = logging.getLogger()  # kfp.local logs through the root logger, swapping its handlers per task
    if not any(isinstance(existing, EngineChatter) for existing in root.filters):
        root.addFilter(EngineChatter())


class EngineChatter(logging.Filter):
    """kfp.local's per-task output dumps and "Streamed logs:" headings (see `quiet_engine`)."""

    NOISE = re.compile(r"^Task .* (outputs:|has no outputs)|^Streamed logs:", re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.NOISE.search(record.getMessage())


def run_in_folder(run_dir: Path) -> None:
    """Put the tasks' folders straight in `run_dir`: <run_dir>/<task>/<output>.

    kfp.local nests each run in <pipeline_root>/<pipeline name>-<its own timestamp>/; with the
    run root as pipeline_root and that name as ours, the run folder is that folder.
    """
    from kfp.local import executor_input_utils

    executor_input_utils.get_local_pipeline_resource_name = lambda pipeline_name: run_dir.name


def resolve_named_task_outputs() -> None:
    """Let kfp.local resolve `pipelinechannel--<task>-<output>` in dsl.If conditions.

    kfp.local 2.17 resolves only outputs named `Output` there, so a condition on a named output
    silently reads as false. Output names never contain '-', so the last '-' splits task from output.
    """
    from kfp.local import io

    original = io.IOStore.get_parent_input
    if getattr(original, "resolves_named_outputs", False):
        return

    def get_parent_input(self, key):
        try:
            return original(self, key)
        except ValueError:
            reference = key.replace("pipelinechannel--", "")
            task, separator, output = reference.rpartition("-")
            if separator:
                try:
                    return self.get_task_output(task, output)
                except ValueError:
                    pass
            raise

    get_parent_input.resolves_named_outputs = True
    io.IOStore.get_parent_input = get_parent_input


def loops_keep_upstream_outputs() -> None:
    """Let a ParallelFor body read an output of a task before the loop (the sweep's train reads
    tokenize's tokenized_uri).

    kfp.local 2.17 builds each iteration's task spec by replacing every input that is a task output
    with the loop item (orchestrator/task_spec_utils.py, create_parameter_loop_iteration_task_spec),
    so train received the trial's configuration as its data URI. The backend resolves such inputs
    in its DAG driver. Here every task-output input except the one the loop iterates over keeps its
    reference.
    """
    from kfp.local.orchestrator import task_spec_utils

    original = task_spec_utils.create_parameter_loop_iteration_task_spec
    if getattr(original, "keeps_upstream_outputs", False):
        return

    def create_parameter_loop_iteration_task_spec(original_task_spec, loop_item, loop_task_name):
        iterated = original_task_spec.parameter_iterator.items.input_parameter
        kept = {
            name: spec
            for name, spec in original_task_spec.inputs.parameters.items()
            if spec.HasField("task_output_parameter") and name != iterated
        }
        iteration = original(original_task_spec, loop_item, loop_task_name)
        for name, spec in kept.items():
            iteration.inputs.parameters[name].CopyFrom(spec)
        return iteration

    create_parameter_loop_iteration_task_spec.keeps_upstream_outputs = True
    task_spec_utils.create_parameter_loop_iteration_task_spec = create_parameter_loop_iteration_task_spec


def report(run_dir: Path, timings: dict[str, float], parameters: dict, variant: str = "training") -> int:
    """Print the end-of-run summary, and keep it in the run folder; 1 if the quality gate misbehaved."""
    lines, problem = kfold_summary_lines(run_dir, timings) if variant == "kfold" else summary_lines(run_dir, timings, parameters)
    saved = run_dir / SUMMARY_NAME
    saved.write_text("\n".join([*lines, *([f"error: {problem}"] if problem else [])]) + "\n")
    print("\n=== local run finished ===")
    print("\n".join(lines))
    print(f"this summary is saved as {saved}")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


def kfold_summary_lines(run_dir: Path, timings: dict[str, float]) -> tuple[list[str], str]:
    """Each configuration's held-out and test macro-F1 over the folds, and the tests between the first two."""
    results_file = run_dir / "kfold-report" / "kfold" / KFOLD_RESULTS_FILE
    results = json.loads(results_file.read_text())
    lines = ["stage wall time (s): " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in timings.items())]
    for name, entry in results["configurations"].items():
        held_out, test = entry["held_out_macro_f1"], entry["test_macro_f1"]
        lines.append(f"{name}: held-out macro-F1 {held_out['mean']:.4f} +- {held_out['std']:.4f} over {len(held_out['folds'])} folds,"
                     f" test macro-F1 {test['mean']:.4f} +- {test['std']:.4f}")  # fmt: skip
    comparison = results["comparison"]
    if comparison:
        tests = "; ".join(f"{test['test']} p = {test['p_value']:.4g}" for test in comparison["tests"] if test["p_value"] is not None)
        lines.append(f"{comparison['first']} against {comparison['second']}: {tests}")
    lines.append(f"results: {results_file}")
    return lines, ""


def summary_lines(run_dir: Path, timings: dict[str, float], parameters: dict) -> tuple[list[str], str]:
    """The summary's lines, from the reports the stages wrote, and what went wrong with the gate ("" if nothing)."""
    evaluation, task = read_evaluation(run_dir)
    export = json.loads((run_dir / "export" / "onnx" / EXPORT_REPORT_FILE).read_text())
    lines = ["stage wall time (s): " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in timings.items())]
    tuning = run_dir / "select-best" / "tuning" / TUNING_RESULTS_FILE
    if tuning.exists():
        results = json.loads(tuning.read_text())
        ranking = ", ".join(f"trial {trial['trial']}: {trial['value']:.4f}" for trial in results["trials"])
        lines.append(f"sweep ({results['metric']} on validation, best first): {ranking}; tuning results: {tuning.with_suffix('.csv')}")
    lines += language_model_lines(evaluation, export) if task == CAUSAL_LM else classifier_lines(evaluation, export)
    decision, problem = gate_outcome(run_dir, evaluation, task, parameters)
    lines += gate_lines(decision)
    deployment = run_dir / "deploy" / "deployment" / DEPLOYMENT_FILE
    if deployment.exists():
        outcome = json.loads(deployment.read_text())
        lines.append(
            f"deploy: InferenceService {outcome['namespace']}/{outcome['service_name']} version {outcome['version']}: {outcome['action']}"
        )
    lines.append(f"run folder: {run_dir}")
    return lines, problem


def read_evaluation(run_dir: Path) -> tuple[dict, str]:
    """evaluate's metrics.json, and the task of the model it scored."""
    evaluation_dir = run_dir / "evaluate" / "evaluation"
    return json.loads((evaluation_dir / METRICS_FILE).read_text()), task_of(read_manifest(str(evaluation_dir)))


def gate_outcome(run_dir: Path, evaluation: dict, task: str, parameters: dict) -> tuple[dict, str]:
    """register's decision (registration.json); when register did not run, evaluate's check that
    held it back; and what went wrong with the gate ("" if nothing)."""
    decision_file = run_dir / "register" / "registration" / DECISION_FILE
    if decision_file.exists():
        return json.loads(decision_file.read_text()), ""
    task_gate = GATES[task]
    value, limit = evaluation["test"][task_gate.metric], gate.threshold(task_gate, parameters, pipeline_parameters()[0])
    why = f"{task_gate.shortfall(value, limit)} (the pipeline's quality gate)"
    decision = {"registered": False, "refused": why, "checks": [{"check": task_gate.flag, "result": REFUSED, "why": why}]}
    if task_gate.passes(value, limit):  # register should have run
        return decision, (
            f"register did not run, yet test {task_gate.label} {value:.4f} passes {task_gate.parameter} {limit}:"
            f" the quality gate did not evaluate as it should (run folder: {run_dir})"
        )
    return decision, ""


def gate_lines(decision: dict) -> list[str]:
    """Each check of the quality gate with its result, in one line, then what register decided."""
    checks = ", ".join(f"{check['check']} {check['result']}" for check in decision.get("checks", []))
    lines = [f"quality gate: {checks}"] if checks else []
    if decision["registered"]:
        return [*lines, f"registered: {decision['model_name']} version {decision['version']} at {decision['uri']}"]
    return [*lines, f"not registered: {decision['refused']}"]


def classifier_lines(evaluation: dict, export: dict) -> list[str]:
    test, baseline = evaluation["test"], evaluation["baseline_majority_class"]
    parity = export["parity"]
    lines = [
        f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}"
        f"  (majority-class baseline: accuracy {baseline['accuracy']:.4f}, macro-F1 {baseline['macro_f1']:.4f})",
        f"ONNX parity: max |logit diff| {parity['max_abs_logit_diff']:.2e},"
        f" argmax agreement {parity['argmax_agreement']:.4f} on {parity['rows']} rows",
    ]
    for name, model in export["models"].items():
        latency = model["latency"]
        line = f"onnxruntime {name}: test macro-F1 {model['test']['macro_f1']:.4f}, latency batch 1 p50 {latency['batch_1']['p50_ms']} ms"
        if model.get("file", name) is None:  # export deleted it (export.judge_int8)
            line += f"; dropped: {export['int8_macro_f1_drop']:.4f} below fp32, more than int8_max_f1_drop allows"
        lines.append(line)
    return lines


def language_model_lines(evaluation: dict, export: dict) -> list[str]:
    test, baseline = evaluation["test"], evaluation["baseline_ngram"]
    return [
        f"test perplexity {test['perplexity']:.2f}, bits per character {test['bits_per_character']:.4f},"
        f" next-token accuracy {test['next_token_accuracy']:.4f}"
        f"  (n-gram baseline: perplexity {baseline['perplexity']:.2f}, bits per character {baseline['bits_per_character']:.4f})",
    ]


if __name__ == "__main__":
    sys.exit(main())
