"""Runs already on a Kubeflow Pipelines API server: retry a failed one where it failed, wait for runs to
end, and say which task failed and why.

    python -m pipelines.runs retry RUN_ID [--config configs/cluster.yaml]      # make pipeline-retry RUN_ID=...

Why a retry by hand: a task whose pod is deleted (a preempted or drained GPU node) ends in Argo's
Error phase, and the retry strategy the backend compiles has no retry policy, so Argo's default,
OnFailure, does not retry it (backend/src/v2/compiler/argocompiler/container.go,
getTaskRetryStrategyFromInput; argo-workflows workflow/controller/operator.go). The run fails.
Retrying the run (the API server's RetryRun) re-runs its failed and errored tasks in the same
workflow, keeping the tasks that succeeded and the run's id, so train finds its checkpoints under
<checkpoint_root>/<run id> and resumes from the last one.

Host and namespace come from the config's `submit` section, overridden by KFP_HOST and
KFP_NAMESPACE; the token as for `make pipeline-submit` (pipelines/kfp_connection.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

from components.lib.cli import configure_logging
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from pipelines.config import load_config
from pipelines.kfp_connection import kfp_api

# The API server's run states (kfp_server_api V2beta1RuntimeState) after which nothing more happens.
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
RETRIABLE_STATES = ("FAILED", "CANCELED")  # RetryRun takes a Failed or Error workflow, a terminated one too
POLL_SECONDS = 15.0


@dataclass
class RunOutcome:
    """How a run ended: its state, the failing task and its error where it failed, and its tasks' states."""

    run_id: str
    state: str
    failure: str = ""
    tasks: dict[str, str] | None = None


def state_of(run) -> str:
    return str(run.state or "RUNTIME_STATE_UNSPECIFIED")


def task_states(run) -> dict[str, str]:
    """{task display name: state}, for the tasks that ran a container (a DAG of them is not listed)."""
    details = getattr(run.run_details, "task_details", None) or []
    return {task.display_name: str(task.state) for task in details if not task.child_tasks}


def failure_of(run) -> str:
    """`<task>: <its error>` for the task that failed, else the run's own error."""
    details = getattr(run.run_details, "task_details", None) or []
    failed = [task for task in details if str(task.state) == "FAILED" and not task.child_tasks]
    for task in failed:
        message = getattr(task.error, "message", "") or ""
        if message:
            return f"{task.display_name}: {first_line(message)}"
    if failed:
        return f"{failed[0].display_name}: failed without an error message (kubectl logs of its pod say why)"
    return first_line(getattr(run.error, "message", "") or "") or f"the run ended {state_of(run)}"


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def wait_for(client, run_ids: list[str], timeout_s: float, progress=None) -> dict[str, RunOutcome]:
    """Each run's outcome once it has ended; one still going at the deadline is reported as such."""
    deadline = time.monotonic() + timeout_s
    ended: dict[str, RunOutcome] = {}
    while True:
        for run_id in run_ids:
            if run_id in ended:
                continue
            run = client.get_run(run_id)
            if state_of(run) in FINAL_STATES:
                ended[run_id] = RunOutcome(run_id, state_of(run), failure_of(run) if state_of(run) != "SUCCEEDED" else "", task_states(run))
                if progress:
                    progress(ended[run_id])
        if len(ended) == len(run_ids):
            return ended
        if time.monotonic() >= deadline:
            for run_id in run_ids:
                ended.setdefault(run_id, RunOutcome(run_id, "TIMED_OUT", f"still running after {timeout_s / 60:.0f} minutes"))
            return ended
        time.sleep(POLL_SECONDS)


def retry(client, run_id: str, host: str) -> list[str]:
    """Retry a failed or canceled run where it stopped; the lines to print, the run's URL last."""
    run = client.get_run(run_id)
    state = state_of(run)
    if state not in RETRIABLE_STATES:
        raise UserError(f"run {run_id} is {state}: only a FAILED or CANCELED run can be retried")
    failure = failure_of(run)
    client.runs.run_service_retry_run(run_id=run_id, experiment_id=run.experiment_id or None)
    return [
        f"retrying run {run_id} ({state}; {failure})",
        "its succeeded tasks are kept, its failed ones run again; train resumes from the run's checkpoints",
        f"run: {host}/#/runs/details/{run_id}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Act on runs already on a Kubeflow Pipelines API server.")
    commands = parser.add_subparsers(dest="command", required=True)
    retrying = commands.add_parser("retry", help="re-run a failed run's failed tasks, in the same run")
    retrying.add_argument("run_id")
    retrying.add_argument("--config", default="configs/default.yaml")
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        if not arguments.run_id.strip():
            raise UserError("RUN_ID: empty; pass the id that pipeline-submit printed (make pipeline-retry RUN_ID=...)")
        config = load_config(arguments.config)
        host = (os.environ.get("KFP_HOST") or config.submit.host).rstrip("/")
        with kfp_api(host, os.environ.get("KFP_NAMESPACE") or config.submit.namespace) as client:
            lines = retry(client, arguments.run_id.strip(), host)
    except UserError as error:
        print(f"pipeline-retry: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
