"""Six adjustments to kfp.local (kfp 2.17) that `make run` applies before it runs the compiled pipeline.

Three make it run what the Kubeflow backend runs:
- `timed_handlers`: its subprocess runner refuses container components (all of ours);
- `resolve_named_task_outputs`: it reads a `dsl.If` on a named task output as false;
- `loops_keep_upstream_outputs`: it hands a ParallelFor body the loop item in place of an earlier task's output.
Three fit it to a user at a terminal:
- `no_retry_of_user_errors`: a stage's user error (exit status 2) is not retried, and is the run's last line;
- `run_in_folder`: the tasks write straight into the run folder, <local.run_root>/<date-time>/<task>/;
- `quiet_engine`: the engine's own chatter is left out.

Each names the kfp.local code it replaces, wraps or filters, and rebinds a module or class attribute
that kfp.local looks up at call time. A second call of one does nothing, but for run_in_folder, which
names the folder of the run about to start.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from components.lib.errors import USER_ERROR_EXIT_CODE, USER_ERROR_PREFIX
from pipelines.docker_runner import DockerMounts


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
    have both read a stage's exit status and its error line (kfp.local keeps neither).

    Replaces kfp.local.subprocess_task_handler.SubprocessTaskHandler and
    kfp.local.docker_task_handler.DockerTaskHandler, the classes
    kfp.local.task_dispatcher.run_single_task_implementation picks per runner, with subclasses:
    - HostHandler drops SubprocessTaskHandler.validate_not_container_component (it raises for any
      command that is not a lightweight Python component) and .validate_image (a warning for an
      image without "python" in its name), and its `run` replaces
      subprocess_task_handler.run_local_subprocess, which returns only the exit status;
    - DockerHandler's `run` replaces docker_task_handler.run_docker_container, which starts the
      container with auto_remove and reads a container already gone as exit status 0, and its
      `get_volumes_to_mount` adds DockerMounts.volumes to DockerTaskHandler.get_volumes_to_mount's.
    """
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
            with subprocess.Popen(
                command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            ) as process:
                assert process.stdout is not None  # stdout=PIPE
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
    policy says, but the same mistake fails the same way.

    Wraps kfp.local.orchestrator.task_executor.execute_single_task, which holds that retry loop and is
    called by kfp.local.orchestrator.dag_orchestrator.run_dag and enhanced_dag_orchestrator.execute_task.
    `StageUserError` (raised by StageClock.record inside the loop) leaves it; here, one level up, it
    becomes the task's failure.
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

    vars(execute_single_task)["stops_on_user_error"] = True  # a function attribute: mypy's function type declares none
    # The orchestrators call it as task_executor.execute_single_task, so rebinding it is enough.
    task_executor.execute_single_task = execute_single_task


def quiet_engine() -> None:
    """Leave out kfp.local's lines that say nothing to a `make run` user; every stage's own output stays.

    Replaces no kfp.local function: a warnings filter and a root-logger filter (`EngineChatter`) drop
    what kfp.local.orchestrator.task_executor._warn_local_only_noops warns and what
    kfp.local.task_dispatcher.run_single_task_implementation logs around each task:
    - "Task 'x': settings ['cpu_limit', ...] have no effect in the current local runner": the
      resources, GPU request and node placement are the cluster's (the `kubeflow` section), and a
      local run leaves them out by design (pipelines/local_run.py's docstring).
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

    Replaces kfp.local.executor_input_utils.get_local_pipeline_resource_name, which
    kfp.local.pipeline_orchestrator._run_local_pipeline_implementation calls to nest each run in
    <pipeline_root>/<pipeline name>-<its own timestamp>/; with the run root as pipeline_root and that
    name as ours, the run folder is that folder.
    """
    from kfp.local import executor_input_utils

    executor_input_utils.get_local_pipeline_resource_name = lambda pipeline_name: run_dir.name


def resolve_named_task_outputs() -> None:
    """Let kfp.local resolve `pipelinechannel--<task>-<output>` in dsl.If conditions.

    Wraps kfp.local.io.IOStore.get_parent_input. kfp.local 2.17's
    orchestrator.enhanced_dag_orchestrator.ConditionEvaluator._resolve_pipeline_channel reads a channel
    as a task output only when it holds "-Output" or "--", and asks get_parent_input for any other,
    which finds none; the condition then silently reads as false. Here a parent input that is not
    there is tried as <task>-<output>: output names never contain '-', so the last '-' splits them.
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

    vars(get_parent_input)["resolves_named_outputs"] = True
    io.IOStore.get_parent_input = get_parent_input


def loops_keep_upstream_outputs() -> None:
    """Let a ParallelFor body read an output of a task before the loop (the sweep's train reads
    tokenize's tokenized_uri).

    Wraps kfp.local.orchestrator.task_spec_utils.create_parameter_loop_iteration_task_spec, which
    kfp.local.orchestrator.enhanced_dag_orchestrator._run_parallel_for_task calls for each iteration.
    In kfp 2.17 it replaces every input that is a task output with the loop item, so train received
    the trial's configuration as its data URI. The backend resolves such inputs in its DAG driver.
    Here every task-output input except the one the loop iterates over keeps its reference.
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

    vars(create_parameter_loop_iteration_task_spec)["keeps_upstream_outputs"] = True
    task_spec_utils.create_parameter_loop_iteration_task_spec = create_parameter_loop_iteration_task_spec
