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
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field

from kfp_server_api.exceptions import ApiException

from components.lib.cli import configure_logging
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from pipelines.config import load_config
from pipelines.kfp_connection import kfp_api

# The API server's run states (kfp_server_api V2beta1RuntimeState) after which nothing more happens.
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
RETRIABLE_STATES = ("FAILED", "CANCELED")  # RetryRun takes a Failed or Error workflow, a terminated one too
POLL_SECONDS = 15.0
log = logging.getLogger("pipelines.runs")


@dataclass
class RunOutcome:
    """How a run ended: its state, which task failed and why where it failed, and the stages that succeeded."""

    run_id: str
    state: str
    failure: str = ""
    succeeded: set[str] = field(default_factory=set)


def state_of(run) -> str:
    return str(run.state or "RUNTIME_STATE_UNSPECIFIED")


def succeeded_tasks(run) -> set[str]:
    """The display names of the run's tasks that succeeded (a stage's task is named after it: train, deploy)."""
    details = getattr(run.run_details, "task_details", None) or []
    return {task.display_name for task in details if str(task.state) == "SUCCEEDED"}


def workflow_of(client, run_id: str) -> dict:
    """The run's Argo workflow, from the v1beta1 API (the v2beta1 run carries no node messages); {} if none."""
    try:
        answer = client.runs.api_client.call_api(
            "/apis/v1beta1/runs/{run_id}", "GET", path_params={"run_id": run_id}, response_type="object",
            auth_settings=["Bearer"], _return_http_data_only=True,
        )  # fmt: skip
        return json.loads(((answer or {}).get("pipeline_runtime") or {}).get("workflow_manifest") or "{}")
    except (ValueError, AttributeError, OSError, ApiException):
        return {}


def failed_pods(workflow: dict) -> list[tuple[str, str, str]]:
    """(stage, Argo's message, pod name) for each failed or errored pod of the workflow, latest last.

    A stage's container runs in the pod `<workflow>.<...>.<stage>.executor[(attempt)]`, its driver in
    `<...>.<stage>-driver` (backend/src/v2/compiler/argocompiler/container.go); the pod is named as
    Argo names it (argo-workflows workflow/util/pod_name.go, GeneratePodName)."""
    name = (workflow.get("metadata") or {}).get("name", "")
    nodes = ((workflow.get("status") or {}).get("nodes") or {}).values()
    failed = sorted(
        (node for node in nodes if node.get("type") == "Pod" and node.get("phase") in ("Failed", "Error")),
        key=lambda node: node.get("finishedAt") or "",
    )
    found = []
    for node in failed:
        parts = [re.sub(r"\(\d+\)$", "", part) for part in node.get("name", "").split(".")]
        stage = parts[-1].removesuffix("-driver") if parts[-1].endswith("-driver") else parts[-2] if len(parts) > 1 else parts[-1]
        found.append((stage, node.get("message") or node.get("phase", ""), pod_name(workflow, name, node)))
    return found


def pod_name(workflow: dict, workflow_name: str, node: dict) -> str:
    annotations = (workflow.get("metadata") or {}).get("annotations") or {}
    if annotations.get("workflows.argoproj.io/pod-name-format") == "v1":
        return node.get("id", "")
    hashed = 0x811C9DC5  # FNV-1a, 32 bits, as Go's hash/fnv New32a
    for byte in node.get("name", "").encode():
        hashed = ((hashed ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{workflow_name}-{node.get('templateName', '')}-{hashed}"


def failure_of(client, run, namespace: str) -> str:
    """`<stage>: <Argo's message>; kubectl logs ...` for the task that failed last (a stage's own one-line
    error, if it made one, is the last line of that log), else what the run's tasks say."""
    pods = failed_pods(workflow_of(client, run.run_id))
    if pods:
        stage, message, pod = pods[-1]
        return f"{stage}: {message}; its log: kubectl logs -n {namespace} {pod} -c main"
    details = getattr(run.run_details, "task_details", None) or []
    failed = sorted({task.display_name for task in details if str(task.state) == "FAILED"})
    return f"failed tasks {', '.join(failed)}; the run's page shows each one's log" if failed else f"the run ended {state_of(run)}"


def wait_for(client, run_ids: list[str], timeout_s: float, namespace: str = "", progress=None) -> dict[str, RunOutcome]:
    """Each run's outcome once it has ended; one still going at the deadline is reported as such."""
    deadline = time.monotonic() + timeout_s
    ended: dict[str, RunOutcome] = {}
    while True:
        for run_id in run_ids:
            if run_id in ended:
                continue
            run = read_run(client, run_id)
            if run is not None and state_of(run) in FINAL_STATES:
                failure = failure_of(client, run, namespace) if state_of(run) != "SUCCEEDED" else ""
                ended[run_id] = RunOutcome(run_id, state_of(run), failure, succeeded_tasks(run))
                if progress:
                    progress(ended[run_id])
        if len(ended) == len(run_ids):
            return ended
        if time.monotonic() >= deadline:
            for run_id in run_ids:
                ended.setdefault(run_id, RunOutcome(run_id, "TIMED_OUT", f"still running after {timeout_s / 60:g} minutes"))
            return ended
        time.sleep(POLL_SECONDS)


def read_run(client, run_id: str):
    """The run, or None after an answer the API server may give while it restarts (a 5xx): the next poll asks again."""
    try:
        return client.get_run(run_id)
    except ApiException as error:
        if error.status is not None and error.status >= 500:
            log.warning("run %s: the API server answered %s; asking again", run_id, error.status)
            return None
        raise


def retry(client, run_id: str, host: str, namespace: str) -> list[str]:
    """Retry a failed or canceled run where it stopped; the lines to print, the run's URL last."""
    run = client.get_run(run_id)
    state = state_of(run)
    if state not in RETRIABLE_STATES:
        raise UserError(f"run {run_id} is {state}: only a FAILED or CANCELED run can be retried")
    failure = failure_of(client, run, namespace)
    client.runs.run_service_retry_run(run_id=run_id, experiment_id=run.experiment_id or None)
    return [
        f"retrying run {run_id} ({state} at {failure})",
        "its succeeded tasks are kept and its failed ones run again; a train among them resumes from the run's checkpoints",
        f"run: {host}/#/runs/details/{run_id}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Act on runs already on a Kubeflow Pipelines API server.")
    commands = parser.add_subparsers(dest="command", required=True)
    retrying = commands.add_parser("retry", help="re-run a failed run's failed tasks, in the same run")
    retrying.add_argument("run_id")
    retrying.add_argument("--config", default="configs/cluster.yaml")
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        if not arguments.run_id.strip():
            raise UserError("RUN_ID: empty; pass the id that pipeline-submit printed (make pipeline-retry RUN_ID=...)")
        config = load_config(arguments.config)
        host = (os.environ.get("KFP_HOST") or config.submit.host).rstrip("/")
        namespace = os.environ.get("KFP_NAMESPACE") or config.submit.namespace
        with kfp_api(host, namespace) as client:
            lines = retry(client, arguments.run_id.strip(), host, namespace)
    except UserError as error:
        print(f"pipeline-retry: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
