"""A small stub of the Kubeflow Pipelines v2beta1 REST API on loopback, for the submit tests.

It answers the calls pipelines/submit.py, runs.py and cluster_check.py make through `kfp.Client`
(experiment lookup and creation; pipeline lookup and creation; version lookup and upload; run and
recurring-run creation; a run's state and tasks; a run's retry), on the
paths and with the field names of the real API server, and records every request, so a test can
check what was sent. A name filter (`display_name` EQUALS) is applied as the server applies it.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.json_http import JsonHandler

API = "/apis/v2beta1"
LOGIN_PAGE = "/dex/auth"


class Handler(JsonHandler):
    server: KfpStub
    protocol_version = "HTTP/1.1"

    def handle_any(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = {
            "method": self.command,
            "path": parts.path,
            "query": {key: values[0] for key, values in parse_qs(parts.query).items()},
            "authorization": self.headers.get("Authorization"),
            "json": json.loads(raw) if raw and "json" in self.headers.get("Content-Type", "") else None,
            "files": form_files(self.headers.get("Content-Type", ""), raw),
        }
        self.server.requests.append(request)
        if self.server.behind_login:
            return self.login(parts.path)
        if self.server.expected_token and request["authorization"] != f"Bearer {self.server.expected_token}":
            return self.reply(401, {"code": 16, "message": "Unauthenticated"})
        route = (self.command, parts.path)
        if route == ("GET", f"{API}/healthz"):
            return self.reply(200, {"multi_user": True})
        if route == ("GET", f"{API}/experiments"):
            return self.reply(200, {"experiments": list(self.server.experiments.values())} if self.server.experiments else {})
        if route == ("POST", f"{API}/experiments"):
            experiment = {"experiment_id": str(uuid.uuid4()), **request["json"]}
            self.server.experiments[experiment["experiment_id"]] = experiment
            return self.reply(200, experiment)
        if route == ("GET", f"{API}/pipelines"):
            found = [
                p
                for p in named(self.server.pipelines.values(), request)
                if p.get("namespace", "") in ("", request["query"].get("namespace"))
            ]
            return self.reply(200, {"pipelines": found, "total_size": len(found)} if found else {})
        if route == ("POST", f"{API}/pipelines"):
            pipeline = {"pipeline_id": str(uuid.uuid4()), **request["json"]}
            self.server.pipelines[pipeline["pipeline_id"]] = pipeline
            return self.reply(200, pipeline)
        versions_of = re.fullmatch(f"{API}/pipelines/([^/]+)/versions", parts.path)
        if self.command == "GET" and versions_of:
            if self.server.concurrent_upload:  # another submit uploads the same version just after this lookup
                self.server.concurrent_upload = False
                self.upload_version(
                    {
                        "query": {**request["query"], "pipelineid": versions_of[1], "name": version_named(request)},
                        "files": {"uploadfile": b"other"},
                    },
                    reply=False,
                )
                return self.reply(200, {})
            found = named([v for v in self.server.versions.values() if v["pipeline_id"] == versions_of[1]], request)
            return self.reply(200, {"pipeline_versions": found, "total_size": len(found)} if found else {})
        if route == ("POST", f"{API}/pipelines/upload_version"):
            return self.upload_version(request)
        if route == ("POST", f"{API}/runs"):
            run = {"run_id": str(uuid.uuid4()), "state": "PENDING", **request["json"]}
            self.server.runs.append(run)
            return self.reply(200, run)
        run_v1 = re.fullmatch("/apis/v1beta1/runs/([^/:]+)", parts.path)
        if self.command == "GET" and run_v1:
            return self.run_v1(run_v1[1])
        run_path = re.fullmatch(f"{API}/runs/([^/:]+)(:retry)?", parts.path)
        if run_path:
            return self.run_request(run_path[1], retry=bool(run_path[2]))
        if route == ("POST", f"{API}/recurringruns"):
            recurring_run = {"recurring_run_id": str(uuid.uuid4()), "status": "ENABLED", **request["json"]}
            self.server.recurring_runs.append(recurring_run)
            return self.reply(200, recurring_run)
        return self.reply(404, {"code": 5, "message": f"stub: no route for {self.command} {parts.path}"})

    def run_request(self, run_id: str, retry: bool) -> None:
        """GetRun (each read moves a run on: PENDING, RUNNING, then how it ends) and RetryRun."""
        run = next((run for run in self.server.runs if run["run_id"] == run_id), None)
        if run is None:
            return self.reply(404, {"code": 5, "message": f"Run {run_id} not found"})
        if retry:
            if self.command != "POST" or run["state"] not in ("FAILED", "CANCELED"):
                return self.reply(400, {"code": 9, "message": f"Failed to retry run {run_id}: the run is {run['state']}"})
            self.server.retried.append(run_id)
            run["state"] = "RUNNING"
            return self.reply(200, {})
        if self.server.unavailable_reads:
            self.server.unavailable_reads -= 1
            return self.reply(503, {"code": 14, "message": "upstream connect error"})
        run["reads"] = run.get("reads", 0) + 1
        if run["state"] in ("PENDING", "RUNNING") and run["reads"] >= self.server.reads_to_finish:
            self.end_run(run)
        elif run["state"] == "PENDING":
            run["state"] = "RUNNING"
        return self.reply(200, {key: value for key, value in run.items() if key != "reads"})

    def end_run(self, run: dict) -> None:
        """End a run as the server reports it. The v2beta1 run lists a task per Argo node (the server's
        toModelTasks): for each stage a DAG node named after it, whose child is its `executor` pod, and
        its `<stage>-driver` pod; never an error message. The v1beta1 run carries the Argo workflow,
        whose failed pod nodes have Argo's message. A task named in `failures` fails, none after it runs."""
        version = run["pipeline_version_reference"]["pipeline_version_id"]
        pipeline = self.server.pipelines[run["pipeline_version_reference"]["pipeline_id"]]["display_name"]
        failing, message = self.server.failures.get(pipeline, (None, ""))
        workflow_name = f"{pipeline}-{run['run_id'][:5]}"
        tasks, nodes = [], {}
        for index, stage in enumerate(container_tasks(self.server.packages[version], run["runtime_config"]["parameters"], failing)):
            state = "FAILED" if stage == failing else "SUCCEEDED"
            pod = f"{workflow_name}-{index}"
            tasks += [
                {"display_name": f"{stage}-driver", "state": "SUCCEEDED"},
                {"display_name": stage, "state": state, "child_tasks": [{"pod_name": pod}]},
                {"display_name": "executor", "state": state},
            ]
            nodes[pod] = {"id": pod, "name": f"{workflow_name}.root.{stage}.executor", "displayName": "executor", "type": "Pod",
                          "templateName": "retry-system-container-impl", "phase": "Failed" if state == "FAILED" else "Succeeded",
                          **({"message": message} if state == "FAILED" else {})}  # fmt: skip
        run["state"] = "FAILED" if failing else "SUCCEEDED"
        tasks.append({"display_name": "root", "state": run["state"], "child_tasks": [{"pod_name": "x"}]})
        run["run_details"] = {"task_details": tasks}
        self.server.workflows[run["run_id"]] = {"metadata": {"name": workflow_name}, "status": {"nodes": nodes}}

    def run_v1(self, run_id: str) -> None:
        """The v1beta1 GetRun: the run and its Argo workflow as JSON text."""
        workflow = self.server.workflows.get(run_id)
        if workflow is None:
            return self.reply(404, {"code": 5, "message": f"Run {run_id} not found"})
        return self.reply(200, {"run": {"id": run_id}, "pipeline_runtime": {"workflow_manifest": json.dumps(workflow)}})

    def upload_version(self, request: dict, reply: bool = True) -> None:
        """The server's UploadPipelineVersion: the package as the multipart field `uploadfile`, the name in the query."""
        query, package = request["query"], request["files"].get("uploadfile")
        if package is None or query.get("pipelineid") not in self.server.pipelines:
            return self.reply(400, {"code": 3, "message": "stub: an upload needs uploadfile and an existing pipelineid"})
        if any(v["pipeline_id"] == query["pipelineid"] and v["display_name"] == query.get("name") for v in self.server.versions.values()):
            return self.reply(409, {"code": 6, "message": "Failed to create a pipeline version: already exists"})
        version = {"pipeline_version_id": str(uuid.uuid4()), "pipeline_id": query["pipelineid"], "name": query.get("name", "")}
        version["display_name"] = version["name"]
        self.server.versions[version["pipeline_version_id"]] = version
        self.server.packages[version["pipeline_version_id"]] = package.decode()
        return self.reply(200, version) if reply else None

    def login(self, path: str) -> None:
        """What Dex in front of a multi-user Kubeflow does with a request that has no session: sends it to a login page."""
        if path == LOGIN_PAGE:
            page = b"<!DOCTYPE html><html><head><title>Dex</title></head><body>Log in to Your Account</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        self.send_response(302)
        self.send_header("Location", f"{LOGIN_PAGE}?client_id=kubeflow-oidc-authservice")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = handle_any


class KfpStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, expected_token: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.expected_token = expected_token
        self.requests: list[dict] = []
        self.experiments: dict = {}
        self.pipelines: dict = {}
        self.versions: dict = {}
        self.packages: dict[str, str] = {}  # pipeline_version_id -> the uploaded YAML
        self.runs: list[dict] = []
        self.recurring_runs: list[dict] = []
        self.behind_login = False  # True: every request is redirected to a login page, as Dex does without a session
        self.concurrent_upload = False  # True: the next version lookup misses a version that then appears
        self.reads_to_finish = 1  # reads of a run before it ends
        self.unavailable_reads = 0  # the next reads of a run answered 503, as while the API server restarts
        self.failures: dict[str, tuple[str, str]] = {}  # pipeline name -> (the task that fails, its error)
        self.retried: list[str] = []
        self.workflows: dict[str, dict] = {}  # run id -> its Argo workflow, as the v1beta1 API gives it
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def container_tasks(package_text: str, parameters: dict, failing: str | None = None) -> list[str]:
    """The tasks a run of the package runs, by stage name: none after a failing task, deploy only
    where the run's deploy parameter is true."""
    import yaml

    from pipelines import lint

    spec = next(yaml.safe_load_all(package_text))
    groups: dict = {}
    found = {name: (task, upstream, gated) for name, task, upstream, gated in lint.all_tasks(spec["root"]["dag"], spec, groups=groups)}
    after = lint.runs_after(found, groups)
    stages = {name: lint.stage_of(task) for name, (task, _, _) in found.items()}
    failed = {name for name, stage in stages.items() if stage == failing}
    return [
        stage for name, stage in stages.items() if not (after[name] & failed) and (stage != "deploy" or parameters.get("deploy") is True)
    ]


def named(items, request: dict) -> list[dict]:
    """The items a list request's `display_name` EQUALS filter keeps (the SDK sends the operation as 1 or "EQUALS")."""
    text = request["query"].get("filter")
    if not text:
        return list(items)
    wanted = {
        (p["key"], p.get("string_value", p.get("stringValue"))) for p in json.loads(text)["predicates"] if p["operation"] in (1, "EQUALS")
    }
    return [item for item in items if all(item.get(key) == value for key, value in wanted)]


def version_named(request: dict) -> str:
    return json.loads(request["query"]["filter"])["predicates"][0]["stringValue"]


def form_files(content_type: str, body: bytes) -> dict[str, bytes]:
    """The files of a multipart/form-data body, by field name."""
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in message.iter_parts()}
