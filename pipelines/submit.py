"""`make pipeline-submit`: send the compiled pipeline to a Kubeflow Pipelines API server as a run.

    python -m pipelines.submit --config configs/cluster.yaml --package build/pipeline.yaml [key=value ...]
        [--dry-run] [--schedule "0 3 * * *" [--max-concurrency 1]] [--no-fingerprint] [--print-fingerprint]

The package is uploaded as a version of one named pipeline (its `pipelineInfo.name`), so every run
of it is grouped under that pipeline in the UI. The version is named after the images' tag and the
package's content hash (`0.1.0-3f2a9c1b7d4e`); a version of that name is reused, not uploaded again.

Host, namespace, experiment and run name come from the config's `submit` section, overridden by
KFP_HOST, KFP_NAMESPACE, KFP_EXPERIMENT and KFP_RUN_NAME. The run's parameters are the config's
`parameters`. The run carries the config's pipeline root (`kubeflow.pipeline_root`) and service
account (`submit.service_account`). The bearer token comes from KFP_TOKEN, else from the
service-account token file (KF_PIPELINES_SA_TOKEN_PATH, /var/run/secrets/kubeflow/pipelines/token,
or the pod's own service-account token). The token is sent, never printed.

The source fingerprint: preprocess is cached, and its cache key holds `source_fingerprint`, the
source's content fingerprint, which preprocess checks against the data. It is taken here, which
needs read access to the source's bucket. Where the bucket cannot be reached from here (an
in-cluster MinIO), pass `source_fingerprint=<sha256>`, printed by `--print-fingerprint` where it can
be reached, or `--no-fingerprint`: the run then uses a version of the pipeline whose preprocess is
never cached (and so nothing after it comes from the cache), which a recurring run always uses,
since it reads the data anew each time.

`--dry-run` sends nothing and needs no credentials: it prints what would be submitted.
`--schedule` creates a recurring run instead of a run (cron; 5 fields as in crontab, or KFP's 6
with seconds first), at most `--max-concurrency` runs at a time, with no catch-up of missed runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.lib import storage
from components.lib.cli import configure_logging
from components.lib.credentials import credential_in
from components.lib.data.readers import installed_data_path
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from components.lib.runtime import S3_SECRET_NAME
from pipelines.compile import OUTPUT_NAMES
from pipelines.config import RunConfig, load_config, require_remote_storage
from pipelines.fan_out import resolved_parameters
from pipelines.kfp_connection import kfp_api
from pipelines.parameters import KUBERNETES_NAME_PARAMETERS, store_scope
from pipelines.pipeline import KUBERNETES_NAME
from pipelines.stages import CACHE_SCOPE

SOURCE_READING_TASK = "preprocess"  # the task that reads source_uri: uncached, every task after it gets new inputs
MAX_CONCURRENCY_RANGE = (1, 10)  # what the KFP API server accepts
UNCACHED_MARK = "uncached"
HTTP_CONFLICT = 409  # the API server's answer to a version name the pipeline already has
log = logging.getLogger("pipelines.submit")  # not __main__ under python -m


@dataclass
class Submission:
    """Everything sent to the API server, resolved before anything is sent."""

    host: str
    namespace: str
    experiment: str
    run_name: str
    pipeline_name: str
    version_name: str
    package_text: str
    parameters: dict
    pipeline_root: str
    service_account: str
    cron: str = ""
    max_concurrency: int = 1

    def describe(self) -> str:
        lines = [
            f"host: {self.host}",
            f"namespace: {self.namespace}",
            f"experiment: {self.experiment}",
            f"pipeline: {self.pipeline_name}",
            f"pipeline version: {self.version_name}",
            f"{'recurring run' if self.cron else 'run'} name: {self.run_name}",
            f"pipeline root: {self.pipeline_root}",
            f"service account: {self.service_account or '(the API server default)'}",
        ]
        if self.cron:
            lines.append(f"schedule: {self.describe_schedule()}")
        parameters = yaml.safe_dump(self.parameters, sort_keys=False, default_flow_style=False, width=1000)
        return "\n".join([*lines, "parameters:", *("  " + line for line in parameters.splitlines())])

    def describe_schedule(self) -> str:
        return f"cron '{self.cron}' (KFP: seconds first), at most {self.max_concurrency} at a time, no catch-up"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Submit the compiled pipeline to Kubeflow Pipelines.")
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--package", default="build/pipeline.yaml", help="compiled pipeline YAML (make compile)")
    parser.add_argument(
        "--pipeline", choices=sorted(OUTPUT_NAMES), default="training", help="sweep, kfold: also send the items of that config section"
    )
    parser.add_argument("--dry-run", action="store_true", help="send nothing; print what would be submitted")
    parser.add_argument("--schedule", default="", metavar="CRON", help='create a recurring run, e.g. "0 3 * * *" (daily at 03:00)')
    parser.add_argument("--max-concurrency", type=int, default=1, help="a recurring run's most runs at a time (1-10)")
    parser.add_argument("--no-fingerprint", action="store_true", help="do not fingerprint the source; preprocess then runs uncached")
    parser.add_argument("--print-fingerprint", action="store_true", help="print the source's fingerprint (needs access to it) and stop")
    parser.add_argument("overrides", nargs="*", help="key=value parameter overrides, or section.key=value")
    arguments = parser.parse_intermixed_args(argv)
    configure_logging()
    try:
        config = load_config(arguments.config, arguments.overrides)
        if arguments.print_fingerprint:
            print(source_fingerprint(config.parameters.get("source_uri", "")))
            return 0
        submission = prepare(
            config, Path(arguments.package), arguments.pipeline, schedule=arguments.schedule, max_concurrency=arguments.max_concurrency,
            uncached_because=uncached_reason(arguments), dry_run=arguments.dry_run,
        )  # fmt: skip
        if arguments.dry_run:
            print(f"{submission.describe()}\ndry run: nothing was sent")
            return 0
        lines = send(submission)
    except UserError as error:
        print(f"pipeline-submit: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print("\n".join(lines))
    return 0


def prepare(
    config: RunConfig,
    package: Path,
    variant: str,
    *,
    schedule: str = "",
    max_concurrency: int = 1,
    uncached_because: str = "",
    dry_run: bool = False,
) -> Submission:
    """Everything to send for a run of `package` (the `variant` pipeline) with the config's parameters."""
    if schedule:
        check_max_concurrency(max_concurrency)
    cron = kfp_cron(schedule) if schedule else ""
    compiled = Package.read(package)
    parameters, cached = run_parameters(config, variant, uncached_because, dry_run=dry_run)
    version_name, package_text = compiled.version(cached)
    return Submission(
        host=(os.environ.get("KFP_HOST") or config.submit.host).rstrip("/"),
        namespace=os.environ.get("KFP_NAMESPACE") or config.submit.namespace,
        experiment=os.environ.get("KFP_EXPERIMENT") or config.submit.experiment,
        run_name=os.environ.get("KFP_RUN_NAME")
        or config.submit.run_name
        or f"{config.parameters.get('model_name', 'textclf')}-{time.strftime('%Y%m%d-%H%M%S')}",
        pipeline_name=compiled.name,
        version_name=version_name,
        package_text=package_text,
        parameters=parameters,
        # The backend never reads the compiled defaultPipelineRoot: without this the run falls
        # back to the namespace's kfp-launcher ConfigMap (backend/src/v2/driver/root_dag.go, RootDAG).
        pipeline_root=config.kubeflow.pipeline_root,
        service_account=config.submit.service_account,
        cron=cron,
        max_concurrency=max_concurrency,
    )


def uncached_reason(arguments: argparse.Namespace) -> str:
    """Why the source is not fingerprinted (the flag, first), or empty."""
    if arguments.schedule:
        return "--schedule: a recurring run reads the source anew each time"
    return "--no-fingerprint" if arguments.no_fingerprint else ""


def run_parameters(config: RunConfig, variant: str, uncached_because: str = "", dry_run: bool = False) -> tuple[dict, bool]:
    """The run's parameters, and whether preprocess may be cached: only with the fingerprint in its key."""
    parameters = resolved_parameters(config, variant)
    require_remote_storage(parameters, "cluster tasks cannot read it")
    require_kubernetes_names(parameters)
    refuse_credentials(parameters)
    store = (config.kubeflow.pipeline_root, config.kubeflow.s3_endpoint, parameters.get("s3_secret_name", S3_SECRET_NAME))
    parameters.setdefault(CACHE_SCOPE, store_scope(*store))
    source = parameters.get("source_uri", "")
    if not source or source.startswith("hf://"):
        return parameters, True
    given = parameters.get("source_fingerprint", "")
    if uncached_because:
        if given:
            raise UserError(f"source_fingerprint={given} cannot be used with {uncached_because}; drop one of them")
        log.warning("%s: %s is not fingerprinted; preprocess runs uncached, and every task after it", uncached_because, source)
        return parameters, False
    if not given:
        parameters["source_fingerprint"] = "(taken from the source when submitting)" if dry_run else reachable_fingerprint(source)
    return parameters, True


def refuse_credentials(parameters: dict) -> None:
    """A run's parameters are stored with the run and shown in the Pipelines UI: no credential in them."""
    for name, value in parameters.items():
        kind = credential_in(json.dumps(value))
        if kind:
            raise UserError(f"parameters.{name}: holds {kind}, which the run would store and show; put it in a Secret")


def require_kubernetes_names(parameters: dict) -> None:
    """A parameter naming a Kubernetes object, where the run sets one, is a name (absent: the pipeline's default)."""
    for name in KUBERNETES_NAME_PARAMETERS:
        value = parameters.get(name)
        if name in parameters and (not isinstance(value, str) or not KUBERNETES_NAME.match(value)):
            raise UserError(f"parameters.{name}: {value!r} is not the name of a Kubernetes object in the run's namespace")


def source_fingerprint(source: str) -> str:
    if not source or source.startswith("hf://"):
        raise UserError(f"source_uri {source!r}: only a file, folder or S3 prefix has a fingerprint")
    return storage.fingerprint(installed_data_path(source))


def reachable_fingerprint(source: str) -> str:
    """The source's fingerprint, or one line that says how to submit without reaching the source."""
    try:
        return source_fingerprint(source)
    except UserError as error:
        raise UserError(
            f"cannot fingerprint the source from here ({error}); where it is reachable, print it with"
            f' `make pipeline-submit ARGS=--print-fingerprint` and pass ARGS="source_fingerprint=<sha256>",'
            " or pass --no-fingerprint to run preprocess uncached"
        ) from None


@dataclass
class Package:
    """A compiled pipeline: its YAML text and documents (the pipeline spec first)."""

    path: Path
    text: str
    documents: list

    @classmethod
    def read(cls, path: Path) -> Package:
        if not path.is_file():
            raise UserError(f"{path}: no compiled pipeline; run make compile first")
        text = path.read_text()
        try:
            documents = list(yaml.safe_load_all(text))
            documents[0]["pipelineInfo"]["name"]
        except (yaml.YAMLError, IndexError, KeyError, TypeError):
            raise UserError(f"{path}: not a compiled pipeline (no pipelineInfo.name); run make compile") from None
        return cls(path, text, documents)

    @property
    def name(self) -> str:
        return self.documents[0]["pipelineInfo"]["name"]

    def version(self, cached: bool) -> tuple[str, str]:
        """The version's name and the YAML to upload; not cached: preprocess never comes from the cache."""
        spec, text, qualifier = self.documents[0], self.text, ""
        if not cached:
            disable_cache(spec, SOURCE_READING_TASK, self.path)
            text = yaml.safe_dump_all(self.documents, sort_keys=True)
            qualifier = f"-{UNCACHED_MARK}"
        return f"{image_tag(spec)}{qualifier}-{hashlib.sha256(text.encode()).hexdigest()[:12]}", text


def disable_cache(spec: dict, task_name: str, package: Path) -> None:
    tasks = spec.get("root", {}).get("dag", {}).get("tasks", {})
    if task_name not in tasks:
        raise UserError(f"{package}: no {task_name} task at the top of the pipeline; run make compile")
    tasks[task_name]["cachingOptions"] = {"enableCache": False}


def image_tag(spec: dict) -> str:
    """The tag (or short digest) of the images the executors run, e.g. `0.1.0`."""
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    images = {executor.get("container", {}).get("image", "") for executor in executors.values()}
    tags = set()
    for image in filter(None, images):
        if "@" in image:
            tags.add(image.rsplit("@", 1)[1].split(":")[-1][:12])
        elif ":" in image.rsplit("/", 1)[-1]:
            tags.add(image.rsplit(":", 1)[1])
    return "+".join(sorted(tags)) or "untagged"


def kfp_cron(expression: str) -> str:
    """KFP's cron (robfig/cron v1) has a seconds field first and reads a 5-field crontab line shifted by one."""
    fields = expression.split()
    if expression.startswith("@") or len(fields) == 6:
        return " ".join(fields)
    if len(fields) == 5:
        converted = " ".join(["0", *fields])
        log.warning("--schedule %r: a crontab line; sent to KFP, whose cron has seconds first, as %r", expression, converted)
        return converted
    raise UserError(
        f"--schedule {expression!r}: a cron expression has 5 fields (minute hour day month weekday, e.g. '0 3 * * *'),"
        " or 6 with seconds first, or is a descriptor such as @daily"
    )


def check_max_concurrency(value: int) -> None:
    low, high = MAX_CONCURRENCY_RANGE
    if not low <= value <= high:
        raise UserError(f"--max-concurrency {value}: the KFP API server accepts {low} to {high}")


def send(submission: Submission) -> list[str]:
    """Upload the version (unless there), create the run or recurring run; the lines to print, the URL last."""
    uploaded, started, _ = upload_and_start(submission)
    how = "uploaded" if uploaded else "already there"
    return [f"pipeline: {submission.pipeline_name}, version {submission.version_name} ({how})", *started]


def submit_run(submission: Submission) -> str:
    """Upload the version (unless there) and start one run of it; its id."""
    return upload_and_start(submission)[2]


def upload_and_start(submission: Submission) -> tuple[bool, list[str], str]:
    """Whether the version was uploaded now, the lines that say what started, and the id of what started."""
    with kfp_api(submission.host, submission.namespace) as client:
        experiment = client.create_experiment(submission.experiment, namespace=submission.namespace)
        pipeline_id, version_id, uploaded = pipeline_version(client, submission)
        started, started_id = start(client, submission, experiment.experiment_id, pipeline_id, version_id)
    return uploaded, started, started_id


def run_arguments(submission: Submission, experiment_id: str, pipeline_id: str, version_id: str) -> dict:
    return dict(
        experiment_id=experiment_id,
        job_name=submission.run_name,
        params=submission.parameters,
        pipeline_id=pipeline_id,
        version_id=version_id,
        pipeline_root=submission.pipeline_root,
        service_account=submission.service_account or None,
    )


def start(client, submission: Submission, experiment_id: str, pipeline_id: str, version_id: str) -> tuple[list[str], str]:
    common = run_arguments(submission, experiment_id, pipeline_id, version_id)
    if not submission.cron:
        run = client.run_pipeline(**common)
        return [f"run id: {run.run_id}", f"run: {submission.host}/#/runs/details/{run.run_id}"], run.run_id
    recurring = client.create_recurring_run(
        **common, cron_expression=submission.cron, max_concurrency=submission.max_concurrency, no_catchup=True
    )
    recurring_id = recurring.recurring_run_id
    return [
        f"schedule: {submission.describe_schedule()}",
        f"recurring run id: {recurring_id}",
        f"recurring run: {submission.host}/#/recurringrun/details/{recurring_id}",
    ], recurring_id


def pipeline_version(client, submission: Submission) -> tuple[str, str, bool]:
    """The ids of the pipeline and of the version to run, and whether the version was uploaded now."""
    import kfp_server_api

    pipeline_id = find_pipeline(client, submission.pipeline_name, submission.namespace)
    if pipeline_id is None:
        created = client.pipelines.pipeline_service_create_pipeline(
            pipeline=kfp_server_api.V2beta1Pipeline(display_name=submission.pipeline_name, namespace=submission.namespace)
        )
        pipeline_id = created.pipeline_id
    existing = find_version(client, pipeline_id, submission.version_name)
    if existing:
        return pipeline_id, existing, False
    with tempfile.TemporaryDirectory() as folder:
        package = Path(folder) / f"{submission.pipeline_name}.yaml"
        package.write_text(submission.package_text)
        try:
            version = client.upload_pipeline_version(str(package), submission.version_name, pipeline_id=pipeline_id)
        except kfp_server_api.ApiException as error:
            if error.status != HTTP_CONFLICT:
                raise
            uploaded = find_version(client, pipeline_id, submission.version_name)  # by a submit beside ours
            if uploaded is None:  # the conflict named a version that is not there: the server's error says more
                raise
            return pipeline_id, uploaded, False
    return pipeline_id, version.pipeline_version_id, True


def find_version(client, pipeline_id: str, name: str) -> str | None:
    found = client.list_pipeline_versions(pipeline_id, page_size=1, filter=display_name_filter(name)).pipeline_versions
    return found[0].pipeline_version_id if found else None


def find_pipeline(client, name: str, namespace: str) -> str | None:
    """The pipeline of that name in the namespace, else a shared one of that name."""
    found = client.list_pipelines(page_size=100, filter=display_name_filter(name), namespace=namespace or None).pipelines or []
    found.sort(key=lambda pipeline: (pipeline.namespace or "") != namespace)
    return found[0].pipeline_id if found else None


def display_name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


if __name__ == "__main__":
    sys.exit(main())
