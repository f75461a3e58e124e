"""`make pipeline-submit`: send the compiled pipeline to a Kubeflow Pipelines API server as a run.

    python -m pipelines.submit --config configs/cluster.yaml --package build/pipeline.yaml [key=value ...]

Host, namespace, experiment and run name come from the config's `submit` section, overridden by
KFP_HOST, KFP_NAMESPACE, KFP_EXPERIMENT and KFP_RUN_NAME. The run's parameters are the config's
`parameters` (plus the source's content fingerprint, which keys the cache). The run carries the
config's pipeline root (`kubeflow.pipeline_root`) and service account (`submit.service_account`).
The bearer token comes from KFP_TOKEN, else from the service-account token file (KF_PIPELINES_SA_TOKEN_PATH,
/var/run/secrets/kubeflow/pipelines/token, or the pod's own service-account token). The token is
sent, never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import yaml

from components.lib import storage
from components.lib.cli import configure_logging
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from pipelines.config import RunConfig, load_config, require_remote_storage
from pipelines.sweep import expand_sweep

TOKEN_FILES = ("/var/run/secrets/kubeflow/pipelines/token", "/var/run/secrets/kubernetes.io/serviceaccount/token")
REQUEST_TIMEOUT = (10, 60)  # seconds to connect, seconds to read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Submit the compiled pipeline to Kubeflow Pipelines.")
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--package", default="build/pipeline.yaml", help="compiled pipeline YAML (make compile)")
    parser.add_argument("--pipeline", choices=["training", "sweep"], default="training", help="sweep: also send the config's trial configs")
    parser.add_argument("overrides", nargs="*", help="key=value parameter overrides, or section.key=value")
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        config = load_config(arguments.config, arguments.overrides)
        run_id, url = submit(config, Path(arguments.package), arguments.pipeline)
    except UserError as error:
        print(f"pipeline-submit: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print(f"run id: {run_id}\nrun: {url}")
    return 0


def find_token() -> str | None:
    if os.environ.get("KFP_TOKEN"):
        return os.environ["KFP_TOKEN"]
    for candidate in (os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"), *TOKEN_FILES):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text().strip()
    return None


def run_parameters(config: RunConfig, variant: str) -> dict:
    parameters = dict(config.parameters)
    require_remote_storage(parameters, "cluster tasks cannot read it")
    if variant == "sweep":
        parameters["sweep_configs"] = expand_sweep(config.sweep, parameters)
    source = parameters.get("source_uri", "")
    if source and not source.startswith("hf://") and not parameters.get("source_fingerprint"):
        parameters["source_fingerprint"] = storage.fingerprint(source)
    return parameters


def submit(config: RunConfig, package: Path, variant: str = "training") -> tuple[str, str]:
    if not package.is_file():
        raise UserError(f"{package}: no compiled pipeline; run make compile first")
    yaml.safe_load_all(package.read_text())
    host = (os.environ.get("KFP_HOST") or config.submit.host).rstrip("/")
    namespace = os.environ.get("KFP_NAMESPACE") or config.submit.namespace
    experiment = os.environ.get("KFP_EXPERIMENT") or config.submit.experiment
    run_name = (
        os.environ.get("KFP_RUN_NAME")
        or config.submit.run_name
        or f"{config.parameters.get('model_name', 'textclf')}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    parameters = run_parameters(config, variant)
    import kfp
    import kfp_server_api
    import urllib3

    bound_request_time()
    try:
        # kfp prints its own "Experiment details" / "Run details" lines; keep stdout for ours.
        with contextlib.redirect_stdout(sys.stderr):
            client = kfp.Client(host=host, existing_token=find_token(), namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=parameters,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                # The backend never reads the compiled defaultPipelineRoot: without this the run falls
                # back to the namespace's kfp-launcher ConfigMap (backend/src/v2/driver/root_dag.go, RootDAG).
                pipeline_root=config.kubeflow.pipeline_root,
                service_account=config.submit.service_account or None,
            )
    except kfp_server_api.ApiException as error:
        if error.status in (401, 403):
            raise UserError(f"{host} refused the credentials (HTTP {error.status}); set KFP_TOKEN or check the service account") from None
        raise UserError(f"{host} answered HTTP {error.status} {error.reason}: {first_line(error.body)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise UserError(
            f"cannot reach the Kubeflow Pipelines API at {host} ({type(error).__name__}); check KFP_HOST or the port-forward"
        ) from None
    return result.run_id, f"{host}/#/runs/details/{result.run_id}"


def first_line(body) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return (text.strip().splitlines() or [""])[0][:200]


def bound_request_time() -> None:
    """kfp_server_api sends requests with no timeout, so a silent server hangs forever; bound it."""
    from kfp_server_api import rest

    original = rest.RESTClientObject.request
    if getattr(original, "bounded", False):
        return

    def request(self, *args, _request_timeout=None, **kwargs):
        return original(self, *args, _request_timeout=_request_timeout or REQUEST_TIMEOUT, **kwargs)

    request.bounded = True
    rest.RESTClientObject.request = request


if __name__ == "__main__":
    sys.exit(main())
